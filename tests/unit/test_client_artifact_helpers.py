"""The client's artifact helpers without a server: what log_artifact refuses at the call
(as the server would), which URIs are local files, how files and directories are
measured, the nearest checkpoint, and what verify concludes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tracker_client._artifact_types import (
    MAX_DETAIL_BYTES,
    Artifact,
    check,
    nearest,
    verification_request,
)
from tracker_client._artifacts import (
    check_metadata,
    check_step,
    kind_number,
    local_path,
    measure,
    normalize_uri,
)
from tracker_server.domain.artifacts import ArtifactLimits, check_uri
from tracker_server.domain.errors import TrackerError


def _artifact(uri: str, step: int | None = 1, size: int | None = None, sha: str = ""
              ) -> Artifact:
    return Artifact(run_id="r", uri=uri, kind="checkpoint", step=step, size_bytes=size,
                    sha256=sha, rank=0, created_at=None)


@pytest.mark.parametrize("uri", [
    "s3://AKID:secret@bucket/k", "gs://token@bucket/k", "https://h/k?X-Amz-Signature=x",
    "https://h/k?sig=abc&sv=1", "https://h/k?Token=abc", "", "/a\x00b", "/" + "x" * 2048,
])
def test_the_client_refuses_what_the_server_refuses(uri: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_uri(uri)
    assert "secret" not in str(info.value) and "abc" not in str(info.value)
    with pytest.raises(TrackerError):
        check_uri(uri, ArtifactLimits())


@pytest.mark.parametrize("uri", ["s3://bucket/ckpt/step=10", "file:///shared/a.ckpt",
                                 "/shared/epoch=1-step=10.ckpt", "hdfs://nn:8020/x?part=1"])
def test_accepted_uris_are_kept_as_given(uri: str) -> None:
    assert normalize_uri(uri) == uri
    assert check_uri(uri, ArtifactLimits()) == uri


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalize_uri(Path("ckpt") / "a.ckpt") == str(tmp_path / "ckpt" / "a.ckpt")


def test_kinds_steps_and_metadata_bounds() -> None:
    assert kind_number("checkpoint") == 1 and kind_number("other") == 4
    with pytest.raises(ValueError, match="kind must be one of"):
        kind_number("Checkpoint")
    assert check_step(None) is None and check_step(2**63 - 1) == 2**63 - 1
    with pytest.raises(ValueError, match="int64"):
        check_step(-(2**63))
    assert check_metadata({"epoch": 3}) == {"epoch": "3"}
    for bad in ({f"k{i}": 1 for i in range(33)}, {"": "v"}, {"k" * 201: "v"},
                {"k": "v" * 1001}, {"k": "a\x00b"}):
        with pytest.raises(ValueError, match="metadata"):
            check_metadata(bad)


def test_local_paths() -> None:
    assert local_path("/shared/a b.ckpt") == Path("/shared/a b.ckpt")
    assert local_path("file:///shared/a%20b.ckpt") == Path("/shared/a b.ckpt")
    assert local_path("s3://bucket/key") is None


def test_measure_file_and_directory(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    a, b = tmp_path / "d" / "a.bin", tmp_path / "d" / "sub" / "b.bin"
    a.write_bytes(b"x" * 10)
    b.write_bytes(b"y" * 5)
    assert measure(a, True) == (10, hashlib.sha256(b"x" * 10).hexdigest())
    assert measure(a, False) == (10, "")
    size, digest = measure(tmp_path / "d", True)
    lines = (f"a.bin\0{hashlib.sha256(b'x' * 10).hexdigest()}\n"
             f"sub/b.bin\0{hashlib.sha256(b'y' * 5).hexdigest()}\n")
    assert (size, digest) == (15, hashlib.sha256(lines.encode()).hexdigest())


def test_nearest_prefers_the_closer_then_the_later_step() -> None:
    found = [_artifact("/n", None), _artifact("/2", 2), _artifact("/6", 6),
             _artifact("/10", 10)]
    assert nearest(found, 4).uri == "/6"  # type: ignore[union-attr]
    assert nearest(found, 3).uri == "/2"  # type: ignore[union-attr]
    assert nearest(found, 100).uri == "/10"  # type: ignore[union-attr]
    assert nearest([_artifact("/n", None)], 4) is None


def test_check_states(tmp_path: Path) -> None:
    path = tmp_path / "c.ckpt"
    path.write_bytes(b"abc")
    sha = hashlib.sha256(b"abc").hexdigest()
    assert check(_artifact(str(path), size=3, sha=sha)).state == "ok"
    assert check(_artifact(f"file://{path}", size=3, sha=sha)).state == "ok"
    assert check(_artifact(str(path), size=3, sha="0" * 64)).state == "hash_mismatch"
    assert check(_artifact(str(path), size=3, sha="0" * 64), hash_files=False).state == "ok"
    assert check(_artifact(str(path), size=4)).detail == "size is 3 bytes, recorded 4"
    assert check(_artifact(str(path))).state == "ok"  # nothing recorded to compare
    assert check(_artifact(str(tmp_path / "gone"))).state == "missing"
    assert check(_artifact("s3://bucket/k", size=3)).state == "unchecked"
    if os.geteuid() != 0:  # root reads anything
        path.chmod(0)
        assert check(_artifact(str(path), size=3, sha=sha)).state == "unchecked"


def test_a_path_the_os_refuses_is_unchecked_not_a_crash(tmp_path: Path) -> None:
    # ENAMETOOLONG from the existence check itself.
    result = check(_artifact(str(tmp_path / ("x" * 300)), size=3))
    assert result.state == "unchecked" and "cannot read" in result.detail


def test_a_long_non_ascii_detail_fits_the_servers_byte_limit(tmp_path: Path) -> None:
    path = tmp_path.joinpath(*[c * 120 for c in "éüøåæ"], "gone.ckpt")  # 240 B each
    found = check(_artifact(str(path), size=3))
    assert found.state == "missing" and len(found.detail.encode()) > MAX_DETAIL_BYTES
    (sent,) = verification_request("r", [found]).results
    assert len(sent.detail.encode()) <= MAX_DETAIL_BYTES
    assert found.detail.startswith(sent.detail)  # cut at a character, never mid-character
