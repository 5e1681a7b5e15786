"""Client processes of ``bench ingest``: one per ``--streams`` (or a few hosting many).

The parent starts them with the ``spawn`` method, waits until every stream is open,
then sets one start time for all; each process reports acked points through a shared
array (the progress bar) and its results through a queue. Two transports:

* ``client``: the real ``tracker_client`` library (``Run.log`` per step, or
  ``Run.log_series`` per key with ``--api series``);
* ``raw``: the wire protocol, batches serialized with numpy (``bench/raw_stream.py``),
  which also times every batch until its ack.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.workload import StreamPoints, Workload

if TYPE_CHECKING:
    import tracker_client


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a client process needs (picklable)."""

    address: str
    experiment: str
    run_keys: list[str]
    streams: list[int]
    """Global stream indexes this process runs (index into the progress array)."""
    workload: Workload
    transport: str = "raw"
    """"raw" or "client"."""
    api: str = "log"
    """client transport: "log" (Run.log per step) or "series" (Run.log_series)."""
    steps: int | None = None
    """Steps per stream; None: until duration_s."""
    duration_s: float | None = None
    points_per_s: float | None = None
    """Per-stream send rate; None: as fast as possible."""
    window_batches: int = 16
    stagger_s: float = 0.0
    """Spread stream starts over this many seconds (low-frequency profile)."""
    close_timeout_s: float = 120.0


def worker_main(spec: WorkerSpec, progress: Any, ready: Any, go: Any, t0: Any,
                results: Any) -> None:
    """Process entry point: run the streams of ``spec``, put one result dict."""
    from bench.environment import die_with_parent

    die_with_parent()
    started = time.process_time()
    out: dict[str, Any] = {"pid": os.getpid(), "streams": spec.streams}
    released = False
    at_go = [started, _reaped_children_cpu_s()]

    def wait_go() -> float:
        nonlocal released
        ready.release()
        released = True
        go.wait()
        at_go[:] = [time.process_time(), _reaped_children_cpu_s()]
        return float(t0.value)

    def report(i: int, acked: int) -> None:
        progress[i] = acked

    try:
        if spec.transport == "raw":
            stream_results = asyncio.run(_raw(spec, wait_go, report))
        elif spec.transport == "client":
            stream_results = _client(spec, wait_go, report)
        else:
            raise ValueError(f"unknown transport {spec.transport!r}")
        out["results"] = stream_results
    except Exception:
        out["error"] = traceback.format_exc()
        if not released:
            ready.release()  # never leave the parent waiting for a dead worker
    out["cpu_s"] = time.process_time() - started
    # CPU from the start signal to the end, reported by the process itself: a reading
    # from outside misses a process that exits before the harness looks.
    out["run_cpu_s"] = time.process_time() - at_go[0]
    # The client's sender processes (one per run, started by init() or by the auto
    # mode mid-run) are this process's children: their CPU is the client's, counted
    # once they are reaped, as Run.close() does (a sender started before the signal
    # is counted from its start).
    out["children_cpu_s"] = _reaped_children_cpu_s() - at_go[1]
    results.put(out)


def _reaped_children_cpu_s() -> float:
    """User + system CPU seconds of this process's children that have been waited for."""
    t = os.times()
    return t.children_user + t.children_system


async def _raw(spec: WorkerSpec, wait_go: Any, report: Any) -> list[dict[str, Any]]:
    from bench.raw_stream import Pace, run_streams

    def pace_of(t0: float) -> Pace:
        deadline = t0 + spec.duration_s if spec.duration_s else None
        return Pace(spec.steps, deadline, spec.points_per_s, spec.window_batches)

    res = await run_streams(spec.address, spec.experiment, spec.run_keys, spec.streams,
                            spec.workload, pace_of, wait_go, report, spec.stagger_s)
    return [asdict(r) for r in res]


def _client_options(batch_points: int) -> tracker_client.Options:
    """The client's options with our batch size, a private spool, no system metrics."""
    import tempfile

    import tracker_client

    return tracker_client.Options(
        batch_points=batch_points,
        # A private spool: orphans of other runs must not be delivered into the bench.
        spool_dir=Path(tempfile.mkdtemp(prefix="bench-spool-")),
        recover_orphans=False,
        # sys/... points would change the counts.
        system_metrics_interval_s=None,
    )


def _client(spec: WorkerSpec, wait_go: Any, report: Any) -> list[dict[str, Any]]:
    import tracker_client

    wl = spec.workload
    options = _client_options(wl.batch_points)
    runs = [
        tracker_client.init(experiment=spec.experiment, run_key=key, name=key,
                            server=spec.address, options=options)
        for key in spec.run_keys
    ]
    gens = [StreamPoints(wl, i) for i in spec.streams]
    names = wl.key_names()
    t0 = wait_go()
    deadline = t0 + spec.duration_s if spec.duration_s else None
    sent = [0] * len(runs)
    first_send = time.monotonic()
    # A side thread publishes progress and samples each run's lag (age of its oldest
    # unacknowledged batch), what a user would watch beside the per-batch ack times.
    # It keeps running while close() drains.
    stop = threading.Event()
    lags: list[float] = []

    def publish() -> None:
        while not stop.wait(0.1):
            for j, run in enumerate(runs):
                st = run.stats
                report(spec.streams[j], st.points_acked)
                if sent[j]:
                    lags.append(st.lag_s * 1000)

    reporter = threading.Thread(target=publish, daemon=True)
    reporter.start()
    step = 0
    spb = wl.steps_per_batch
    # All streams of this process advance together, one block of steps at a time;
    # values are generated per block (numpy), then logged the way a training loop does.
    while True:
        if spec.steps is not None and step >= spec.steps:
            break
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        nsteps = spb if spec.steps is None else min(spb, spec.steps - step)
        if spec.points_per_s:
            due = t0 + sent[0] / spec.points_per_s
            if due > now:
                time.sleep(due - now)
        for j, (run, gen) in enumerate(zip(runs, gens, strict=True)):
            cols = gen.batch(step, nsteps)
            if spec.api == "series":
                for k, name in enumerate(names):
                    run.log_series(name, cols.steps[k::wl.keys], cols.values[k::wl.keys])
            else:
                vals = cols.values.reshape(nsteps, wl.keys).tolist()
                for s in range(nsteps):
                    run.log(dict(zip(names, vals[s], strict=True)), step=step + s)
            sent[j] += cols.n
        step += nsteps
    out = []
    for j, run in enumerate(runs):
        rep = run.close(timeout=spec.close_timeout_s)
        stats = run.stats
        t_last = time.monotonic()
        report(spec.streams[j], stats.points_acked)
        out.append({
            "run_id": str(run.run_id),
            "points_sent": sent[j],
            "points_acked": stats.points_acked,
            "batches_sent": stats.batches_sent,
            "batches_rejected": stats.batches_rejected,
            "slow_downs": stats.slow_downs,
            "ack_ms": list(stats.ack_latencies_ms),
            "lag_ms": lags if j == 0 else [],
            "t_first_send": first_send,
            "t_last_ack": t_last,
            "error": "" if rep.durable else f"not durable: {rep}",
            "points_dropped": stats.points_dropped,
        })
    stop.set()
    return out
