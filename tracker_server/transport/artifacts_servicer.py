"""ArtifactService over gRPC: proto in, one domain service call, proto out.

Errors (``TrackerError``) become statuses in the call interceptor.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from tracker_proto.v1 import artifacts_pb2, artifacts_pb2_grpc
from tracker_server.domain.artifact_service import ArtifactIn, ArtifactService, VerificationIn
from tracker_server.domain.artifacts import Artifact
from tracker_server.transport.convert import optional, optional_time, timestamp

# grpc ships no type information (mypy sees Any), hence the explicit alias.
Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def artifact_to_proto(a: Artifact) -> artifacts_pb2.Artifact:
    """Domain -> wire."""
    msg = artifacts_pb2.Artifact(
        run_id=str(a.run_id), uri=a.uri, kind=artifacts_pb2.ArtifactKind.ValueType(a.kind),
        sha256=a.sha256,
        metadata=a.metadata, rank=a.rank, created_at=timestamp(a.created_at),
        verify_state=artifacts_pb2.VerifyState.ValueType(a.verify_state),
        verify_detail=a.verify_detail,
        verified_at=timestamp(a.verified_at),
    )
    if a.step is not None:
        msg.step = a.step
    if a.size_bytes is not None:
        msg.size_bytes = a.size_bytes
    return msg


class ArtifactServicer(artifacts_pb2_grpc.ArtifactServiceServicer):
    """Artifact records of runs."""

    def __init__(self, artifacts: ArtifactService) -> None:
        self._artifacts = artifacts

    async def LogArtifacts(
        self, request: artifacts_pb2.LogArtifactsRequest, context: Ctx
    ) -> artifacts_pb2.LogArtifactsResponse:
        created = await self._artifacts.log_artifacts(request.run_id, [
            ArtifactIn(
                uri=a.uri, kind=a.kind, step=optional(a, "step"),
                size_bytes=optional(a, "size_bytes"), sha256=a.sha256,
                metadata=dict(a.metadata), rank=a.rank,
                created_at=optional_time(a, "created_at"),
            )
            for a in request.artifacts
        ])
        return artifacts_pb2.LogArtifactsResponse(created=created)

    async def ListArtifacts(
        self, request: artifacts_pb2.ListArtifactsRequest, context: Ctx
    ) -> artifacts_pb2.ListArtifactsResponse:
        page = await self._artifacts.list_artifacts(
            request.run_id, list(request.kinds), optional(request, "min_step"),
            optional(request, "max_step"), request.page_size, request.page_token,
        )
        return artifacts_pb2.ListArtifactsResponse(
            artifacts=[artifact_to_proto(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    async def RecordVerification(
        self, request: artifacts_pb2.RecordVerificationRequest, context: Ctx
    ) -> artifacts_pb2.RecordVerificationResponse:
        await self._artifacts.record_verification(request.run_id, [
            VerificationIn(r.uri, optional(r, "step"), r.state, r.detail)
            for r in request.results
        ])
        return artifacts_pb2.RecordVerificationResponse()
