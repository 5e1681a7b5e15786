"""``Options(sender="process")``: a sender process batches, spools and streams what the
training process logs. Against a real server process, with real processes killed: the
trainer (its sender delivers what it logged), and the sender (the trainer takes over and
delivers the sender's spool), each exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tracker_client
from tests.client_support import fast, stored, values, wait_for
from tests.support import ServerProcess
from tracker_client._sync import main as sync_main

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(os.name != "posix", reason="signals, MAP_SHARED")]

KEYS = 5


def ready(run: tracker_client.Run) -> int:
    """Wait until the sender process took over log(); its pid."""
    link = run._sender
    assert link is not None
    assert link.ready.wait(30) and link.alive and link.tail is not None, link.error
    wait_for(lambda: run._tail is link.tail, timeout=5, what="log() on the sender's tail")
    assert link.pid is not None
    return link.pid


def log_steps(run: tracker_client.Run, start: int, stop: int) -> None:
    for step in range(start, stop):
        run.log({f"k{i}": step + i / 10 for i in range(KEYS)}, step=step)


def assert_exactly_once(database_url: str, run_id: str, steps: int) -> None:
    counts = stored(database_url, run_id)
    assert len(counts) == steps * KEYS, f"{steps * KEYS - len(counts)} points missing"
    dupes = {k: c for k, c in counts.items() if c > 1}
    assert not dupes, f"duplicated points: {list(dupes.items())[:5]}"


def test_everything_logged_arrives_once_with_its_values(
        server_proc: ServerProcess, database_url: str, tmp_path: Path) -> None:
    run = tracker_client.init(experiment="sender", server=server_proc.address,
                              options=fast(tmp_path, sender="process"))
    pid = ready(run)
    assert pid != os.getpid()
    log_steps(run, 0, 20_000)
    run.log({"odd": np.float32(0.5), "int": 7, "nan": float("nan")}, step=3)
    steps = np.arange(50_000, dtype=np.int64)
    run.log_series("series", steps, steps * 0.25)
    report = run.flush(60)
    assert report.durable, report
    st = run.stats
    assert st.sender == "process"
    total = 20_000 * KEYS + 3 + 50_000
    assert (st.points_logged, st.points_acked, st.points_pending) == (total, total, 0)
    got = values(database_url, run.run_id or "")
    assert got[("k3", 1234)] == 1234.3 and got[("series", 49_999)] == 49_999 * 0.25
    assert got[("odd", 3)] == 0.5 and got[("int", 3)] == 7.0 and np.isnan(got[("nan", 3)])
    assert run.finish(timeout=30).durable
    counts = stored(database_url, run.run_id or "")
    assert len(counts) == total and max(counts.values()) == 1
    # Both writers' spools are gone once everything is acknowledged, and so is the process.
    assert not list(tmp_path.glob("*/meta.json"))
    wait_for(lambda: _gone(pid), timeout=10, what="sender process exit")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_sigkilled_trainer_s_records_are_delivered_by_its_sender(
        server_proc: ServerProcess, database_url: str, tmp_path: Path) -> None:
    script = f"""
import os, tracker_client
from tests.client_support import fast
from pathlib import Path
run = tracker_client.init(experiment="crash", server={server_proc.address!r},
                          options=fast(Path({str(tmp_path)!r}), sender="process"))
assert run._sender.ready.wait(30) and run._sender.alive
import time
while run._tail is not run._sender.tail:
    time.sleep(0.01)
for step in range(30000):
    run.log({{f"k{{i}}": step + i / 10 for i in range({KEYS})}}, step=step)
print(run.run_id, flush=True)
os.kill(os.getpid(), 9)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    out, _ = child.communicate(timeout=90)
    assert child.returncode == -signal.SIGKILL
    run_id = out.decode().split()[0]
    # Nobody restarts the job: the orphaned sender process delivers and exits by itself.
    wait_for(lambda: len(stored(database_url, run_id)) >= 30_000 * KEYS, timeout=60,
             interval=0.2, what="the sender to deliver the dead trainer's records")
    assert_exactly_once(database_url, run_id, 30_000)
    wait_for(lambda: not list(tmp_path.glob("*.s/meta.json")), timeout=30,
             what="the sender's spool removed once delivered")


def test_a_sigkilled_sender_is_replaced_by_the_trainer_exactly_once(
        server_proc: ServerProcess, database_url: str, tmp_path: Path) -> None:
    run = tracker_client.init(experiment="sender-crash", server=server_proc.address,
                              options=fast(tmp_path, sender="process"))
    pid = ready(run)
    log_steps(run, 0, 10_000)
    os.kill(pid, signal.SIGKILL)  # whatever it had not sent stays in its spool and tail
    wait_for(lambda: run._tail is run._spool.tail, timeout=10,
             what="log() back in the trainer")
    log_steps(run, 10_000, 20_000)
    wait_for(lambda: run.flush(5).durable, timeout=60, what="everything acknowledged")
    st = run.stats
    assert st.points_pending == 0 and st.points_acked == st.points_logged == 20_000 * KEYS
    assert run.finish(timeout=30).durable
    assert_exactly_once(database_url, run.run_id or "", 20_000)
    assert not list(tmp_path.glob("*/meta.json"))


def test_offline_spools_of_both_writers_are_synced(
        server_proc: ServerProcess, database_url: str, tmp_path: Path) -> None:
    run = tracker_client.init(experiment="offline-sender", mode="offline",
                              options=fast(tmp_path, sender="process"))
    ready(run)
    log_steps(run, 0, 5_000)
    run.set_tags({"where": "offline"})
    report = run.finish(timeout=30)
    assert not report.durable and report.points_pending == 5_000 * KEYS
    spools = sorted(p.parent.name for p in tmp_path.glob("*/meta.json"))
    assert len(spools) == 2 and spools[1] == spools[0] + ".s"
    assert sync_main([str(tmp_path), "--server", server_proc.address]) == 0
    assert not list(tmp_path.glob("*/meta.json"))
    import psycopg

    with psycopg.connect(database_url) as conn:
        (run_id,) = conn.execute("SELECT run_id::text FROM runs r JOIN experiments e "
                                 "USING (experiment_id) WHERE e.name = 'offline-sender'"
                                 ).fetchone() or ("",)
    assert_exactly_once(database_url, run_id, 5_000)


def test_the_sender_setting_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                       ) -> None:
    with pytest.raises(ValueError, match="sender must be one of thread, process"):
        tracker_client.Options(sender="proc")  # type: ignore[arg-type]
    monkeypatch.setenv("TRACKER_SENDER", "proces")
    with pytest.raises(ValueError, match="TRACKER_SENDER must be thread, process or auto"):
        tracker_client.init(experiment="x", mode="offline", options=fast(tmp_path))
    assert not list(tmp_path.iterdir())  # refused before anything touched the disk
    monkeypatch.setenv("TRACKER_SENDER", "process")
    run = tracker_client.init(experiment="x", mode="offline", options=fast(tmp_path))
    assert run._sender is not None
    ready(run)
    run.close(10)


def test_auto_starts_the_process_only_when_the_threads_fall_behind(
        server_proc: ServerProcess, database_url: str, tmp_path: Path) -> None:
    slow = tracker_client.init(experiment="auto", server=server_proc.address,
                               options=fast(tmp_path / "slow", sender="auto"))
    for step in range(50):
        slow.log({"k0": step}, step=step)
        time.sleep(0.002)
    assert slow.flush(30).durable and slow._sender is None  # kept up: no process
    assert slow.stats.sender == "thread"
    slow.finish(timeout=30)
    # A 256 KiB tail and a loop that never sleeps: the threads fall behind at once.
    run = tracker_client.init(experiment="auto", server=server_proc.address,
                              options=fast(tmp_path / "fast", sender="auto",
                                           spool_tail_bytes=256 << 10))
    step = 0
    deadline = time.monotonic() + 60
    while run._sender is None or not run._sender.ready.is_set() or (
            run._tail is not run._sender.tail):
        assert time.monotonic() < deadline, "no sender process started"
        log_steps(run, step, step + 100)
        step += 100
    log_steps(run, step, step + 20_000)  # through the process now
    step += 20_000
    wait_for(lambda: run.flush(5).points_pending == 0, timeout=60, what="all acknowledged")
    st = run.stats
    assert st.points_acked == st.points_logged - st.points_dropped
    assert run.finish(timeout=30).durable
    counts = stored(database_url, run.run_id or "")
    assert max(counts.values()) == 1 and len(counts) == st.points_acked


def test_no_interpreter_to_start_keeps_log_in_the_trainer(
        server_proc: ServerProcess, database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    run = tracker_client.init(experiment="no-python", server=server_proc.address,
                              options=fast(tmp_path, sender="process"))
    assert run._sender is not None and not run._sender.alive
    assert "cannot start the sender process" in run._sender.error
    log_steps(run, 0, 1_000)
    assert run.flush(30).durable
    assert run.finish(timeout=30).durable
    assert_exactly_once(database_url, run.run_id or "", 1_000)
