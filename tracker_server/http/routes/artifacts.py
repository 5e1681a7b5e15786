"""/api/v1/runs/{run_id}/artifacts: record and list a run's artifacts (references to
checkpoints and other files on shared storage; tracker never stores the files)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from tracker_server.domain.artifact_service import ArtifactIn
from tracker_server.http import convert, schemas
from tracker_server.http.context import context
from tracker_server.http.encoding import JsonResponse
from tracker_server.http.errors import PROBLEM_RESPONSES
from tracker_server.http.rpc_map import API_PREFIX
from tracker_server.http.security import Guarded

router = APIRouter(prefix=f"{API_PREFIX}/runs/{{run_id}}/artifacts", tags=["artifacts"],
                   responses=PROBLEM_RESPONSES)


@router.get("", response_model=schemas.ArtifactList, summary="List a run's artifacts")
async def list_artifacts(
    request: Request,
    _: Guarded,
    run_id: str,
    kind: Annotated[list[schemas.ArtifactKindName] | None,
                    Query(description="repeatable; default every kind")] = None,
    min_step: Annotated[int | None, Query(description="only steps >= this")] = None,
    max_step: Annotated[int | None, Query(description="only steps <= this")] = None,
    page_size: int = 0,
    page_token: str = "",
) -> JsonResponse:
    """By step (artifacts without a step first), then uri, with the last verification's
    outcome; a step range leaves out artifacts without a step."""
    page = await context(request).services.artifacts.list_artifacts(
        run_id, [convert.artifact_kind(k) for k in kind or ()], min_step, max_step,
        page_size, page_token)
    return JsonResponse({"artifacts": [convert.artifact(a) for a in page.items],
                         "next_page_token": page.next_page_token})


@router.post("", response_model=schemas.ArtifactsLogged, summary="Record artifacts")
async def log_artifacts(request: Request, _: Guarded, run_id: str, body: schemas.ArtifactsIn
                        ) -> JsonResponse:
    """Idempotent on (run, uri, step): a retried request records each once. An empty or
    over-long uri, a relative path, a uri with credentials, a negative size: 400, and
    nothing of the request is written."""
    created = await context(request).services.artifacts.log_artifacts(run_id, [
        ArtifactIn(uri=a.uri, kind=convert.artifact_kind(a.kind), step=a.step,
                   size_bytes=a.size_bytes, sha256=a.sha256, metadata=a.metadata,
                   rank=a.rank, created_at=a.created_at)
        for a in body.artifacts
    ])
    return JsonResponse({"created": created})
