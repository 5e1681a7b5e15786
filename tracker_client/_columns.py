"""Column buffers: turn logged records into packed ``MetricColumns`` payloads.

``log()`` only appends a small tuple to a deque; the batcher thread feeds those tuples
to a :class:`ColumnBuilder` here, off the training thread, and cuts serialized batches.
The builder works on whole lists and numpy arrays (C loops) rather than per-point
Python code, which keeps the batcher's GIL share small: the training thread's
``log()`` latency depends on that.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tracker_proto.v1 import ingest_pb2, metrics_pb2

MAX_KEY_BYTES = 250
"""Longest metric name the server accepts, in UTF-8 bytes."""


def valid_key(name: object) -> bool:
    """Whether ``name`` is a metric name the server accepts."""
    if not isinstance(name, str) or "\x00" in name:
        return False
    size = len(name.encode("utf-8"))
    return 0 < size <= MAX_KEY_BYTES


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_batch_request(seq: int, payload: bytes) -> bytes:
    """Serialized ``StreamRequest{batch: Batch{seq, columns}}`` from a stored payload.

    Spooled payloads are already-serialized ``MetricColumns``; wrapping them by hand
    (two length-delimited fields) avoids parsing and re-serializing every batch on
    each (re)send. Equal to ``StreamRequest(batch=Batch(seq=..., columns=...))``.
    """
    batch = b"\x08" + _varint(seq) + b"\x12" + _varint(len(payload)) + payload
    return b"\x12" + _varint(len(batch)) + batch


def encode_open_request(open_msg: ingest_pb2.Open) -> bytes:
    """Serialized ``StreamRequest{open}``."""
    return ingest_pb2.StreamRequest(open=open_msg).SerializeToString()


class ColumnBuilder:
    """Accumulates points for the next batch."""

    def __init__(self) -> None:
        self._tuple_ids: dict[tuple[str, ...], list[int] | None] = {}
        self.invalid_points = 0
        """Points dropped because their metric name is not acceptable (cumulative)."""
        self.invalid_keys: list[str] = []
        self._reset()

    def _reset(self) -> None:
        self._key_ids: dict[str, int] = {}
        self._tuple_ids.clear()
        self._k: list[int] = []
        self._s: list[int] = []
        self._v: list[float] = []
        self._t: list[int] = []
        self._arrays: list[tuple[int, npt.NDArray[np.int64], npt.NDArray[np.float64], int]] = []
        self.points = 0
        self.first_at: float | None = None

    def _key(self, name: str) -> int:
        idx = self._key_ids.get(name)
        if idx is None:
            idx = self._key_ids[name] = len(self._key_ids)
        return idx

    def _ids(self, keys: tuple[str, ...]) -> list[int] | None:
        if all(valid_key(k) for k in keys):
            return [self._key(k) for k in keys]
        return None

    def add_scalars(
        self, keys: tuple[str, ...], values: Sequence[float], step: int, wall_ns: int
    ) -> None:
        """Add one ``log()`` record: parallel key names and float values at ``step``."""
        if self.first_at is None:
            self.first_at = time.monotonic()
        try:
            ids = self._tuple_ids[keys]
        except KeyError:
            ids = self._tuple_ids[keys] = self._ids(keys)
        if ids is None:  # rare: some names are invalid, filter point by point
            good = [(k, v) for k, v in zip(keys, values, strict=True) if valid_key(k)]
            self._note_invalid([k for k in keys if not valid_key(k)])
            if not good:
                return
            ids = [self._key(k) for k, _ in good]
            values = [v for _, v in good]
        n = len(ids)
        self._k.extend(ids)
        self._v.extend(values)
        self._s.extend([step] * n)
        self._t.extend([wall_ns] * n)
        self.points += n

    def add_series(
        self, name: str, steps: npt.NDArray[np.int64], values: npt.NDArray[np.float64],
        wall_ns: int,
    ) -> None:
        """Add one ``log_series()`` slice (whole arrays)."""
        if not valid_key(name):
            self._note_invalid([name])
            return
        if self.first_at is None:
            self.first_at = time.monotonic()
        self._arrays.append((self._key(name), steps, values, wall_ns))
        self.points += int(steps.shape[0])

    def _note_invalid(self, names: list[str]) -> None:
        self.invalid_points += len(names)
        if len(self.invalid_keys) < 10:
            self.invalid_keys.extend(repr(n)[:80] for n in names[:10])

    def build(self) -> tuple[bytes, int]:
        """(serialized MetricColumns, points) of everything added; resets the builder."""
        cols = metrics_pb2.MetricColumns(keys=list(self._key_ids))
        if self._k:
            cols.key_index.extend(self._k)
            cols.steps.extend(self._s)
            cols.values.extend(self._v)
            cols.wall_time_ns.extend(self._t)
        for idx, steps, values, wall in self._arrays:
            n = int(steps.shape[0])
            # tolist() is the fastest way into a repeated field (one C loop each).
            cols.key_index.extend([idx] * n)
            cols.steps.extend(steps.tolist())
            cols.values.extend(values.tolist())
            cols.wall_time_ns.extend([wall] * n)
        points = self.points
        self._reset()
        return cols.SerializeToString(), points
