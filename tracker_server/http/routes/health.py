"""/health (liveness) and /health/ready (database reachable, migrations applied); no
key needed, for load balancers and Kubernetes probes."""

from __future__ import annotations

from fastapi import APIRouter, Request

from tracker_server.http import schemas
from tracker_server.http.context import context
from tracker_server.http.encoding import JsonResponse

router = APIRouter(prefix="/health", tags=["health"])

_RETRY_AFTER_S = "5"


@router.get("", response_model=schemas.Health, summary="Liveness")
async def live() -> JsonResponse:
    """200 while the process serves requests."""
    return JsonResponse({"status": "ok"})


@router.get("/ready", response_model=schemas.Ready, summary="Readiness",
            responses={503: {"model": schemas.Ready, "description": "not ready"}})
async def ready(request: Request) -> JsonResponse:
    """200 when the database answers and has every migration; 503 otherwise."""
    state = await context(request).ready()
    body = {"status": "ready" if state.ready else "not ready", "detail": state.detail,
            "schema_version": state.schema_version}
    if state.ready:
        return JsonResponse(body)
    return JsonResponse(body, status_code=503, headers={"Retry-After": _RETRY_AFTER_S})
