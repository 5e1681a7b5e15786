"""run.log_artifact() against a real server: recorded with size and hash off the training
thread, refused arguments, offline mode + ``tracker sync`` (each record delivered once),
the read API (kinds, ``best(..., with_checkpoint=True)``) and ``tracker artifacts``
(``ls``, ``verify`` finding a deleted, a truncated and a rewritten checkpoint)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import psycopg
import pytest
from structlog.testing import capture_logs

import tracker_client
from tests.client_support import fast, wait_for
from tests.support import ServerThread
from tests.test_client_old_server import _Calls, old_server  # noqa: F401  (fixture)
from tracker_client._control import read_ops
from tracker_client._sync import main as sync_main
from tracker_client.cli import main as cli_main

pytestmark = pytest.mark.timeout(90)


def _ckpt(directory: Path, name: str, size: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(os.urandom(size))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _artifact_rows(database_url: str, run_id: str) -> list[tuple[str, int | None]]:
    with psycopg.connect(database_url) as conn:
        return [(str(u), s) for u, s in conn.execute(
            "SELECT uri, step FROM run_artifacts WHERE run_id = %s ORDER BY step_key, uri",
            (run_id,)).fetchall()]


def test_logged_artifacts_are_read_back_with_size_hash_and_best_checkpoint(
        server: ServerThread, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    run = tracker_client.init(experiment="art", server=server.address,
                              options=fast(tmp_path / "spool"))
    paths = {}
    for step in range(10):
        run.log({"val_loss": abs(step - 6) + 1.0}, step=step)  # best (min) at step 6
        if step in (2, 5, 8):
            paths[step] = _ckpt(shared, f"step={step}.ckpt", 1000 + step)
            run.log_artifact(paths[step], compute_hash=step == 5,
                             metadata={"epoch": step // 3})
    run.log_artifact("s3://bucket/models/final", kind="model", step=None)
    run.log_artifact(shared, kind="dataset", step=0, compute_hash=True)  # a directory
    report = run.finish(timeout=20)
    assert report.durable, report

    with tracker_client.Api(server=server.address) as api:
        found = api.artifacts(run.run_id)  # type: ignore[arg-type]
        by_step = {a.step: a for a in found if a.kind == "checkpoint"}
        assert sorted(by_step) == [2, 5, 8]  # step defaults to the last step logged
        for step, path in paths.items():
            a = by_step[step]
            assert (a.uri, a.size_bytes, a.rank) == (str(path), path.stat().st_size, 0)
            assert a.metadata == {"epoch": str(step // 3)}
            assert a.verify_state == "unverified" and a.created_at is not None
        assert by_step[5].sha256 == _sha(paths[5]) and by_step[2].sha256 == ""
        (dataset,) = api.artifacts(run.run_id, kind="dataset")  # type: ignore[arg-type]
        assert dataset.size_bytes == sum(p.stat().st_size for p in paths.values())
        manifest = "".join(f"{p.name}\0{_sha(p)}\n" for p in sorted(paths.values()))
        assert dataset.sha256 == hashlib.sha256(manifest.encode()).hexdigest()
        (model,) = api.run(run.run_id).artifacts(kind="model")  # type: ignore[arg-type]
        assert (model.uri, model.step, model.size_bytes) == ("s3://bucket/models/final",
                                                             None, None)
        assert [a.step for a in api.artifacts(run.run_id, min_step=3, max_step=8)] == [5, 8]  # type: ignore[arg-type]
        (best,) = api.best("art", "val_loss", mode="min", on="min", with_checkpoint=True)
        assert best.step == 6 and best.checkpoint is not None
        assert best.checkpoint.step == 5 and best.checkpoint.uri == str(paths[5])
        assert api.best("art", "val_loss", mode="min", on="min")[0].checkpoint is None


def test_hashing_never_blocks_the_training_thread(server: ServerThread, tmp_path: Path
                                                  ) -> None:
    # A FIFO: reading it blocks until someone writes, like a hash over slow storage.
    fifo = tmp_path / "slow.ckpt"
    os.mkfifo(fifo)
    run = tracker_client.init(experiment="art-slow", server=server.address,
                              options=fast(tmp_path / "spool"))
    started = time.monotonic()
    run.log_artifact(fifo, step=3, compute_hash=True)
    run.log({"loss": 1.0}, step=4)
    assert time.monotonic() - started < 0.5
    report = run.flush(timeout=0.3)
    assert not report.durable and report.ops_pending == 1
    payload = os.urandom(3 << 20)

    def write() -> None:
        with open(fifo, "wb") as f:
            f.write(payload)

    writer = threading.Thread(target=write)
    writer.start()
    assert run.finish(timeout=20).durable
    writer.join(5)
    with tracker_client.Api(server=server.address) as api:
        (a,) = api.artifacts(run.run_id)  # type: ignore[arg-type]
        assert (a.step, a.sha256) == (3, hashlib.sha256(payload).hexdigest())


def test_refused_arguments_never_reach_the_spool(server: ServerThread, tmp_path: Path) -> None:
    run = tracker_client.init(experiment="art-bad", server=server.address,
                              options=fast(tmp_path / "spool"))
    secret = "wJalrXUtnFEMI-K7MDENG"
    for uri in (f"s3://AKID:{secret}@bucket/ckpt",
                f"https://h/ckpt?X-Amz-Signature={secret}"):
        with pytest.raises(ValueError, match="credentials") as info:
            run.log_artifact(uri)
        assert secret not in str(info.value)
    with pytest.raises(ValueError, match="kind must be one of checkpoint"):
        run.log_artifact("/a", kind="weights")
    with pytest.raises(ValueError, match="empty"):
        run.log_artifact("")
    spool = run.spool_path
    assert all(op["op"] != "artifact" for op in read_ops(spool))
    assert secret not in "".join(p.read_text(errors="replace") for p in spool.iterdir()
                                 if p.is_file())
    # A relative path is made absolute: it must mean something on another node.
    run.log_artifact("ckpt/last.ckpt", step=1)
    assert run.finish(timeout=20).durable
    with tracker_client.Api(server=server.address) as api:
        (a,) = api.artifacts(run.run_id)  # type: ignore[arg-type]
        assert a.uri == os.path.abspath("ckpt/last.ckpt") and a.size_bytes is None
    with pytest.raises(RuntimeError, match="closed"):
        run.log_artifact("/a")


def test_offline_then_sync_delivers_each_artifact_once(
        server: ServerThread, database_url: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    run = tracker_client.init(experiment="art-offline", mode="offline", run_key="hpc-art",
                              server=server.address, options=fast(tmp_path / "spool"))
    for step in (10, 20, 30):
        run.log({"loss": 1.0 / step}, step=step)
        run.log_artifact(_ckpt(shared, f"{step}.ckpt", 100), step=step, compute_hash=True)
    report = run.finish(timeout=5)
    assert not report.durable and report.ops_pending == 4  # 3 artifacts + finish
    assert [op["step"] for op in read_ops(Path(report.spool_path))
            if op["op"] == "artifact"] == [10, 20, 30]

    with capture_logs() as logs:
        assert sync_main([str(tmp_path / "spool"), "--max-time", "30"]) == 0
        assert sync_main([str(tmp_path / "spool"), "--max-time", "30"]) == 0  # nothing left

        def calls() -> int:
            return sum(1 for e in logs if e.get("event") == "rpc"
                       and str(e.get("method", "")).endswith("/LogArtifacts"))
        wait_for(lambda: calls() >= 3, 5, what="the LogArtifacts log lines")
        time.sleep(0.2)
        assert calls() == 3  # one delivery per record, none by the second sync
    with tracker_client.Api(server=server.address) as api:
        (r,) = list(api.runs("art-offline"))
        assert r.status == "finished"
        assert [(a.step, a.sha256) for a in r.artifacts()] == [
            (s, _sha(shared / f"{s}.ckpt")) for s in (10, 20, 30)]
    assert len(_artifact_rows(database_url, r.run_id)) == 3


def test_cli_ls_and_verify_find_deleted_truncated_and_rewritten_checkpoints(
        server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    run = tracker_client.init(experiment="art-cli", server=server.address,
                              options=fast(tmp_path / "spool"))
    files = {s: _ckpt(shared, f"step={s}.ckpt", 4096) for s in (1, 2, 3, 4)}
    for s, path in files.items():
        run.log_artifact(path, step=s, compute_hash=True)
    run.log_artifact("gs://bucket/export", kind="model", step=4)
    assert run.finish(timeout=20).durable
    rid = run.run_id
    assert rid is not None
    server_flag = ["--server", server.address]

    assert cli_main(["artifacts", "verify", rid, *server_flag]) == 0
    assert "5 artifact(s) checked, 0 differ" in capsys.readouterr().out

    files[1].unlink()                                              # deleted
    with open(files[2], "r+b") as f:                               # truncated
        f.truncate(1000)
    files[3].write_bytes(os.urandom(4096))                         # same size, new bytes
    assert cli_main(["artifacts", "verify", rid, "--json", *server_flag]) == 1
    out = json.loads(capsys.readouterr().out)
    states = {a["step"]: a["state"] for a in out["artifacts"] if a["kind"] == "checkpoint"}
    assert states == {1: "missing", 2: "size_mismatch", 3: "hash_mismatch", 4: "ok"}
    assert out["problems"] == 3
    detail = {a["step"]: a["detail"] for a in out["artifacts"] if a["kind"] == "checkpoint"}
    assert "size is 1000 bytes, recorded 4096" in detail[2]
    assert [a["state"] for a in out["artifacts"] if a["kind"] == "model"] == ["unchecked"]
    # --no-hash skips reading the bytes: the rewritten file passes.
    assert cli_main(["artifacts", "verify", rid, "--json", "--no-hash", "--no-record",
                     *server_flag]) == 1
    no_hash = json.loads(capsys.readouterr().out)
    assert {a["step"]: a["state"] for a in no_hash["artifacts"]
            if a["kind"] == "checkpoint"}[3] == "ok"

    # The recorded outcome (not the --no-record one) is what ls and the API show.
    assert cli_main(["artifacts", "ls", rid, "--json", "--kind", "checkpoint",
                     *server_flag]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(a["step"], a["verify_state"]) for a in listed] == [
        (1, "missing"), (2, "size_mismatch"), (3, "hash_mismatch"), (4, "ok")]
    # RUN may be an id prefix, as for every command taking a run.
    assert cli_main(["artifacts", "ls", rid[:8], *server_flag]) == 0
    table = capsys.readouterr().out
    assert "4.0 KiB" in table and "size_mismatch" in table and str(files[4]) in table
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["artifacts", "ls", rid, "--kind", "weights", *server_flag])
    assert exit_info.value.code == 2 and "invalid choice: 'weights'" in capsys.readouterr().err


def test_compare_best_cli_and_async_name_the_checkpoint_at_the_best_step(
        server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    ids = []
    for i, best_at in enumerate((3, 7)):
        run = tracker_client.init(experiment="art-cmp", server=server.address,
                                  options=fast(tmp_path / f"spool{i}"))
        # "max" on purpose: a comparison without a mode must follow it, not default to min.
        run.define_metric("val_loss", goal="max")
        for step in range(10):
            run.log({"val_loss": abs(step - best_at) + i}, step=step)
            if step % 2 == 0:
                run.log_artifact(_ckpt(shared / str(i), f"{step}.ckpt", 10))
        assert run.finish(timeout=20).durable
        ids.append(str(run.run_id))
    with tracker_client.Api(server=server.address) as api:
        cmp = api.compare(ids, checkpoint_metric="val_loss", mode="min")
        # Best steps 3 and 7 fall between two checkpoints: the later one is named.
        assert {r: c.step for r, c in cmp.checkpoints.items()} == {ids[0]: 4, ids[1]: 8}
        (row,) = [r for r in cmp.rows() if r["field"] == "checkpoint"]
        assert row[ids[0]] == str(shared / "0" / "4.ckpt")
        # Without a mode: the goal the runs defined (max: steps 9 and 0).
        by_goal = api.compare(ids, checkpoint_metric="val_loss").checkpoints
        assert {r: c.step for r, c in by_goal.items()} == {ids[0]: 8, ids[1]: 0}
        assert api.compare(ids).checkpoints == {}
        assert api.compare(ids, checkpoint_metric="nope").checkpoints == {ids[0]: None,
                                                                          ids[1]: None}

    async def read() -> tuple[list[int | None], list[int | None]]:
        async with tracker_client.AsyncApi(server=server.address) as aapi:
            ranked = await aapi.best("art-cmp", "val_loss", mode="min", on="min",
                                    with_checkpoint=True)
            run = await aapi.run(ids[1])
            return ([r.checkpoint.step for r in ranked if r.checkpoint],
                    [a.step for a in await run.artifacts(min_step=5)])

    assert asyncio.run(read()) == ([4, 8], [6, 8])

    assert cli_main(["best", "art-cmp", "--metric", "val_loss", "--min", "--on", "min",
                     "--checkpoint", "--json", "--server", server.address]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["checkpoint"]["step"]) for r in ranked] == [(ids[0], 4),
                                                                          (ids[1], 8)]
    assert cli_main(["best", "art-cmp", "--metric", "val_loss", "--min", "--on", "min",
                     "--checkpoint", "--server", server.address]) == 0
    out = capsys.readouterr().out
    assert "CHECKPOINT" in out and str(shared / "1" / "8.ckpt") in out


def test_a_server_without_artifacts_refuses_once_and_training_goes_on(
        old_server: tuple[str, _Calls], tmp_path: Path) -> None:  # noqa: F811  (fixture)
    address, calls = old_server
    run = tracker_client.init(experiment="old", server=address, options=fast(tmp_path))
    run.log_artifact(_ckpt(tmp_path / "shared", "a.ckpt", 10), step=1)
    report = run.finish(timeout=10)
    assert report.ops_pending == 0
    assert any(m.startswith("artifact not applied: UNIMPLEMENTED") for m in report.ops_failed)
    assert calls.seen["LogArtifacts"] == 1  # not retried
