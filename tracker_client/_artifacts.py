"""``run.log_artifact()``: references to checkpoints and other files, delivered like
params and tags.

tracker never uploads or copies a file: a record says where it is (an absolute path on
shared storage, or a URI such as ``s3://bucket/key``), its kind, step, size and,
when asked, its SHA-256. The training thread only checks the arguments; a recorder
thread measures the file (``stat``, hashing when asked: both can be slow on network
storage) and then queues the record as an ``artifact`` control op. Control ops are
persisted in the spool directory (``ops.jsonl``) before any delivery attempt, so a
record survives server outages, offline mode and killed trainers, and ``tracker sync``
delivers it; the server is idempotent on (run, uri, step), so a record is stored once
however often it is delivered.

A URI with credentials in it (``s3://key:secret@...``, a pre-signed URL) is refused
with ValueError before anything is written, and the message never repeats it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from tracker_client import _enums
from tracker_proto.v1 import artifacts_pb2, artifacts_pb2_grpc

log = logging.getLogger("tracker_client")

KINDS: dict[str, int] = _enums.labels(artifacts_pb2.ArtifactKind.DESCRIPTOR)
"""``checkpoint``, ``model``, ``dataset``, ``other`` -> tracker.v1.ArtifactKind."""

MAX_URI_BYTES = 2048
"""The server's default bound (``TRACKER_MAX_ARTIFACT_URI_BYTES``); checked here too so
a hopeless record is refused at the call, not after a round trip."""
HASH_CHUNK_BYTES = 1 << 20

# Query parameters that make a URL a credential (pre-signed S3/GCS/Azure URLs, tokens);
# the server refuses the same set.
_SECRET_PARAMS = frozenset({
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "awsaccesskeyid",
    "signature", "x-goog-signature", "x-goog-credential", "sig",
    "token", "access_token", "password", "secret", "api_key", "apikey",
})
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def kind_number(kind: str) -> int:
    """The wire number of a kind name; ValueError naming the accepted ones."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}") from None


def normalize_uri(path_or_uri: str | os.PathLike[str]) -> str:
    """An absolute path or a URI with a scheme, checked like the server checks it.

    Relative paths are made absolute (against the current directory): a relative path
    means nothing on another node. ValueError for an empty or over-long value, control
    characters, or credentials (the message never quotes the value).
    """
    text = os.fspath(path_or_uri)
    if not text:
        raise ValueError("artifact uri must not be empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("artifact uri contains control characters")
    if _SCHEME_RE.match(text):
        parts = urllib.parse.urlsplit(text)
        names = {k.lower() for k, _ in urllib.parse.parse_qsl(parts.query,
                                                              keep_blank_values=True)}
        if "@" in parts.netloc or names & _SECRET_PARAMS:
            raise ValueError("artifact uri carries credentials; record the location without "
                             "them (object-store clients read keys from their own config)")
        uri = text
    else:
        uri = os.path.abspath(text)
    if len(uri.encode("utf-8", "surrogatepass")) > MAX_URI_BYTES:
        raise ValueError(f"artifact uri is longer than {MAX_URI_BYTES} bytes")
    return uri


def local_path(uri: str) -> Path | None:
    """The file a URI names on this machine (a plain path or ``file://``), None for
    other schemes (object stores: not checked by tracker)."""
    if uri.startswith("file://"):
        parts = urllib.parse.urlsplit(uri)
        return Path(urllib.parse.unquote(parts.path))
    if _SCHEME_RE.match(uri):
        return None
    return Path(uri)


def measure(path: Path, compute_hash: bool) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex or "") of a file, or of a directory (e.g. a Hugging
    Face ``checkpoint-N`` folder): the total size of its files, and the SHA-256 of the
    sorted ``relative path NUL file sha256`` lines. OSError when unreadable."""
    if not path.is_dir():
        size = path.stat().st_size
        return size, _file_sha256(path) if compute_hash else ""
    total = 0
    manifest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        total += f.stat().st_size
        if compute_hash:
            rel = f.relative_to(path).as_posix()
            manifest.update(f"{rel}\0{_file_sha256(f)}\n".encode())
    return total, manifest.hexdigest() if compute_hash else ""


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        # hashlib releases the GIL for large updates: the training thread keeps running.
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY_BYTES = 200
MAX_METADATA_VALUE_BYTES = 1000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Metadata as strings, within the server's bounds (32 entries, keys 1..200 bytes,
    values up to 1000 bytes, no NUL): ValueError otherwise."""
    values = {str(k): str(v) for k, v in (metadata or {}).items()}
    if len(values) > MAX_METADATA_ENTRIES:
        raise ValueError(f"artifact metadata has more than {MAX_METADATA_ENTRIES} entries")
    for key, value in values.items():
        if not 0 < len(key.encode()) <= MAX_METADATA_KEY_BYTES or "\x00" in key:
            raise ValueError(f"artifact metadata keys must be 1..{MAX_METADATA_KEY_BYTES} "
                             "bytes without NUL")
        if len(value.encode()) > MAX_METADATA_VALUE_BYTES or "\x00" in value:
            raise ValueError(f"artifact metadata value of {key[:80]!r} is longer than "
                             f"{MAX_METADATA_VALUE_BYTES} bytes or contains NUL")
    return values


def check_step(step: int | None) -> int | None:
    """A step in int64 (its smallest value is reserved for "no step")."""
    if step is None:
        return None
    value = int(step)
    if not INT64_MIN < value <= INT64_MAX:
        raise ValueError(f"artifact step {value} is outside int64")
    return value


class ArtifactRecorder:
    """Measures files off the training thread, then submits ``artifact`` ops in the
    order they were logged."""

    def __init__(self, submit: Callable[[dict[str, Any]], int], rank: int) -> None:
        self._submit = submit
        self._rank = rank
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Artifacts logged but not yet handed to the control queue."""
        return self._pending

    def log(self, path_or_uri: str | os.PathLike[str], kind: str, step: int | None,
            compute_hash: bool, metadata: Mapping[str, Any] | None) -> None:
        """Check the arguments (ValueError) and queue the artifact; never blocks."""
        item = {
            "op": "artifact", "uri": normalize_uri(path_or_uri), "kind": kind_number(kind),
            "step": check_step(step), "hash": bool(compute_hash),
            "metadata": check_metadata(metadata), "rank": self._rank,
            "created_ns": time.time_ns(),
        }
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="tracker-artifacts",
                                                daemon=True)
                self._thread.start()
        self._queue.put(item)

    def drain(self, deadline: float) -> bool:
        """Wait until every logged artifact is submitted (or ``deadline``)."""
        with self._lock:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.1))
            return True

    def stop(self) -> None:
        """End the thread once the queue is empty (what is still queued is lost: the
        caller drained first)."""
        if self._thread is not None:
            self._queue.put(None)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            op = self._measured(item)
            try:
                self._submit(op)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._lock.notify_all()

    def _measured(self, item: dict[str, Any]) -> dict[str, Any]:
        compute_hash = item.pop("hash")
        path = local_path(item["uri"])
        item["size_bytes"], item["sha256"] = None, ""
        if path is not None:
            try:
                item["size_bytes"], item["sha256"] = measure(path, compute_hash)
            except OSError as exc:
                # Still recorded: the reference is what matters; verify will say missing.
                text = f"artifact at step {item['step']}: cannot read it ({exc.strerror})"
                log.warning("tracker_client: %s; recorded without size", text)
        return item


def request_of(op: Mapping[str, Any], run_id: str) -> artifacts_pb2.LogArtifactsRequest:
    """The LogArtifacts call of one ``artifact`` op."""
    created = timestamp_pb2.Timestamp()
    created.FromNanoseconds(int(op["created_ns"]))
    art = artifacts_pb2.ArtifactInput(
        uri=op["uri"], kind=artifacts_pb2.ArtifactKind.ValueType(int(op["kind"])),
        sha256=op.get("sha256", ""), metadata=op.get("metadata", {}),
        rank=int(op.get("rank", 0)), created_at=created)
    if op.get("step") is not None:
        art.step = int(op["step"])
    if op.get("size_bytes") is not None:
        art.size_bytes = int(op["size_bytes"])
    return artifacts_pb2.LogArtifactsRequest(run_id=run_id, artifacts=[art])


def deliver(channel: grpc.Channel, op: Mapping[str, Any], run_id: str,
            metadata: tuple[tuple[str, str], ...], timeout_s: float) -> None:
    """Send one ``artifact`` op (grpc.RpcError as the server answered; a server without
    the service answers UNIMPLEMENTED, which the control queue does not retry)."""
    artifacts_pb2_grpc.ArtifactServiceStub(channel).LogArtifacts(
        request_of(op, run_id), timeout=timeout_s, metadata=metadata or None)
