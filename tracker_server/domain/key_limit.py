"""The per-run limit on distinct metric keys.

A run that logs an unbounded number of names (a key per sample, a formatted float in
the name) would grow its summaries, key listings and dashboards without bound. Each
server knows, per run, the names the database held when it first saw the run plus the
names it accepted since; a batch that would take the run past ``max_keys`` is refused
whole with RESOURCE_EXHAUSTED. Replicas check independently, so together they may
overshoot by what they accept at the same moment.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Protocol

from tracker_server.domain.errors import Code, TrackerError

MAX_CACHED_NAMES = 1_000_000
"""Names remembered over all runs; the least recently used runs are forgotten beyond."""


class RunKeyNames(Protocol):
    """Where the names a run already has come from."""

    async def run_key_names(self, run_id: uuid.UUID) -> set[str]:
        """Metric names the run has stored points of."""
        ...


class KeyLimit:
    """Checks batches against the per-run key limit."""

    def __init__(self, store: RunKeyNames, max_keys: int) -> None:
        self._store = store
        self.max_keys = max_keys
        self._runs: OrderedDict[uuid.UUID, set[str]] = OrderedDict()
        self._cached = 0

    async def check(self, run_id: uuid.UUID, names: list[str], seq: int) -> None:
        """Accept ``names`` for ``run_id`` or raise RESOURCE_EXHAUSTED naming the limit."""
        known = self._runs.get(run_id)
        if known is None:
            loaded = await self._store.run_key_names(run_id)
            known = self._runs.get(run_id)  # another call may have loaded it meanwhile
            if known is None:
                known = self._runs[run_id] = loaded
                self._cached += len(loaded)
        self._runs.move_to_end(run_id)
        new = [n for n in dict.fromkeys(names) if n not in known]
        if not new:
            return
        if len(known) + len(new) > self.max_keys:
            raise TrackerError(
                Code.RESOURCE_EXHAUSTED,
                f"batch {seq}: run {run_id} would have {len(known) + len(new)} metric keys, "
                f"more than the limit of {self.max_keys} (TRACKER_MAX_KEYS_PER_RUN)",
            )
        known.update(new)
        self._cached += len(new)
        while self._cached > MAX_CACHED_NAMES and len(self._runs) > 1:
            _, dropped = self._runs.popitem(last=False)
            self._cached -= len(dropped)
