"""Runs: create, read, search, finish, params and tags — the rules every front door
(gRPC servicer, HTTP API) shares.

Inputs are plain Python: ids as strings (INVALID_ARGUMENT naming the field when not a
UUID), statuses as domain enums or their wire numbers, optional values as None, 0 for
"default" sizes. Outputs are domain records.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tracker_server.domain import paging
from tracker_server.domain.errors import invalid
from tracker_server.domain.paging import KeysetPage, Page, fingerprint, keyset_page
from tracker_server.domain.ports import RunSearch, RunStore
from tracker_server.domain.run_filter import parse_filter, parse_order_by
from tracker_server.domain.runs import (
    NewRun,
    Run,
    check_finish_status,
    check_id_list,
    check_kv,
    check_metadata,
    check_name,
    parse_uuid,
)

MAX_SEARCH_EXPERIMENTS = 100


async def search_page(
    search: RunSearch,
    experiment_ids: list[uuid.UUID],
    filter_text: str,
    order_by: list[str],
    limit: int,
    page_token: str,
    token_field: str = "page_token",
) -> Page[Run]:
    """One page of runs of ``experiment_ids`` (already checked) matching the filter
    language ``filter_text`` in ``order_by`` order. The token is bound to this query:
    a token of another filter, order or experiment set is refused, naming
    ``token_field``."""
    where = parse_filter(filter_text)
    order = parse_order_by(order_by)
    query = fingerprint("runs", sorted(str(e) for e in experiment_ids), filter_text, order_by)

    async def fetch(position: list[Any] | None) -> KeysetPage[Run]:
        return await search.search(experiment_ids, where, order, limit, position)

    return await keyset_page(fetch, query, search.position_length(order), page_token,
                             token_field)


class RunService:
    """Runs and their params and tags."""

    def __init__(self, runs: RunStore, search: RunSearch) -> None:
        self._runs = runs
        self._search = search

    async def create_run(
        self,
        experiment_id: str,
        *,
        name: str = "",
        run_key: str = "",
        seed: int | None = None,
        slurm_job_id: str = "",
        metadata: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        resume: bool = False,
        resume_token: str = "",
    ) -> tuple[Run, bool]:
        """A new run, or the existing one with this ``run_key`` (attempt + 1 when
        ``resume``; a repeated ``resume_token`` does not start another attempt).
        Returns (run, created)."""
        new = NewRun(
            experiment_id=parse_uuid(experiment_id, "experiment_id"),
            name=check_name(name, "name", required=False),
            run_key=check_name(run_key, "run_key", required=False),
            seed=seed,
            slurm_job_id=check_name(slurm_job_id, "slurm_job_id", required=False),
            metadata=check_metadata(dict(metadata or {})),
            params=check_kv(dict(params or {}), "params"),
            tags=check_kv(dict(tags or {}), "tags"),
            resume=resume,
            resume_token=check_name(resume_token, "resume_token", required=False),
        )
        return await self._runs.create_run(new)

    async def get_run(self, run_id: str) -> Run:
        """One run with params and tags."""
        return await self._runs.get_run(parse_uuid(run_id, "run_id"))

    async def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_text: str = "",
        order_by: Sequence[str] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Run]:
        """Runs of 1..100 experiments matching ``filter_text`` (the run filter
        language), in ``order_by`` order (at most 3 ``field [asc|desc]`` entries;
        default newest first); ``page_size`` 0 means the default."""
        ids = check_id_list(list(experiment_ids), "experiment_ids", MAX_SEARCH_EXPERIMENTS)
        return await search_page(self._search, ids, filter_text, list(order_by),
                                 paging.page_size(page_size), page_token)

    async def finish_run(self, run_id: str, status: int, ended_at: datetime | None = None
                         ) -> Run:
        """End a running run as FINISHED, FAILED or KILLED (``ended_at`` None: now);
        repeating the same terminal status is a no-op, any other change of a finished
        run FAILED_PRECONDITION."""
        rid = parse_uuid(run_id, "run_id")
        return await self._runs.finish_run(rid, check_finish_status(status), ended_at)

    async def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        """Add params (immutable: a key already holding another value is
        ALREADY_EXISTS, and then none is added)."""
        rid = parse_uuid(run_id, "run_id")
        checked = check_kv(dict(params), "params")
        if not checked:
            raise invalid("params must not be empty", [("params", "empty")])
        await self._runs.log_params(rid, checked)

    async def set_tags(
        self, run_id: str, tags: Mapping[str, str], delete_keys: Sequence[str] = ()
    ) -> dict[str, str]:
        """Delete ``delete_keys``, then set ``tags``; returns every tag of the run."""
        rid = parse_uuid(run_id, "run_id")
        checked = check_kv(dict(tags), "tags")
        delete = list(check_kv({k: "" for k in delete_keys}, "delete_keys"))
        return await self._runs.set_tags(rid, checked, delete)
