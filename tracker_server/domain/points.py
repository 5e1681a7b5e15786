"""Metric point batches as numpy columns, and their validation.

A batch arrives as packed columns plus a key table; validation is vectorised so a
bad batch is refused as a whole (nothing partial is written) without a Python loop
over points.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tracker_server.domain.errors import TrackerError, invalid

Int64Array = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]
UInt32Array = npt.NDArray[np.uint32]
Float64Array = npt.NDArray[np.float64]

# Bytes a buffered point costs in memory.
POINT_BYTES = 8 + 8 + 8 + 4  # step, value, wall time, key index
# Fixed cost of a buffered batch (objects, key table); also makes an empty (rejected)
# batch count as pending so the flusher commits its seq.
BATCH_OVERHEAD_BYTES = 512
MAX_ERRORS_LISTED = 100


@dataclass(frozen=True, order=True)
class WriterKey:
    """Identity of a writer: the unit of exactly-once sequencing."""

    run_id: uuid.UUID
    writer_id: str


@dataclass(frozen=True)
class WriterInfo:
    """What the Open message said about a writer."""

    key: WriterKey
    rank: int
    attempt: int


@dataclass
class RawColumns:
    """Decoded but unvalidated columns of one batch."""

    keys: list[str]
    key_index: UInt32Array
    steps: Int64Array
    values: Float64Array
    wall_ns: Int64Array


@dataclass
class PointBatch:
    """A validated batch: every point references a key of ``keys``."""

    seq: int
    keys: list[str]
    key_index: UInt32Array
    steps: Int64Array
    values: Float64Array
    wall_ns: Int64Array
    table_ids: Int32Array = field(default_factory=lambda: np.empty(0, np.int32))
    """Global key id of each entry of ``keys`` (same resolution step)."""

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.steps.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory the batch holds (what the global budget counts), never 0."""
        return BATCH_OVERHEAD_BYTES + self.n * POINT_BYTES


@dataclass(frozen=True)
class Limits:
    """Input limits, from Settings."""

    max_batch_points: int
    max_key_bytes: int
    max_keys_per_batch: int


def validate_writer(run_id: str, writer_id: str, rank: int, attempt: int) -> WriterInfo:
    """Check an Open message and return the writer it describes."""
    violations = []
    parsed: uuid.UUID | None = None
    try:
        parsed = uuid.UUID(run_id)
    except ValueError:
        violations.append(("run_id", f"not a UUID: {run_id[:80]!r}"))
    if not writer_id:
        violations.append(("writer_id", "must not be empty"))
    elif len(writer_id.encode()) > 200:
        violations.append(("writer_id", "longer than 200 bytes"))
    elif "\x00" in writer_id:
        violations.append(("writer_id", "contains a NUL character"))
    if rank < 0:
        violations.append(("rank", f"must be >= 0, got {rank}"))
    if attempt < 0:
        violations.append(("attempt", f"must be >= 0, got {attempt}"))
    if violations or parsed is None:
        raise invalid("invalid Open: " + "; ".join(f"{f}: {r}" for f, r in violations), violations)
    return WriterInfo(WriterKey(parsed, writer_id), rank, attempt)


def validate_columns(seq: int, raw: RawColumns, limits: Limits) -> PointBatch:
    """Validate one batch's columns; raise INVALID_ARGUMENT naming the problem.

    Errors that concern single points (key index out of range) list the offending
    point indexes (at most MAX_ERRORS_LISTED) in the error's field violations.
    """
    n = raw.steps.shape[0]
    lengths = {
        "key_index": raw.key_index.shape[0],
        "steps": n,
        "values": raw.values.shape[0],
        "wall_time_ns": raw.wall_ns.shape[0],
    }
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise invalid(f"batch {seq}: column lengths differ ({detail})")
    if n == 0:
        # A valid no-op that consumes its seq: clients send one in place of a batch
        # whose data they lost (e.g. a corrupt spool record) so their seqs stay contiguous.
        return empty_batch(seq)
    if n > limits.max_batch_points:
        raise invalid(
            f"batch {seq}: {n} points exceed the limit of {limits.max_batch_points} per batch"
        )
    if not raw.keys:
        raise invalid(f"batch {seq}: empty key table")
    if len(raw.keys) > limits.max_keys_per_batch:
        raise invalid(
            f"batch {seq}: {len(raw.keys)} keys exceed the limit of "
            f"{limits.max_keys_per_batch} per batch"
        )
    key_errors = []
    for i, key in enumerate(raw.keys):
        size = len(key.encode("utf-8"))
        if size == 0:
            key_errors.append((f"keys[{i}]", "empty metric name"))
        elif size > limits.max_key_bytes:
            key_errors.append(
                (f"keys[{i}]", f"metric name is {size} bytes, limit {limits.max_key_bytes}")
            )
        elif "\x00" in key:
            key_errors.append((f"keys[{i}]", "metric name contains NUL"))
    if key_errors:
        raise invalid(f"batch {seq}: invalid metric name(s)", key_errors[:MAX_ERRORS_LISTED])
    bad = np.flatnonzero(raw.key_index >= len(raw.keys))
    if bad.size:
        listed = [
            (f"key_index[{int(i)}]", f"{int(raw.key_index[i])} >= {len(raw.keys)} keys")
            for i in bad[:MAX_ERRORS_LISTED]
        ]
        raise invalid(
            f"batch {seq}: {bad.size} point(s) have a key index out of range "
            f"(key table has {len(raw.keys)} entries; first bad point {int(bad[0])})",
            listed,
        )
    if len(set(raw.keys)) != len(raw.keys):
        raise invalid(f"batch {seq}: duplicate names in the key table")
    return PointBatch(seq, raw.keys, raw.key_index, raw.steps, raw.values, raw.wall_ns)


def empty_batch(seq: int) -> PointBatch:
    """A batch without points: stands in for a rejected batch so its seq is consumed."""
    return PointBatch(
        seq, [], np.empty(0, np.uint32), np.empty(0, np.int64), np.empty(0, np.float64),
        np.empty(0, np.int64), np.empty(0, np.int32),
    )


def point_errors_of(error: TrackerError) -> list[tuple[int, str]]:
    """(point index, reason) pairs for a rejection message; -1 for batch-wide errors."""
    out: list[tuple[int, str]] = []
    for fld, reason in error.field_violations:
        if fld.startswith("key_index["):
            out.append((int(fld[len("key_index[") : -1]), reason))
        else:
            out.append((-1, f"{fld}: {reason}"))
    return out or [(-1, error.message)]
