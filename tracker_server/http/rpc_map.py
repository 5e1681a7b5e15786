"""Each HTTP route and the gRPC method it is equivalent to.

The route's role, rate limit and telemetry come from that method, so there is one role
table (``domain/access.py`` METHOD_ROLES) for both front doors. A route missing here
would need ADMIN (the table's rule for unlisted methods); a test walks every route of
the app and fails on one without an entry.

``fields`` renames the domain's field names (shared with gRPC) to the REST names in
error responses: ``downsampling`` is the ``method`` query parameter, and so on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

API_PREFIX = "/api/v1"

_EXP = "/tracker.v1.ExperimentService/"
_INGEST = "/tracker.v1.IngestService/"
_QUERY = "/tracker.v1.MetricsQueryService/"
_ARTIFACTS = "/tracker.v1.ArtifactService/"


@dataclass(frozen=True)
class Rpc:
    """What a route is, in gRPC terms; ``method`` None: open (no key, no rate limit)."""

    method: str | None
    fields: Mapping[str, str] = field(default_factory=dict)
    limited: bool = True
    """Whether a request costs a token of the unary rate limit."""


OPEN = Rpc(None, limited=False)
"""Health probes, the dashboard's files and the API description."""
SESSION = Rpc(None)
"""The session endpoints check the key themselves (any role may log in)."""

_P = API_PREFIX
ROUTE_RPCS: Mapping[tuple[str, str], Rpc] = MappingProxyType({
    ("GET", f"{_P}/experiments"): Rpc(_EXP + "ListExperiments", {"statuses": "status"}),
    ("POST", f"{_P}/experiments"): Rpc(_EXP + "CreateExperiment"),
    ("GET", f"{_P}/experiments/{{experiment_id}}"): Rpc(_EXP + "GetExperiment"),
    ("PATCH", f"{_P}/experiments/{{experiment_id}}"): Rpc(_EXP + "UpdateExperiment"),
    ("GET", f"{_P}/experiments/{{experiment_id}}/best"): Rpc(
        _QUERY + "GetBestRuns", {"key": "metric", "goal": "mode", "experiment_ids":
                                 "experiment_id"}),
    ("GET", f"{_P}/runs"): Rpc(_EXP + "SearchRuns", {"experiment_ids": "experiment_id"}),
    ("POST", f"{_P}/runs"): Rpc(_EXP + "CreateRun"),
    ("GET", f"{_P}/runs/{{run_id}}"): Rpc(_EXP + "GetRun"),
    ("POST", f"{_P}/runs/{{run_id}}/finish"): Rpc(_EXP + "FinishRun"),
    ("POST", f"{_P}/runs/{{run_id}}/params"): Rpc(_EXP + "LogParams"),
    ("PATCH", f"{_P}/runs/{{run_id}}/tags"): Rpc(_EXP + "SetTags", {"tags": "set",
                                                                   "delete_keys": "delete"}),
    ("POST", f"{_P}/runs/{{run_id}}/metrics"): Rpc(_INGEST + "LogMetrics"),
    ("GET", f"{_P}/runs/{{run_id}}/metrics"): Rpc(_QUERY + "ListMetricKeys"),
    ("GET", f"{_P}/runs/{{run_id}}/metrics/{{key:path}}"): Rpc(
        _QUERY + "GetMetricSeries", {"run_ids": "run_id", "keys": "key", "start_step": "start",
                                     "end_step": "end", "downsampling": "method",
                                     "aggregation": "aggregate"}),
    ("GET", f"{_P}/runs/{{run_id}}/artifacts"): Rpc(_ARTIFACTS + "ListArtifacts",
                                                    {"kinds": "kind"}),
    ("POST", f"{_P}/runs/{{run_id}}/artifacts"): Rpc(_ARTIFACTS + "LogArtifacts"),
    ("GET", f"{_P}/compare"): Rpc(_QUERY + "CompareRuns", {"run_ids": "run_id"}),
    ("POST", f"{_P}/session"): SESSION,
    ("GET", f"{_P}/session"): SESSION,
    ("DELETE", f"{_P}/session"): SESSION,
    ("GET", "/health"): OPEN,
    ("GET", "/health/ready"): OPEN,
    # Checks TRACKER_METRICS_REQUIRE_KEY itself (any role may scrape); not rate-limited:
    # Prometheus scrapes at its own pace and a refused scrape is a gap in every graph.
    ("GET", "/metrics"): OPEN,
    ("GET", "/api/openapi.json"): OPEN,
    ("GET", "/api/docs"): OPEN,
    ("GET", "/api/docs.css"): OPEN,
})

UNMAPPED = Rpc("")
"""What an unlisted route is: a method no table lists, hence ADMIN only."""


def rpc_of(verb: str, path: str) -> Rpc:
    """The entry of a route (``path`` is its template, e.g. ``/api/v1/runs/{run_id}``)."""
    return ROUTE_RPCS.get((verb, path), UNMAPPED)


def rest_field(fields: Mapping[str, str], name: str) -> str:
    """A domain field name (``keys``, ``start_step``, ``params[lr]``) in REST terms."""
    cut = min((i for i in (name.find("["), name.find(".")) if i >= 0), default=len(name))
    head = name[:cut]
    return fields.get(head, head) + name[cut:]
