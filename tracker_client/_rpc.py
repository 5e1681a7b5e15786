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


class RunRefused(grpc.RpcError):
    """A refusal decided by the client from the server's answer (same shape as the
    server's own errors, so every caller handles both alike)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        """The status code."""
        return self._code

    def details(self) -> str:
        """The message."""
        return self._details


def create_run(channel: grpc.Channel, meta: SpoolMeta, metadata: Metadata,
               timeout_s: float) -> RunRef:
    """CreateExperiment(get_if_exists) + CreateRun from a spool's meta (idempotent by run
    key), or the run ``meta.attach_run_id`` names."""
    stub = _stub(channel)
    if meta.attach_run_id:
        return _attach_by_id(stub, meta, metadata, timeout_s)
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


def _attach_by_id(stub: experiments_pb2_grpc.ExperimentServiceStub, meta: SpoolMeta,
                  metadata: Metadata, timeout_s: float) -> RunRef:
    """Attach to an existing run by id: GetRun (NOT_FOUND for an unknown id), then the
    init() params, tags and resume through the run's own key, so a retried call stays
    idempotent exactly as a key-based init is."""
    md = metadata or None
    run = stub.GetRun(experiments_pb2.GetRunRequest(run_id=meta.attach_run_id),
                      timeout=timeout_s, metadata=md).run
    if run.run_key:
        if meta.resume or meta.params or meta.tags:
            req = experiments_pb2.CreateRunRequest(
                experiment_id=run.experiment_id, run_key=run.run_key, params=meta.params,
                tags=meta.tags, resume=meta.resume, resume_token=meta.resume_token)
            run = stub.CreateRun(req, timeout=timeout_s, metadata=md).run
        return RunRef(run.run_id, run.experiment_id, run.attempt, run.name)
    # A run created without a key (by another tool): params and tags one call each; a
    # resume cannot be made idempotent without a key, so it is refused.
    if meta.resume:
        raise RunRefused(grpc.StatusCode.FAILED_PRECONDITION,
                         f"run {run.run_id} has no run key, so it cannot be resumed")
    if meta.params:
        stub.LogParams(experiments_pb2.LogParamsRequest(run_id=run.run_id, params=meta.params),
                       timeout=timeout_s, metadata=md)
    if meta.tags:
        stub.SetTags(experiments_pb2.SetTagsRequest(run_id=run.run_id, tags=meta.tags),
                     timeout=timeout_s, metadata=md)
    return RunRef(run.run_id, run.experiment_id, run.attempt, run.name)


def deliver_op(channel: grpc.Channel, op: dict[str, Any], ref: RunRef, metadata: Metadata,
               timeout_s: float) -> None:
    """Send one control operation (``params``, ``tags``, ``summary``, ``goals``,
    ``artifact`` or ``finish``).

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
    elif kind == "summary":
        stub.SetSummary(experiments_pb2.SetSummaryRequest(
            run_id=ref.run_id, values={str(k): float(v) for k, v in op["values"].items()},
            delete_keys=[str(k) for k in op.get("delete", [])]),
            timeout=timeout_s, metadata=md)
    elif kind == "goals":
        stub.DefineMetrics(experiments_pb2.DefineMetricsRequest(run_id=ref.run_id,
                                                                goals=_strings(op["values"])),
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
