"""``GET /metrics``: the server's metrics for Prometheus (``http/prometheus.py``).

Open by default, like ``/health``: the metrics carry counts, durations, RPC names and
route templates, never experiment, run, metric or key names. With
``TRACKER_METRICS_REQUIRE_KEY=1`` (and keys required by the server) a scrape sends any
active key, whatever its role (Prometheus: ``authorization: {credentials_file: ...}``).
Not in the OpenAPI schema: it is not part of the REST API the dashboard is generated from.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from tracker_server.domain.access import unauthenticated
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.http.context import context
from tracker_server.http.security import api_key

router = APIRouter(tags=["operations"])

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
"""The text format every Prometheus reads (prometheus_client's newest name for it,
``version=1.0.0``, is unknown to older servers)."""


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of every worker of this server."""
    ctx = context(request)
    if ctx.metrics is None:
        raise TrackerError(Code.NOT_FOUND, "metrics are off (TRACKER_METRICS=off)")
    if ctx.metrics_require_key and ctx.auth.enabled:
        key = api_key(request)
        if key is None:
            raise unauthenticated("GET /metrics needs an API key "
                                  "(TRACKER_METRICS_REQUIRE_KEY): send "
                                  "'Authorization: Bearer trk_...'")
        await ctx.auth.identify(key)  # any active key: scraping needs no particular role
    return Response(await ctx.metrics.scrape(), media_type=TEXT_FORMAT,
                    headers={"Cache-Control": "no-store"})
