"""Experiments: create, read (with a page of runs), list, update — the rules every
front door shares (see ``run_service`` for the input conventions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tracker_server.domain import paging
from tracker_server.domain.paging import KeysetPage, Page, fingerprint, keyset_page
from tracker_server.domain.ports import ExperimentStore, RunSearch
from tracker_server.domain.run_service import search_page
from tracker_server.domain.runs import (
    Experiment,
    ExperimentStatus,
    Run,
    check_experiment_status,
    check_name,
    check_text,
    parse_uuid,
)

MAX_DESCRIPTION_CHARS = 10_000
DEFAULT_STATUSES = (ExperimentStatus.CREATED, ExperimentStatus.ACTIVE)
"""What ``list_experiments`` shows when no status is asked for (archived ones hidden)."""


def _description(text: str) -> str:
    """A description, cut to MAX_DESCRIPTION_CHARS; INVALID_ARGUMENT with NUL (which
    PostgreSQL text cannot hold)."""
    return check_text(text[:MAX_DESCRIPTION_CHARS], "description")


@dataclass(frozen=True)
class ExperimentRuns:
    """An experiment and one page of its runs (newest first)."""

    experiment: Experiment
    runs: Page[Run]


class ExperimentService:
    """Experiments."""

    def __init__(self, experiments: ExperimentStore, search: RunSearch) -> None:
        self._experiments = experiments
        self._search = search

    async def create_experiment(
        self, name: str, owner: str = "", description: str = "", get_if_exists: bool = False
    ) -> tuple[Experiment, bool]:
        """A new experiment; ALREADY_EXISTS when ``owner`` has one of this name, unless
        ``get_if_exists`` (then the existing one). Returns (experiment, created)."""
        return await self._experiments.create_experiment(
            check_name(name, "name"),
            check_name(owner, "owner", required=False),
            _description(description),
            get_if_exists,
        )

    async def get_experiment(
        self, experiment_id: str, runs_page_size: int = 0, runs_page_token: str = ""
    ) -> ExperimentRuns:
        """An experiment and a page of its runs."""
        eid = parse_uuid(experiment_id, "experiment_id")
        limit = paging.page_size(runs_page_size, "runs_page_size")
        experiment = await self._experiments.get_experiment(eid)
        runs = await search_page(self._search, [eid], "", [], limit, runs_page_token,
                                 "runs_page_token")
        return ExperimentRuns(experiment, runs)

    async def list_experiments(
        self,
        owner: str | None = None,
        statuses: Sequence[int] = (),
        name_prefix: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Experiment]:
        """Experiments newest first: of ``owner`` (None or "": anyone), with one of
        ``statuses`` (empty: CREATED and ACTIVE), a name starting with
        ``name_prefix``, created in [``created_after``, ``created_before``)."""
        limit = paging.page_size(page_size)
        check_text(owner or "", "owner")
        check_text(name_prefix or "", "name_prefix")
        wanted = sorted({check_experiment_status(s) for s in statuses})
        query = fingerprint(
            "experiments", owner or "", [int(s) for s in wanted], name_prefix or "",
            str(created_after), str(created_before),
        )

        async def fetch(position: list[Any] | None) -> KeysetPage[Experiment]:
            return await self._experiments.list_experiments(
                owner=owner or None,
                statuses=wanted or list(DEFAULT_STATUSES),
                name_prefix=name_prefix or None,
                created_after=created_after,
                created_before=created_before,
                limit=limit,
                after=position,
            )

        return await keyset_page(fetch, query, 2, page_token)

    async def update_experiment(
        self, experiment_id: str, status: int | None = None, description: str | None = None
    ) -> Experiment:
        """Set the status and/or the description (None leaves it as it is)."""
        eid = parse_uuid(experiment_id, "experiment_id")
        checked = check_experiment_status(status) if status is not None else None
        text = _description(description) if description is not None else None
        return await self._experiments.update_experiment(eid, checked, text)
