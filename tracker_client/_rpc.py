"""Unary calls of the client: create/attach the run, params, tags, status.

Everything here is one call with a deadline; retrying is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import struct_pb2

from tracker_client._artifacts import deliver as deliver_artifact
from tracker_client._enums import FINAL_RUN_STATUS, RunStatus
from tracker_client._env import TlsConfig
from tracker_client._meta import SpoolMeta
from tracker_proto.v1 import experiments_pb2, experiments_pb2_grpc

Metadata = tuple[tuple[str, str], ...]

# Transient: the server is down, restarting, overloaded or the network is flaky.
RETRYABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
})


@dataclass(frozen=True)
class RunRef:
    """Where a writer's points go."""

    run_id: str
    experiment_id: str
    attempt: int
    name: str


def make_channel(address: str, options: list[tuple[str, Any]] | tuple[tuple[str, Any], ...],
                 tls: TlsConfig | None) -> grpc.Channel:
    """A plaintext channel, or a TLS one when ``tls`` is set (see ``_env.tls_config``).

    The API key travels as per-call ``authorization`` metadata either way.
    """
    if tls is None:
        return grpc.insecure_channel(address, options=list(options))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.root_certificates,
        private_key=tls.private_key,
        certificate_chain=tls.certificate_chain,
    )
    return grpc.secure_channel(address, credentials, options=list(options))


def _stub(channel: grpc.Channel) -> experiments_pb2_grpc.ExperimentServiceStub:
    return experiments_pb2_grpc.ExperimentServiceStub(channel)


def status_number(status: str) -> RunStatus:
    """tracker.v1.RunStatus number of ``finished`` / ``failed`` / ``killed``."""
    try:
        return FINAL_RUN_STATUS[status]
    except KeyError:
        raise ValueError(
            f"status must be one of {sorted(FINAL_RUN_STATUS)}, got {status!r}") from None


def create_run(channel: grpc.Channel, meta: SpoolMeta, metadata: Metadata,
               timeout_s: float) -> RunRef:
    """CreateExperiment(get_if_exists) + CreateRun from a spool's meta (idempotent by run key)."""
    stub = _stub(channel)
    exp = stub.CreateExperiment(
        experiments_pb2.CreateExperimentRequest(
            name=meta.experiment, owner=meta.owner, get_if_exists=True),
        timeout=timeout_s, metadata=metadata or None,
    ).experiment
    struct = struct_pb2.Struct()
    struct.update(meta.metadata)
    req = experiments_pb2.CreateRunRequest(
        experiment_id=exp.experiment_id,
        name=meta.name,
        run_key=meta.run_key,
        params=meta.params,
        tags=meta.tags,
        resume=meta.resume,
        resume_token=meta.resume_token,
        slurm_job_id=meta.slurm_job_id,
        metadata=struct,
    )
    if meta.seed is not None:
        req.seed = meta.seed
    run = stub.CreateRun(req, timeout=timeout_s, metadata=metadata or None).run
    return RunRef(run.run_id, run.experiment_id, run.attempt, run.name)


def deliver_op(channel: grpc.Channel, op: dict[str, Any], ref: RunRef, metadata: Metadata,
               timeout_s: float) -> None:
    """Send one control operation (``params``, ``tags``, ``artifact`` or ``finish``).

    Raises grpc.RpcError as the server answered (a server without the RPC answers
    UNIMPLEMENTED) and ValueError for an op this client cannot send.
    """
    stub = _stub(channel)
    kind = op["op"]
    md = metadata or None
    if kind == "params":
        stub.LogParams(experiments_pb2.LogParamsRequest(run_id=ref.run_id,
                                                        params=_strings(op["values"])),
                       timeout=timeout_s, metadata=md)
    elif kind == "tags":
        stub.SetTags(experiments_pb2.SetTagsRequest(run_id=ref.run_id,
                                                    tags=_strings(op["values"])),
                     timeout=timeout_s, metadata=md)
    elif kind == "artifact":
        deliver_artifact(channel, op, ref.run_id, metadata, timeout_s)
    elif kind == "finish":
        stub.FinishRun(experiments_pb2.FinishRunRequest(run_id=ref.run_id,
                                                        status=status_number(op["status"])),
                       timeout=timeout_s, metadata=md)
    else:
        raise ValueError(f"unknown control op {kind!r}")


def _strings(values: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in values.items()}
