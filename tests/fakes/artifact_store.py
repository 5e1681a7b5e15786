"""``ArtifactStore`` in memory."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from tests.fakes.memory import InMemoryDatabase
from tracker_server.domain.artifacts import (
    STEP_NONE,
    Artifact,
    ArtifactFilter,
    NewArtifact,
    Verification,
    VerifyState,
)
from tracker_server.domain.errors import not_found
from tracker_server.domain.paging import KeysetPage, PositionError


def _key(step: int | None) -> int:
    return STEP_NONE if step is None else step


class FakeArtifactStore:
    """Artifact records in an :class:`InMemoryDatabase`; checks before it writes, so a
    failing call changes nothing (as a rolled-back transaction)."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db

    async def log_artifacts(self, run_id: uuid.UUID, artifacts: list[NewArtifact]) -> int:
        """See ``ArtifactStore.log_artifacts``."""
        self.db.require_runs([run_id])
        rows = self.db.artifacts.setdefault(run_id, {})
        created = 0
        for a in artifacts:
            key = (_key(a.step), a.uri)
            old = rows.get(key)
            new = Artifact(run_id, a.uri, a.kind, a.step, a.size_bytes, a.sha256,
                           dict(a.metadata), a.rank, a.created_at or self.db.now())
            if old is None:
                created += 1
            elif old.size_bytes == a.size_bytes and old.sha256 == a.sha256:
                new = replace(new, created_at=old.created_at, verify_state=old.verify_state,
                              verify_detail=old.verify_detail, verified_at=old.verified_at)
            else:
                new = replace(new, created_at=old.created_at)
            rows[key] = new
        return created

    async def list_artifacts(
        self, run_id: uuid.UUID, where: ArtifactFilter, limit: int, after: list[Any] | None
    ) -> KeysetPage[Artifact]:
        """See ``ArtifactStore.list_artifacts``."""
        self.db.require_runs([run_id])
        if after is not None and not (isinstance(after[0], int) and isinstance(after[1], str)):
            raise PositionError()
        rows = []
        for key in sorted(self.db.artifacts.get(run_id, {})):
            a = self.db.artifacts[run_id][key]
            if where.kinds and a.kind not in where.kinds:
                continue
            if where.min_step is not None and (a.step is None or a.step < where.min_step):
                continue
            if where.max_step is not None and (a.step is None or a.step > where.max_step):
                continue
            if after is not None and key <= (after[0], after[1]):
                continue
            rows.append((key, a))
        page = rows[:limit]
        more = len(rows) > limit
        return KeysetPage([a for _, a in page], list(page[-1][0]) if more else None)

    async def record_verification(self, run_id: uuid.UUID, results: list[Verification]
                                  ) -> None:
        """See ``ArtifactStore.record_verification``."""
        self.db.require_runs([run_id])
        rows = self.db.artifacts.get(run_id, {})
        for r in results:
            if (_key(r.step), r.uri) not in rows:
                raise not_found(f"run {run_id} has no artifact at step "
                                f"{'none' if r.step is None else r.step} with that uri")
        when = self.db.now()
        for r in results:
            key = (_key(r.step), r.uri)
            rows[key] = replace(rows[key], verify_state=VerifyState(r.state),
                                verify_detail=r.detail, verified_at=when)
