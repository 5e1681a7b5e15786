"""Real server processes and real failures: kill -9, SIGSTOP, down at init, resume."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import tracker_client
from tests.client_support import fast, stored, wait_for
from tests.support import ServerProcess, count_points, free_port
from tracker_client._sync import main as sync_main

pytestmark = [pytest.mark.timeout(90), pytest.mark.skipif(os.name != "posix", reason="signals")]

KEYS = 5


def log_steps(run: tracker_client.Run, start: int, stop: int, pause_every: int = 0) -> None:
    for step in range(start, stop):
        run.log({f"k{i}": step + i / 10 for i in range(KEYS)}, step=step)
        if pause_every and step % pause_every == 0:
            time.sleep(0.002)


def assert_exactly_once(database_url: str, run_id: str, steps: int, rank: int = 0) -> None:
    counts = stored(database_url, run_id)
    mine = {k: c for k, c in counts.items() if k[1] == rank}
    assert len(mine) == steps * KEYS, f"{steps * KEYS - len(mine)} points missing"
    dupes = {k: c for k, c in mine.items() if c > 1}
    assert not dupes, f"duplicated points: {list(dupes.items())[:5]}"


def test_kill9_mid_stream_and_restart_exact_counts(
    server_proc: ServerProcess, database_url: str, tmp_path: Path
) -> None:
    run = tracker_client.init(experiment="kill9", server=server_proc.address,
                              options=fast(tmp_path))
    log_steps(run, 0, 4000, pause_every=100)
    wait_for(lambda: run.stats.points_acked > 0, what="first acks")
    server_proc.kill()  # SIGKILL while batches are in flight
    log_steps(run, 4000, 8000, pause_every=100)  # logged while the server is dead
    assert run.stats.points_pending > 0
    server_proc.start()
    log_steps(run, 8000, 10_000)
    report = run.close(timeout=30)
    assert report.durable, report
    assert run.run_id is not None
    assert_exactly_once(database_url, run.run_id, 10_000)
    assert run.stats.reconnects >= 1 and run.stats.points_acked == 10_000 * KEYS


def test_close_returns_on_time_with_server_frozen_then_sync_delivers(
    server_proc: ServerProcess, database_url: str, tmp_path: Path
) -> None:
    run = tracker_client.init(experiment="frozen", server=server_proc.address,
                              options=fast(tmp_path))
    log_steps(run, 0, 100)
    assert run.flush(timeout=20).durable
    assert server_proc.proc is not None
    server_proc.signal_all(signal.SIGSTOP)
    try:
        log_steps(run, 100, 3000)
        t0 = time.monotonic()
        report = run.close(timeout=1.5)
        elapsed = time.monotonic() - t0
    finally:
        server_proc.signal_all(signal.SIGCONT)
    assert elapsed < 1.5 + 0.5, f"close(timeout=1.5) took {elapsed:.2f}s"
    assert not report.durable and report.points_pending > 0 and report.batches_pending > 0
    assert report.oldest_unacked_age_s is not None
    assert Path(report.spool_path).is_dir()  # kept for the next start / tracker sync
    # Whatever the thawed server committed from its socket buffers, the spool resends
    # only what follows: exactly once.
    assert sync_main([str(tmp_path), "--max-time", "30"]) == 0
    assert not Path(report.spool_path).exists()
    assert run.run_id is not None
    assert_exactly_once(database_url, run.run_id, 3000)


def test_server_down_at_init_then_it_comes_back(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    run = tracker_client.init(experiment="late", server=f"127.0.0.1:{port}",
                              run_key="late-run", options=fast(tmp_path))
    try:
        assert run.run_id is None and run.stats.state == "offline"
        log_steps(run, 0, 500)
        run.log_params({"lr": 0.1})
        run.flush(timeout=0.2)
        assert run.stats.points_spooled == 500 * KEYS
        srv = ServerProcess(database_url, port=port)
        srv.start()
        try:
            assert run.wait_attached(20)
            log_steps(run, 500, 1000)
            report = run.close(timeout=30)
            assert report.durable, report
            assert run.run_id is not None
            assert_exactly_once(database_url, run.run_id, 1000)
        finally:
            srv.terminate()
    finally:
        run.close(timeout=1)


def test_resume_starts_a_new_attempt(
    server_proc: ServerProcess, database_url: str, tmp_path: Path
) -> None:
    first = tracker_client.init(experiment="resume", server=server_proc.address,
                                run_key="job-7", options=fast(tmp_path))
    log_steps(first, 0, 100)
    assert first.close(timeout=20).durable
    second = tracker_client.init(experiment="resume", server=server_proc.address,
                                 run_key="job-7", resume=True, options=fast(tmp_path))
    assert second.run_id == first.run_id
    assert (first.attempt, second.attempt) == (0, 1)
    log_steps(second, 50, 150)  # restarted from the step-50 checkpoint
    assert second.close(timeout=20).durable
    assert second.run_id is not None
    counts = stored(database_url, second.run_id)
    by_attempt = {a: sum(1 for k in counts if k[2] == a) for a in (0, 1)}
    assert by_attempt == {0: 100 * KEYS, 1: 100 * KEYS}
    assert min(k[3] for k in counts if k[2] == 1) == 50
    assert count_points(database_url, second.run_id) == 200 * KEYS


def test_killed_trainer_leaves_a_spool_the_next_start_delivers(
    server_proc: ServerProcess, database_url: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    script = f"""
import os, tracker_client
from tests.client_support import fast
from pathlib import Path
run = tracker_client.init(experiment="crash", server={server_proc.address!r},
                          run_key="crash-run", options=fast(Path({str(tmp_path)!r})))
for step in range(2000):
    run.log({{"k0": step}}, step=step)
run._batcher.flush(10)
print(run.run_id, flush=True)
os.kill(os.getpid(), 9)
"""
    # Freeze the server so the dying trainer cannot deliver anything itself.
    assert server_proc.proc is not None
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == -9
    run_id = out.decode().split()[0]
    spools = list(tmp_path.glob("*/meta.json"))
    assert len(spools) == 1
    # The next start of the job (any run on this server) recovers the orphan spool.
    from dataclasses import replace

    nxt = tracker_client.init(experiment="crash", server=server_proc.address,
                              run_key="crash-run", resume=True,
                              options=replace(fast(tmp_path), recover_orphans=True))
    wait_for(lambda: not spools[0].exists(), timeout=30, what="orphan spool delivered")
    nxt.close(timeout=10)
    counts = stored(database_url, run_id)
    assert len(counts) == 2000 and max(counts.values()) == 1
