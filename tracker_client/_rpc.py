"""Unary calls of the client: create/attach the run, params, tags, status.

Everything here is one call with a deadline; retrying is the caller's business.
Calls that the server may not offer yet (``LogParams``, ``SetTags``, ``FinishRun``)
are looked up at run time: params and tags then fall back to the idempotent
``CreateRun(run_key, params, tags)``, which also merges them into an existing run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import struct_pb2

from tracker_client._enums import FINAL_RUN_STATUS
from tracker_client._env import TlsConfig
from tracker_proto.v1 import experiments_pb2, experiments_pb2_grpc

Metadata = tuple[tuple[str, str], ...]

# Transient: the server is down, restarting, overloaded or the network is flaky.
RETRYABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
})



class UnsupportedByServer(RuntimeError):
    """The server (or its generated code) lacks the RPC this operation needs."""


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


def status_number(status: str) -> int:
    """tracker.v1.RunStatus number of ``finished`` / ``failed`` / ``killed``."""
    try:
        return FINAL_RUN_STATUS[status]
    except KeyError:
        raise ValueError(
            f"status must be one of {sorted(FINAL_RUN_STATUS)}, got {status!r}") from None


def create_run(channel: grpc.Channel, meta: dict[str, Any], metadata: Metadata,
               timeout_s: float) -> RunRef:
    """CreateExperiment(get_if_exists) + CreateRun from a spool's meta (idempotent by run key)."""
    stub = _stub(channel)
    exp = stub.CreateExperiment(
        experiments_pb2.CreateExperimentRequest(
            name=meta["experiment"], owner=meta.get("owner", ""), get_if_exists=True),
        timeout=timeout_s, metadata=metadata or None,
    ).experiment
    struct = struct_pb2.Struct()
    struct.update(meta.get("metadata") or {})
    req = experiments_pb2.CreateRunRequest(
        experiment_id=exp.experiment_id,
        name=meta.get("name") or "",
        run_key=meta["run_key"],
        params=meta.get("params") or {},
        tags=meta.get("tags") or {},
        resume=bool(meta.get("resume")),
        resume_token=meta.get("resume_token") or "",
        slurm_job_id=meta.get("slurm_job_id", ""),
        metadata=struct,
    )
    if meta.get("seed") is not None:
        req.seed = int(meta["seed"])
    run = stub.CreateRun(req, timeout=timeout_s, metadata=metadata or None).run
    return RunRef(run.run_id, run.experiment_id, run.attempt, run.name)


def deliver_op(channel: grpc.Channel, op: dict[str, Any], ref: RunRef, run_key: str,
               metadata: Metadata, timeout_s: float) -> None:
    """Send one control operation (``params``, ``tags`` or ``finish``)."""
    stub = _stub(channel)
    kind = op["op"]
    md = metadata or None
    if kind in ("params", "tags"):
        values = {str(k): str(v) for k, v in op["values"].items()}
        method = getattr(stub, "LogParams" if kind == "params" else "SetTags", None)
        req_cls = getattr(experiments_pb2,
                          "LogParamsRequest" if kind == "params" else "SetTagsRequest", None)
        if method is not None and req_cls is not None:
            method(req_cls(run_id=ref.run_id, **{kind: values}), timeout=timeout_s, metadata=md)
            return
        # Older servers: CreateRun with the run key merges params/tags into the run.
        fallback = experiments_pb2.CreateRunRequest(experiment_id=ref.experiment_id,
                                                    run_key=run_key)
        (fallback.params if kind == "params" else fallback.tags).update(values)
        stub.CreateRun(fallback, timeout=timeout_s, metadata=md)
        return
    if kind == "finish":
        method = getattr(stub, "FinishRun", None)
        req_cls = getattr(experiments_pb2, "FinishRunRequest", None)
        if method is None or req_cls is None:
            raise UnsupportedByServer("this tracker version has no FinishRun RPC")
        method(req_cls(run_id=ref.run_id, status=status_number(op["status"])),
               timeout=timeout_s, metadata=md)
        return
    raise ValueError(f"unknown control op {kind!r}")
