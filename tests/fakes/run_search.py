"""``RunSearch`` in memory: the parsed filter and order evaluated in Python (see
``run_filter_eval`` for where that differs from PostgreSQL)."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from tests.fakes.memory import InMemoryDatabase
from tests.fakes.run_filter_eval import Evaluator, cast_position, compare_keys, position_length
from tracker_server.domain.paging import KeysetPage
from tracker_server.domain.run_filter import Node, OrderKey
from tracker_server.domain.runs import Run


class FakeRunSearch:
    """Filtered, ordered keyset pages over the runs of an :class:`InMemoryDatabase`."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db
        self._eval = Evaluator(db)

    def position_length(self, order: list[OrderKey]) -> int:
        """See ``RunSearch.position_length``."""
        return position_length(order)

    async def search(
        self,
        experiment_ids: list[uuid.UUID],
        where: Node | None,
        order: list[OrderKey],
        limit: int,
        after: list[Any] | None,
    ) -> KeysetPage[Run]:
        """See ``RunSearch.search``."""
        self.db.require_experiments(experiment_ids)
        cursor = cast_position(order, after) if after is not None else None
        keyed = [
            (self._eval.sort_key(order, run), run)
            for run in (self.db.run(r) for r in self.db.runs)
            if run.experiment_id in experiment_ids and self._eval.matches(where, run)
        ]
        if cursor is not None:
            keyed = [(k, run) for k, run in keyed if compare_keys(k, cursor) > 0]
        keyed.sort(key=functools.cmp_to_key(lambda a, b: compare_keys(a[0], [v for v, _ in b[0]])))
        page = keyed[:limit]
        last = [v for v, _ in page[-1][0]] if len(keyed) > limit else None
        return KeysetPage([run for _, run in page], last)
