"""Artifacts of runs: record, list, store verification outcomes — the rules every front
door (gRPC servicer, HTTP API) shares. See ``domain.artifacts`` for what is refused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tracker_server.domain import paging
from tracker_server.domain.artifacts import (
    Artifact,
    ArtifactLimits,
    check_artifact,
    check_filter,
    check_verification,
)
from tracker_server.domain.errors import invalid
from tracker_server.domain.paging import KeysetPage, Page, fingerprint, keyset_page
from tracker_server.domain.ports import ArtifactStore
from tracker_server.domain.runs import parse_uuid


@dataclass(frozen=True)
class ArtifactIn:
    """One artifact as a front door decoded it (not yet checked)."""

    uri: str
    kind: int
    step: int | None = None
    size_bytes: int | None = None
    sha256: str = ""
    metadata: Mapping[str, str] | None = None
    rank: int = 0
    created_at: datetime | None = None


@dataclass(frozen=True)
class VerificationIn:
    """One verification outcome as a front door decoded it (not yet checked)."""

    uri: str
    step: int | None
    state: int
    detail: str = ""


class ArtifactService:
    """Artifact records of runs."""

    def __init__(self, store: ArtifactStore, limits: ArtifactLimits | None = None) -> None:
        self._store = store
        self.limits = limits or ArtifactLimits()

    async def log_artifacts(self, run_id: str, artifacts: Sequence[ArtifactIn]) -> int:
        """Record 1..``max_per_call`` artifacts idempotently on (run, uri, step);
        returns how many were new. One bad artifact refuses the whole call."""
        rid = parse_uuid(run_id, "run_id")
        lim = self.limits
        if not artifacts:
            raise invalid("artifacts must not be empty", [("artifacts", "empty")])
        if len(artifacts) > lim.max_per_call:
            raise invalid(f"more than {lim.max_per_call} artifacts in one call",
                          [("artifacts", "too many")])
        checked = [
            check_artifact(a.uri, a.kind, a.step, a.size_bytes, a.sha256, a.metadata or {},
                           a.rank, a.created_at, lim, f"artifacts[{i}]")
            for i, a in enumerate(artifacts)
        ]
        # One row per (uri, step) in a call: the last report of a pair wins, as a
        # later call would.
        unique = list({(a.uri, a.step): a for a in checked}.values())
        return await self._store.log_artifacts(rid, unique)

    async def list_artifacts(
        self,
        run_id: str,
        kinds: Sequence[int] = (),
        min_step: int | None = None,
        max_step: int | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Artifact]:
        """A page of the run's artifacts by step (none first), then uri."""
        rid = parse_uuid(run_id, "run_id")
        where = check_filter(list(kinds), min_step, max_step)
        limit = paging.page_size(page_size)
        query = fingerprint("artifacts", str(rid), [int(k) for k in where.kinds],
                            where.min_step, where.max_step)

        async def fetch(position: list[Any] | None) -> KeysetPage[Artifact]:
            return await self._store.list_artifacts(rid, where, limit, position)

        return await keyset_page(fetch, query, 2, page_token)

    async def record_verification(self, run_id: str, results: Sequence[VerificationIn]
                                  ) -> None:
        """Store 1..``max_verifications_per_call`` outcomes of a check."""
        rid = parse_uuid(run_id, "run_id")
        lim = self.limits
        if not results:
            raise invalid("results must not be empty", [("results", "empty")])
        if len(results) > lim.max_verifications_per_call:
            raise invalid(f"more than {lim.max_verifications_per_call} results in one call",
                          [("results", "too many")])
        checked = [check_verification(r.uri, r.step, r.state, r.detail, lim, f"results[{i}]")
                   for i, r in enumerate(results)]
        await self._store.record_verification(rid, checked)
