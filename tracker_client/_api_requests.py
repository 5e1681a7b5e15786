"""Requests of the read API and the connection settings both flavours share."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from tracker_client import _env
from tracker_client._api_types import Experiment, Goal, SummaryOn
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import query_pb2 as q

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 16 << 20),
    ("grpc.lb_policy_name", "round_robin"),
]
PAGE_SIZE = 500
SEARCH_EXPERIMENTS_MAX = 100
"""Experiments one SearchRuns call may name."""
SUMMARY_RUNS_MAX = 1000
"""Runs one GetLatestMetrics call may name."""
ON = {"last": q.SUMMARY_FIELD_LAST, "min": q.SUMMARY_FIELD_MIN, "max": q.SUMMARY_FIELD_MAX}
GOAL = {"min": q.GOAL_MINIMIZE, "max": q.GOAL_MAXIMIZE}
LIVE_STATUSES = [ex.EXPERIMENT_STATUS_CREATED, ex.EXPERIMENT_STATUS_ACTIVE]


@dataclass(frozen=True)
class Connection:
    """Where and how to connect: the same settings and environment as ``init()``."""

    address: str
    metadata: tuple[tuple[str, str], ...]
    tls: _env.TlsConfig | None
    timeout_s: float

    @classmethod
    def resolve(cls, server: str | None, api_key: str | None, tls: _env.TlsOption,
                timeout_s: float) -> Connection:
        """``TRACKER_SERVER``, ``TRACKER_API_KEY`` and the TLS variables fill the gaps."""
        key = _env.api_key(api_key)
        return cls(_env.server_address(server),
                   (("authorization", f"Bearer {key}"),) if key else (),
                   _env.tls_config(tls), timeout_s)


def is_uuid(text: str) -> bool:
    """Whether ``text`` is an id rather than a name."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def list_experiments(name_prefix: str, owner: str, include_archived: bool,
                     page_size: int = PAGE_SIZE) -> ex.ListExperimentsRequest:
    """The first page request of a listing."""
    statuses = LIVE_STATUSES + ([ex.EXPERIMENT_STATUS_ARCHIVED] if include_archived else [])
    return ex.ListExperimentsRequest(name_prefix=name_prefix, owner=owner, statuses=statuses,
                                     page_size=page_size)


def search_runs(experiment_ids: Sequence[str], filter: str, order_by: str | Sequence[str] | None,
                page_size: int) -> ex.SearchRunsRequest:
    """The first page request of a run search."""
    if not experiment_ids:
        raise ValueError("runs() needs at least one experiment")
    if len(experiment_ids) > SEARCH_EXPERIMENTS_MAX:
        raise ValueError(f"runs() takes at most {SEARCH_EXPERIMENTS_MAX} experiments")
    order = [order_by] if isinstance(order_by, str) else list(order_by or [])
    return ex.SearchRunsRequest(experiment_ids=list(experiment_ids), filter=filter,
                                order_by=order, page_size=page_size)


def best_runs(experiment_ids: Sequence[str], metric: str, mode: Goal | None, on: SummaryOn,
              limit: int, filter: str) -> q.GetBestRunsRequest:
    """A ranking request; ``mode`` None leaves the goal to what the runs defined."""
    if mode is not None and mode not in GOAL:
        raise ValueError(f"mode must be 'min', 'max' or None, got {mode!r}")
    if on not in ON:
        raise ValueError(f"on must be one of {sorted(ON)}, got {on!r}")
    return q.GetBestRunsRequest(experiment_ids=list(experiment_ids), key=metric,
                                goal=GOAL[mode] if mode else q.GOAL_UNSPECIFIED, on=ON[on],
                                limit=limit, filter=filter)


def experiment_of_name(name: str, found: Sequence[ex.Experiment]) -> Experiment | None:
    """The exact-name match among a prefix listing (newest first), if any."""
    for e in found:
        if e.name == name:
            return Experiment.from_proto(e)
    return None
