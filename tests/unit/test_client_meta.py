"""meta.json: one typed reader and writer; spools written before it still read."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tracker_client._delivery import ref_from_meta
from tracker_client._meta import META_FILE, SpoolMeta, parse_meta, read_meta, write_meta
from tracker_client._rpc import RunRef
from tracker_client._spool import Spool

# What init() and the delivery thread wrote as a plain dict: run_id null until attached,
# a seed of null, and keys this reader does not know.
OLD_UNATTACHED = {
    "version": 1, "mode": "offline", "server": "127.0.0.1:50051", "experiment": "mnist",
    "owner": "", "name": "", "run_key": "slurm-42", "writer_id": "slurm-42.r1.abc",
    "rank": 1, "params": {"lr": "0.001"}, "tags": {}, "resume": False, "resume_token": "",
    "seed": None, "slurm_job_id": "42", "metadata": {"host": "n1", "git": {"dirty": True}},
    "created_ns": 1_700_000_000_000_000_000, "run_id": None, "from_a_newer_client": [1, 2],
}
OLD_ATTACHED = {
    **OLD_UNATTACHED, "mode": "online", "run_id": "3f1c", "experiment_id": "e9",
    "attempt": 2, "run_name": "brave-owl", "acked_seq": 7, "last_seq": 9, "ops_done": 1,
    "closed": True, "seed": 1234,
}


def test_old_format_reads_with_unknown_keys_ignored_and_defaults(tmp_path: Path) -> None:
    (tmp_path / META_FILE).write_text(json.dumps(OLD_UNATTACHED))
    meta = read_meta(tmp_path)
    assert (meta.mode, meta.experiment, meta.run_key, meta.rank) == (
        "offline", "mnist", "slurm-42", 1)
    assert meta.params == {"lr": "0.001"} and meta.metadata["git"] == {"dirty": True}
    assert meta.seed is None and meta.run_id == "" and ref_from_meta(meta) is None
    # Keys the old writer had not written yet take their defaults.
    assert (meta.attempt, meta.acked_seq, meta.ops_done, meta.closed) == (0, 0, 0, False)


def test_old_attached_spool_keeps_its_run_and_progress(tmp_path: Path) -> None:
    (tmp_path / META_FILE).write_text(json.dumps(OLD_ATTACHED))
    assert ref_from_meta(read_meta(tmp_path)) == RunRef("3f1c", "e9", 2, "brave-owl")
    spool = Spool(tmp_path)
    try:
        assert spool.acked_seq == 7 and spool.last_seq == 9
        assert spool.meta.ops_done == 1 and spool.meta.seed == 1234
    finally:
        spool.close()


def test_missing_keys_default() -> None:
    assert parse_meta({}) == SpoolMeta()
    assert parse_meta({"rank": "3", "attempt": None}) == SpoolMeta(rank=3)


@pytest.mark.parametrize(("data", "message"), [
    ([], "JSON object"),
    ({"rank": "x"}, "rank"),
    ({"resume": "yes"}, "resume must be true or false"),
    ({"mode": "ofline"}, "mode must be one of"),
    ({"params": ["lr"]}, "params must be an object"),
])
def test_wrong_types_are_errors_naming_the_field(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_meta(data)


def test_not_json_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / META_FILE).write_text("{torn")
    with pytest.raises(ValueError, match="not JSON"):
        read_meta(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_meta(tmp_path / "nowhere")


def test_write_then_read_round_trips_in_the_same_json_shape(tmp_path: Path) -> None:
    meta = SpoolMeta(server="h:1", experiment="e", run_key="k", writer_id="w", rank=2,
                     params={"a": "1"}, seed=5, metadata={"x": [1, 2]}, run_id="r", attempt=3)
    write_meta(tmp_path, meta)
    assert read_meta(tmp_path) == meta
    on_disk = json.loads((tmp_path / META_FILE).read_text())
    assert set(OLD_ATTACHED) - {"from_a_newer_client"} <= set(on_disk)
    assert not (tmp_path / (META_FILE + ".tmp")).exists()


def test_spool_update_meta_is_typed_and_keeps_its_own_seqs(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    try:
        spool.append(b"x", 1)
        spool.update_meta(lambda m: replace(m, run_key="k", acked_seq=99))
        on_disk = read_meta(tmp_path)
        # The spool, not the caller, owns the seq counters.
        assert (on_disk.run_key, on_disk.acked_seq, on_disk.last_seq) == ("k", 0, 1)
    finally:
        spool.close()


def test_a_corrupt_meta_does_not_stop_the_spool_from_opening(tmp_path: Path) -> None:
    (tmp_path / META_FILE).write_text('{"rank": "x"}')
    spool = Spool(tmp_path)
    try:
        assert spool.meta == SpoolMeta()
    finally:
        spool.close()
