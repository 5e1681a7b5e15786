"""``tracker sync``: parallel delivery, --json, --dry-run, a progress bar on a terminal,
and --tls-ca / --timeout honoured, against real servers."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracker_client
from tests.client_support import fast, stored
from tests.support import Api, ServerThread
from tests.test_tls import Pki, _tls_server, pki  # noqa: F401  (pki is a fixture)
from tracker_client.cli import main as cli_main
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_server.config import Settings

pytestmark = pytest.mark.timeout(90)


def offline_spools(root: Path, address: str, count: int, points: int = 200) -> list[str]:
    """``count`` offline runs, each spooled under ``root``; returns their run keys."""
    keys = []
    for i in range(count):
        key = f"sync-{i}"
        run = tracker_client.init(experiment="sync", mode="offline", run_key=key,
                                  server=address, config={"i": i}, options=fast(root))
        for step in range(points):
            run.log({"loss": 1 / (step + 1)}, step=step)
        run.set_tags({"stage": "pretrain"})
        report = run.finish(timeout=5)
        assert report.points_pending == points and report.ops_pending == 2
        keys.append(key)
    return keys


def runs_by_key(api: Api) -> dict[str, ex.Run]:
    exp = api.experiments.CreateExperiment(ex.CreateExperimentRequest(
        name="sync", get_if_exists=True)).experiment
    runs = api.experiments.SearchRuns(ex.SearchRunsRequest(
        experiment_ids=[exp.experiment_id], page_size=100)).runs
    return {r.run_key: r for r in runs}


def spool_files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_sync_delivers_spools_in_parallel_with_a_json_summary(
    server: ServerThread, api: Api, database_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = offline_spools(tmp_path, server.address, 6)
    code = cli_main(["sync", str(tmp_path), "--parallel", "3", "--json", "--max-time", "30"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["ok"] and not summary["dry_run"]
    assert summary["counts"] == {"delivered": 6} and summary["points_sent"] == 6 * 200
    assert sorted(s["run_key"] for s in summary["spools"]) == keys
    assert "spool" not in err  # no progress bar off a terminal
    found = runs_by_key(api)
    for entry in summary["spools"]:
        run = found[entry["run_key"]]
        assert entry["run_id"] == run.run_id and entry["points_sent"] == 200
        assert run.status == ex.RUN_STATUS_FINISHED and run.tags["stage"] == "pretrain"
        counts = stored(database_url, run.run_id)
        assert len(counts) == 200 and max(counts.values()) == 1
    assert not any(tmp_path.iterdir())  # delivered spools are removed
    # Nothing left: a second sync is a no-op.
    assert cli_main(["sync", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spools"] == []


def test_dry_run_says_what_would_be_sent_and_changes_nothing(
    server: ServerThread, api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offline_spools(tmp_path, server.address, 2, points=150)
    before = spool_files(tmp_path)
    assert cli_main(["sync", str(tmp_path), "--dry-run", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dry_run"] and summary["counts"] == {"would_send": 2}
    for entry in summary["spools"]:
        assert entry["points_pending"] == 150 and entry["ops_pending"] == 2
        assert entry["batches_pending"] >= 1 and entry["server"] == server.address
        assert entry["run_id"] == "" and entry["experiment"] == "sync"
    assert spool_files(tmp_path) == before
    assert runs_by_key(api) == {}  # nothing reached the server
    # The plain-text form names the same numbers.
    assert cli_main(["sync", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("would send 150 points") == 2
    # A real sync afterwards delivers everything.
    assert cli_main(["sync", str(tmp_path), "--max-time", "30"]) == 0
    assert set(runs_by_key(api)) == {"sync-0", "sync-1"}


def test_dry_run_reports_a_spool_in_use(server: ServerThread, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tracker_client.init(experiment="sync", mode="offline", server=server.address,
                              options=fast(tmp_path))
    try:
        run.log({"x": 1.0})
        run.flush(timeout=5)
        assert cli_main(["sync", str(tmp_path), "--dry-run", "--json"]) == 0
        (entry,) = json.loads(capsys.readouterr().out)["spools"]
        assert entry["status"] == "in_use" and entry["points_pending"] == 1
    finally:
        run.close(timeout=5)


def test_progress_bar_on_a_terminal(server: ServerThread, tmp_path: Path) -> None:
    offline_spools(tmp_path, server.address, 2, points=10)
    leader, follower = os.openpty()
    # A terminal of 24 x 100 characters (a fresh pty is 0 x 0, where tqdm draws nothing).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tracker_client._sync", str(tmp_path), "--max-time", "30"],
            stderr=follower, stdout=subprocess.PIPE, timeout=60, check=False)
    finally:
        os.close(follower)
        reader.join(5)
        os.close(leader)
    assert proc.returncode == 0
    bar = b"".join(chunks).decode(errors="replace")
    assert "sync:" in bar and "spool/s" in bar and "0.00/2.00" in bar  # its first draw
    assert proc.stdout.decode().count("delivered") == 2


@pytest.fixture
def tls_only(settings: Settings, pki: Pki) -> Iterator[ServerThread]:  # noqa: F811
    srv = _tls_server(settings, pki)
    try:
        yield srv
    finally:
        srv.stop()


def test_sync_honours_tls_ca(tls_only: ServerThread, pki: Pki, tmp_path: Path,  # noqa: F811
                             capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACKER_TLS_CA", raising=False)
    monkeypatch.delenv("TRACKER_TLS", raising=False)
    offline_spools(tmp_path, tls_only.address, 1, points=20)
    # Plaintext against a TLS server cannot deliver; the spool stays.
    assert cli_main(["sync", str(tmp_path), "--max-time", "1.5", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["counts"] == {"incomplete": 1}
    assert cli_main(["sync", str(tmp_path), "--tls-ca", str(pki.ca), "--json",
                     "--max-time", "30"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"] == {"delivered": 1} and summary["points_sent"] == 20


def test_sync_honours_timeout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A listener that accepts connections and never answers: every call hangs until
    # its deadline, so the error and the time taken show which deadline applied.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        offline_spools(tmp_path, address, 1, points=5)
        start = time.monotonic()
        code = cli_main(["sync", str(tmp_path), "--timeout", "0.3", "--max-time", "2",
                         "--json"])
        elapsed = time.monotonic() - start
    finally:
        silent.close()
    assert code == 1
    (entry,) = json.loads(capsys.readouterr().out)["spools"]
    assert entry["status"] == "incomplete" and "DEADLINE_EXCEEDED" in entry["error"]
    assert entry["points_pending"] == 5
    assert elapsed < 8


@pytest.mark.parametrize("args", [["--parallel", "0"], ["--parallel", "65"],
                                  ["--timeout", "0"]])
def test_sync_refuses_bad_limits(args: list[str], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["sync", str(tmp_path), *args]) == 2
    assert "tracker sync:" in capsys.readouterr().err
