"""``python -m bench client``: what the training loop pays for ``run.log()``.

Figures (JSON):

- ``log_p50_us`` / ``log_p99_us``: one ``run.log()`` of a 10-scalar dict, timed call by
  call with ``perf_counter_ns``, back to back while the batcher and stream threads are
  busy delivering what the loop logged (the worst case for GIL contention: a real
  training step leaves the GIL free most of the time).
- ``log_p999_us`` / ``log_max_us``: the tail of the same calls (the stalls a training
  step would feel); ``log_us`` holds p50/p99/p99.9/max/mean.
- ``log_points_dropped``: points the loop logged that the client dropped (tail full).
- ``log_paced_p99_us``: the same with ~20 µs of pure-Python "work" between calls.
- ``log_kernel_us``: the same with a 96x96 float64 matmul (~35 µs in BLAS, which
  releases the GIL, as a framework kernel does) between calls: what a training step
  that leaves Python for its work sees.
- ``log_p99_us_server_down``: the same loop while the server is unreachable (points go
  to the spool only; the attacher thread keeps retrying).
- ``log_series_points_per_s``: end to end, ``log_series`` of 1M-point arrays until the
  server acknowledged all of them (``flush`` durable).
- ``delivered_points_per_s``: end to end for the back-to-back ``log()`` phase.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.environment import Database, ServerProcess, free_port
from bench.report import table, write_json

if TYPE_CHECKING:
    import tracker_client

DEFAULT_OUT = Path(__file__).parent / "results" / "client.json"


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    a = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "p999": float(np.percentile(a, 99.9)), "max": float(a.max()),
            "mean": float(a.mean())}


def _timed_logs(run: tracker_client.Run, calls: int, start_step: int,
                pace_us: float = 0.0, kernel: bool = False) -> list[int]:
    keys = [f"metric_{i}" for i in range(10)]
    out = [0] * calls
    clock = time.perf_counter_ns
    spin = int(pace_us * 1000)
    matrix = np.random.default_rng(0).random((96, 96))
    for i in range(calls):
        metrics = {k: (i + j) * 0.001 for j, k in enumerate(keys)}
        t0 = clock()
        run.log(metrics, step=start_step + i)
        out[i] = clock() - t0
        if spin:
            end = clock() + spin
            while clock() < end:  # "training work" that holds the GIL
                pass
        if kernel:
            matrix @ matrix  # "training work" in a C kernel that releases the GIL
    return out


def _lower_priority(pids: list[int | None], how: str) -> None:
    """Run ``pids`` and their children (PostgreSQL's backends fork from the postmaster
    later and inherit it) on CPU time the loop leaves: ``idle`` (SCHED_IDLE) or
    ``nice:N``."""
    import psutil  # type: ignore[import-untyped]

    for pid in pids:
        if pid is None:
            continue
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error, OSError):
                if how == "idle":
                    os.sched_setscheduler(p.pid, os.SCHED_IDLE, os.sched_param(0))
                elif how.startswith("nice:"):
                    p.nice(int(how[5:]))


def _wait_sender(run: tracker_client.Run) -> None:
    """With ``--sender process``, measure once the sender process took over."""
    link = run._sender
    if link is not None and not link.ready.wait(30):
        raise RuntimeError("the sender process did not start within 30 s")


def measure(address: str, spool: Path, calls: int, series_points: int,
            sender: str = "thread") -> dict[str, Any]:
    """All figures against a running server at ``address``."""
    import tracker_client

    opts = tracker_client.Options(spool_dir=spool, system_metrics_interval_s=None,
                                  recover_orphans=False, sender=sender)  # type: ignore[arg-type]
    res: dict[str, Any] = {}
    run = tracker_client.init(experiment="bench-client", server=address, options=opts)
    _wait_sender(run)
    _timed_logs(run, 20_000, 0)  # warm-up (key tables, allocator, connection)
    assert run.flush(60).durable
    t0 = time.perf_counter()
    samples = _timed_logs(run, calls, 20_000)
    report = run.flush(300)
    elapsed = time.perf_counter() - t0
    stats = _percentiles(samples)
    res["log_p50_us"] = stats["p50"]
    res["log_p99_us"] = stats["p99"]
    res["log_p999_us"] = stats["p999"]
    res["log_max_us"] = stats["max"]
    res["log_us"] = stats
    res["log_points_dropped"] = run.stats.points_dropped
    res["delivered_points_per_s"] = calls * 10 / elapsed
    res["log_durable"] = report.durable
    paced = _percentiles(_timed_logs(run, calls // 4, 20_000 + calls, pace_us=20))
    res["log_paced_p50_us"] = paced["p50"]
    res["log_paced_p99_us"] = paced["p99"]
    res["log_paced_us"] = paced
    assert run.flush(300).durable
    res["log_kernel_us"] = _percentiles(_timed_logs(run, calls // 4, 20_000 + 2 * calls,
                                                    kernel=True))
    assert run.flush(300).durable

    # log_series: 1M-point arrays, end to end until acknowledged.
    chunk = 1_000_000
    steps = np.arange(chunk, dtype=np.int64)
    values = np.random.default_rng(0).random(chunk)
    n = max(1, series_points // chunk)
    t0 = time.perf_counter()
    call_s = 0.0
    for i in range(n):
        c0 = time.perf_counter()
        run.log_series(f"series_{i}", steps, values)
        call_s += time.perf_counter() - c0
    report = run.flush(600)
    elapsed = time.perf_counter() - t0
    res["log_series_points_per_s"] = n * chunk / elapsed
    res["log_series_call_us"] = call_s / n * 1e6
    res["log_series_durable"] = report.durable
    run.close(30)

    # Server down: nothing listens on the port; init() goes offline-until-it-returns.
    down = tracker_client.init(experiment="bench-client", server=f"127.0.0.1:{free_port()}",
                               options=replace(opts, init_timeout_s=0.5))
    _wait_sender(down)
    _timed_logs(down, 20_000, 0)
    down_stats = _percentiles(_timed_logs(down, calls, 20_000))
    res["log_p99_us_server_down"] = down_stats["p99"]
    res["log_p50_us_server_down"] = down_stats["p50"]
    res["log_p999_us_server_down"] = down_stats["p999"]
    res["log_max_us_server_down"] = down_stats["max"]
    res["log_us_server_down"] = down_stats
    res["server_down_state"] = down.stats.state
    down.close(0.5)
    return res


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=200_000, help="log() calls per phase")
    p.add_argument("--series-points", type=int, default=10_000_000,
                   help="points sent with log_series (in 1M-point arrays)")
    p.add_argument("--sender", default="auto,thread,process", metavar="auto,thread,process",
                   help="Options.sender of the measured runs, comma-separated (default: "
                        "all three; the first, the client's default, gives the JSON's "
                        "top-level figures)")
    p.add_argument("--server-priority", default="idle", metavar="idle|nice:N|normal",
                   help="CPU priority of the server and PostgreSQL the bench starts "
                        "(default idle: SCHED_IDLE, only CPU time the loop leaves). On a "
                        "training node the server runs elsewhere; here it shares the "
                        "loop's two cores, and at normal priority the tail figures "
                        "measure the scheduler's time slices, not log()")
    p.add_argument("--server", default=None,
                   help="use a running server instead of starting one (and a database)")
    p.add_argument("--json", type=Path, default=DEFAULT_OUT, metavar="PATH",
                   help="write the figures to this file (default: bench/results/client.json)")
    return p.parse_args(argv)


def _bare_writes(tail: Any, calls: int) -> list[int]:
    """``calls`` bare writes of a 10-scalar record into a tail: no client, no threads."""
    keys = tuple(f"metric_{i}" for i in range(10))
    out = [0] * calls
    clock = time.perf_counter_ns
    for i in range(calls):
        values = [(i + j) * 0.001 for j in range(10)]
        t0 = clock()
        if not tail.log_scalars(keys, values, i, 0):
            tail.covered = tail.write_pos  # nobody reads this ring: never full
            tail.log_scalars(keys, values, i, 0)
        out[i] = clock() - t0
    return out


def measure_floor(address: str, spool: Path, calls: int) -> dict[str, Any]:
    """What this machine gives any loop: ``calls`` bare tail writes (the core of
    ``log()``, no client threads or process) on a quiet machine, and again while
    another process (at SCHED_IDLE, as the server) streams the same loop to the server:
    the load ``log()``'s own delivery puts on the machine, without anything of it in
    this process."""
    from tracker_client._tail import create_tail

    spool.mkdir(parents=True, exist_ok=True)
    tail = create_tail(spool, 32 << 20, 0)
    try:
        _bare_writes(tail, 20_000)
        quiet = _percentiles(_bare_writes(tail, calls))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        load = subprocess.Popen(
            [sys.executable, "-c", _LOAD_SCRIPT, address, str(spool / "load")], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert load.stdout is not None and load.stdin is not None
            if load.stdout.readline().strip() != "streaming":
                raise RuntimeError("the load process did not start")
            loaded = _percentiles(_bare_writes(tail, calls))
            load.stdin.close()
            load.wait(120)
        finally:
            if load.poll() is None:
                load.kill()
    finally:
        tail.close()
    return {"quiet_us": quiet, "loaded_us": loaded}


_LOAD_SCRIPT = """
import os, sys, threading, tracker_client
from pathlib import Path
# The rest of the machine, as the server is: only CPU time the measured loop leaves.
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
opts = tracker_client.Options(spool_dir=Path(sys.argv[2]), system_metrics_interval_s=None,
                              recover_orphans=False, sender="process")
run = tracker_client.init(experiment="bench-client-load", server=sys.argv[1], options=opts)
run._sender.ready.wait(30)
keys = [f"metric_{i}" for i in range(10)]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
i = 0
print("streaming", flush=True)
while not stop.is_set():
    run.log({k: (i + j) * 0.001 for j, k in enumerate(keys)}, step=i)
    i += 1
run.finish(timeout=60)
"""


def main(argv: list[str] | None = None) -> int:
    """Run the client benchmark, print a table and write JSON."""
    args = parse_args(argv)
    senders = [s.strip() for s in args.sender.split(",") if s.strip()]
    by_sender: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tracker-bench-client-") as tmp:
        root = Path(tmp)

        def measure_all(address: str) -> dict[str, Any]:
            for sender in senders:
                by_sender[sender] = measure(address, root / sender, args.calls,
                                            args.series_points, sender)
            return measure_floor(address, root / "floor", args.calls)

        if args.server:
            floor = measure_all(args.server)
        else:
            with Database() as db:
                server = ServerProcess(db.conninfo).start()
                if args.server_priority != "normal":
                    _lower_priority([server.proc.pid if server.proc else None,
                                     db.postmaster_pid], args.server_priority)
                try:
                    floor = measure_all(server.address)
                finally:
                    server.stop()
    res = by_sender[senders[0]]
    out = {
        "benchmark": "client",
        "calls": args.calls,
        "sender": senders[0],
        "server_priority": "external" if args.server else args.server_priority,
        **res,
        "by_sender": by_sender,
        "floor": floor,
        "targets": {"log_p50_us": 5, "log_p99_us": 50, "log_p99_us_server_down": 1000,
                    "log_p999_us": 20, "log_max_us": 2000, "log_p999_us_server_down": 20,
                    "log_max_us_server_down": 2000},
        "environment": {"python": sys.version.split()[0], "platform": platform.platform(),
                        "machine": platform.machine()},
    }

    def row(label: str, cell: Any, note: str) -> tuple[str, str, str]:
        return (label, " | ".join(cell(by_sender[s]) for s in senders), note)

    def tail_cell(d: dict[str, float]) -> str:
        return f"{d['p999']:.1f} / {d['max']:,.0f} µs"

    rows = [
        ("sender", " | ".join(senders), ""),
        row("log() p50", lambda r: f"{r['log_p50_us']:.2f} µs", "target <= 5 µs"),
        row("log() p99", lambda r: f"{r['log_p99_us']:.2f} µs", "target <= 50 µs"),
        row("log() p99.9 / max", lambda r: tail_cell(r["log_us"]), "target <= 20 / 2,000 µs"),
        row("log() points dropped", lambda r: f"{r['log_points_dropped']:,}", "tail full"),
        row("log() p99, paced 20 µs", lambda r: f"{r['log_paced_p99_us']:.2f} µs", ""),
        row("log() p99.9 / max, BLAS step", lambda r: tail_cell(r["log_kernel_us"]),
            "96x96 matmul between calls"),
        row("log() p99, server down", lambda r: f"{r['log_p99_us_server_down']:.2f} µs",
            "target <= 1000 µs"),
        row("log() p99.9 / max, server down", lambda r: tail_cell(r["log_us_server_down"]),
            "target <= 20 / 2,000 µs"),
        row("log() delivered", lambda r: f"{r['delivered_points_per_s'] / 1e6:.2f} M pt/s",
            "end to end, acked"),
        row("log_series delivered",
            lambda r: f"{r['log_series_points_per_s'] / 1e6:.2f} M pt/s", "end to end"),
        ("floor: bare tail writes", tail_cell(floor["quiet_us"]), "p99.9 / max, no client"),
        ("floor: same, another streaming", tail_cell(floor["loaded_us"]),
         "what this machine allows any loop"),
    ]
    print(table(rows, title="tracker client"))
    write_json(args.json, out)
    print(f"\nwrote {args.json}")
    return 0
