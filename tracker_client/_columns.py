"""Column buffers: turn logged records into packed ``MetricColumns`` payloads.

``log()`` only appends a small tuple to a deque; the batcher thread feeds those tuples
to a :class:`ColumnBuilder` here, off the training thread, and cuts serialized batches.
The builder works on whole lists and numpy arrays (C loops) rather than per-point
Python code, and serializes with numpy (``_packed``) rather than through protobuf's
repeated fields, which keeps the batcher's GIL share small: the training thread's
``log()`` latency depends on that. Runs of ``log()`` records of one key tuple arrive
from the tail as blocks (``add_block``) and cost no Python per record.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tracker_client._packed import encode_columns, varint
from tracker_proto.v1 import ingest_pb2

MAX_KEY_BYTES = 250
"""Longest metric name the server accepts, in UTF-8 bytes."""


def valid_key(name: object) -> bool:
    """Whether ``name`` is a metric name the server accepts."""
    if not isinstance(name, str) or "\x00" in name:
        return False
    size = len(name.encode("utf-8"))
    return 0 < size <= MAX_KEY_BYTES


def encode_batch_request(seq: int, payload: bytes) -> bytes:
    """Serialized ``StreamRequest{batch: Batch{seq, columns}}`` from a stored payload.

    Spooled payloads are already-serialized ``MetricColumns``; wrapping them by hand
    (two length-delimited fields) avoids parsing and re-serializing every batch on
    each (re)send. Equal to ``StreamRequest(batch=Batch(seq=..., columns=...))``.
    """
    batch = b"\x08" + varint(seq) + b"\x12" + varint(len(payload)) + payload
    return b"\x12" + varint(len(batch)) + batch


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
        self._blocks: list[tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64],
                                 npt.NDArray[np.float64], npt.NDArray[np.int64]]] = []
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

    def add_block(
        self, keys: tuple[str, ...], steps: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64], wall_ns: npt.NDArray[np.int64],
    ) -> None:
        """Add consecutive ``log()`` records of one key tuple: ``steps`` and ``wall_ns``
        one per record, ``values`` one row per record (a column per key)."""
        try:
            ids = self._tuple_ids[keys]
        except KeyError:
            ids = self._tuple_ids[keys] = self._ids(keys)
        if ids is None:  # rare: invalid names, filtered record by record
            for i in range(steps.shape[0]):
                self.add_scalars(keys, values[i].tolist(), int(steps[i]), int(wall_ns[i]))
            return
        if self.first_at is None:
            self.first_at = time.monotonic()
        self._lists_to_block()  # the batch keeps the order records were logged in
        n = len(ids)
        self._blocks.append((np.tile(np.array(ids, dtype=np.uint32), steps.shape[0]),
                             np.repeat(steps, n), values.reshape(-1), np.repeat(wall_ns, n)))
        self.points += n * int(steps.shape[0])

    def _lists_to_block(self) -> None:
        if self._k:
            self._blocks.append((np.array(self._k, dtype=np.uint32),
                                 np.array(self._s, dtype=np.int64),
                                 np.array(self._v, dtype=np.float64),
                                 np.array(self._t, dtype=np.int64)))
            self._k, self._s, self._v, self._t = [], [], [], []

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
        self._lists_to_block()
        parts = self._blocks + [
            (np.full(steps.shape[0], idx, dtype=np.uint32), steps, values,
             np.full(steps.shape[0], wall, dtype=np.int64))
            for idx, steps, values, wall in self._arrays]
        def column(c: int, dtype: Any) -> Any:
            if len(parts) == 1:
                return parts[0][c]
            return np.concatenate([p[c] for p in parts]) if parts else np.empty(0, dtype)

        ki, st, va, wa = (column(c, d) for c, d in
                          enumerate((np.uint32, np.int64, np.float64, np.int64)))
        payload = encode_columns(list(self._key_ids), ki, st, va, wa)
        points = self.points
        self._reset()
        return payload, points
