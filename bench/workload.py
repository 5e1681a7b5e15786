"""The benchmark workload: what a training job logs, as numpy columns.

Every stream (one writer, one run) logs ``keys`` scalar metrics per step, steps
0, 1, 2, ... in order, float values with a trend and noise, and wall times. A batch
holds whole steps: ``steps_per_batch = max(1, batch_points // keys)``. The points of
a stream are a pure function of (seed, stream index), so the ceiling and the peers
write exactly the points the end-to-end run sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# Names a real training loop logs first; more keys get generic names.
_COMMON_KEYS = (
    "train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/acc",
    "eval/loss", "eval/acc", "perf/gpu_util", "perf/gpu_mem_gb", "perf/step_time_s",
)


@dataclass(frozen=True)
class Workload:
    """Shape of the points one stream sends."""

    keys: int = 20
    """Metrics logged per step."""
    batch_points: int = 2000
    """Points per batch (rounded down to whole steps, at least one step)."""
    seed: int = 0
    """Base seed of the values; stream i uses seed + i."""

    @property
    def steps_per_batch(self) -> int:
        """Whole steps in one batch."""
        return max(1, self.batch_points // self.keys)

    @property
    def points_per_batch(self) -> int:
        """Points in one full batch."""
        return self.steps_per_batch * self.keys

    def key_names(self) -> list[str]:
        """The metric names, stable for a given ``keys``."""
        names = list(_COMMON_KEYS[: self.keys])
        names += [f"bench/metric_{i:04d}" for i in range(len(names), self.keys)]
        return names

    def steps_for(self, points: int) -> int:
        """Whole steps needed to send about ``points`` points (at least 1)."""
        return max(1, points // self.keys)

    def as_dict(self) -> dict[str, Any]:
        """Parameters for the JSON report."""
        return asdict(self)


@dataclass
class Columns:
    """One batch as columns (the wire's MetricColumns, as numpy)."""

    key_index: npt.NDArray[np.uint32]
    steps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    wall_ns: npt.NDArray[np.int64]

    @property
    def n(self) -> int:
        """Points in the batch."""
        return int(self.steps.shape[0])


class StreamPoints:
    """Deterministic points of one stream, batch by batch."""

    def __init__(self, workload: Workload, stream: int) -> None:
        self.workload = workload
        self.stream = stream
        self._rng = np.random.default_rng(workload.seed + stream)
        k = workload.keys
        # Per-key scale and offset: loss-like decays, rate-like constants, noise.
        self._scale = self._rng.uniform(0.5, 2.0, k)
        self._offset = self._rng.uniform(-1.0, 1.0, k)
        spb = workload.steps_per_batch
        self._key_index = np.tile(np.arange(k, dtype=np.uint32), spb)
        self._step_offsets = np.repeat(np.arange(spb, dtype=np.int64), k)

    def batch(self, first_step: int, nsteps: int, wall_ns: int | None = None) -> Columns:
        """Points of steps ``first_step .. first_step + nsteps - 1`` (all keys each)."""
        k = self.workload.keys
        n = nsteps * k
        if nsteps == self.workload.steps_per_batch:
            key_index, offsets = self._key_index, self._step_offsets
        else:
            key_index = np.tile(np.arange(k, dtype=np.uint32), nsteps)
            offsets = np.repeat(np.arange(nsteps, dtype=np.int64), k)
        steps = offsets + first_step
        trend = self._scale[key_index] / np.sqrt(1.0 + steps / 1000.0) + self._offset[key_index]
        values = trend + self._rng.standard_normal(n) * 0.01
        now = time.time_ns() if wall_ns is None else wall_ns
        # A step takes ~1 ms of "training": wall time grows with the step.
        wall = now + offsets * 1_000_000
        return Columns(key_index, steps, values, wall)

    def batches(self, total_steps: int) -> Iterator[Columns]:
        """All batches of a stream of ``total_steps`` steps."""
        spb = self.workload.steps_per_batch
        for first in range(0, total_steps, spb):
            yield self.batch(first, min(spb, total_steps - first))
