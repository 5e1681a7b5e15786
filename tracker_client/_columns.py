"""Column buffers: turn logged records into packed MetricColumns batches.

``log()`` only appends a record to a deque (cheap, never blocks); the sender thread
drains records into per-batch columns here, off the training thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tracker_client.pb import ingest_pb2, metrics_pb2


@dataclass
class Batch:
    """A numbered batch ready to send (and to resend until acknowledged)."""

    seq: int
    columns: metrics_pb2.MetricColumns
    points: int
    size: int = 0
    """Serialized size of the columns, bytes."""
    created: float = field(default_factory=time.monotonic)

    def request(self) -> ingest_pb2.StreamRequest:
        """The stream message carrying this batch."""
        return ingest_pb2.StreamRequest(batch=ingest_pb2.Batch(seq=self.seq, columns=self.columns))


class ColumnBuilder:
    """Accumulates points for the next batch."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._key_ids: dict[str, int] = {}
        self._scalar_k: list[int] = []
        self._scalar_s: list[int] = []
        self._scalar_v: list[float] = []
        self._scalar_t: list[int] = []
        self._arrays: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.points = 0
        self.first_at: float | None = None

    def _key(self, name: str) -> int:
        idx = self._key_ids.get(name)
        if idx is None:
            idx = self._key_ids[name] = len(self._key_ids)
        return idx

    def add_dict(self, metrics: Mapping[str, Any], step: int, wall_ns: int) -> None:
        """Add one log() record."""
        if self.first_at is None:
            self.first_at = time.monotonic()
        for name, value in metrics.items():
            self._scalar_k.append(self._key(name))
            self._scalar_s.append(step)
            self._scalar_v.append(float(value))
            self._scalar_t.append(wall_ns)
        self.points += len(metrics)

    def add_series(
        self, name: str, steps: np.ndarray, values: np.ndarray, wall_ns: np.ndarray
    ) -> None:
        """Add one log_series() record (whole arrays)."""
        if self.first_at is None:
            self.first_at = time.monotonic()
        self._arrays.append((self._key(name), steps, values, wall_ns))
        self.points += int(steps.shape[0])

    def build(self) -> metrics_pb2.MetricColumns:
        """The packed columns of everything added; resets the builder."""
        cols = metrics_pb2.MetricColumns(keys=list(self._key_ids))
        if self._scalar_k:
            cols.key_index.extend(self._scalar_k)
            cols.steps.extend(self._scalar_s)
            cols.values.extend(self._scalar_v)
            cols.wall_time_ns.extend(self._scalar_t)
        for idx, steps, values, wall in self._arrays:
            # tolist() is the fastest way into a repeated field (C loop in numpy).
            cols.key_index.extend([idx] * int(steps.shape[0]))
            cols.steps.extend(steps.tolist())
            cols.values.extend(values.tolist())
            cols.wall_time_ns.extend(wall.tolist())
        self._reset()
        return cols
