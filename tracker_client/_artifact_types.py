"""What the read API returns for artifacts, and the checks ``tracker artifacts verify``
makes against the storage an artifact lives on."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tracker_client import _enums
from tracker_client._artifacts import kind_number, local_path, measure
from tracker_proto.v1 import artifacts_pb2

KIND_NAME: dict[int, str] = _enums.names(artifacts_pb2.ArtifactKind.DESCRIPTOR)
VERIFY_STATE: dict[str, int] = {
    "unverified": 0, **_enums.labels(artifacts_pb2.VerifyState.DESCRIPTOR)}
"""``unverified``, ``ok``, ``missing``, ``size_mismatch``, ``hash_mismatch``,
``unchecked`` -> tracker.v1.VerifyState."""
VERIFY_STATE_NAME: dict[int, str] = {v: k for k, v in VERIFY_STATE.items()}


@dataclass(frozen=True)
class Artifact:
    """A recorded artifact: where the file is and what the writer saw."""

    run_id: str
    uri: str
    kind: str
    """``checkpoint``, ``model``, ``dataset`` or ``other``."""
    step: int | None
    size_bytes: int | None
    sha256: str
    """Lower-case hex, "" when not computed."""
    rank: int
    created_at: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)
    verify_state: str = "unverified"
    """What the last ``tracker artifacts verify`` found (``unverified`` when never)."""
    verify_detail: str = ""
    verified_at: datetime | None = None

    @classmethod
    def from_proto(cls, a: artifacts_pb2.Artifact) -> Artifact:
        """Wire -> view."""
        return cls(
            run_id=a.run_id, uri=a.uri, kind=KIND_NAME.get(a.kind, "other"),
            step=a.step if a.HasField("step") else None,
            size_bytes=a.size_bytes if a.HasField("size_bytes") else None,
            sha256=a.sha256, rank=a.rank,
            created_at=a.created_at.ToDatetime(tzinfo=UTC) if a.HasField("created_at")
            else None,
            metadata=dict(a.metadata),
            verify_state=VERIFY_STATE_NAME.get(a.verify_state, "unverified"),
            verify_detail=a.verify_detail,
            verified_at=a.verified_at.ToDatetime(tzinfo=UTC) if a.HasField("verified_at")
            else None,
        )

    def row(self) -> dict[str, Any]:
        """A flat dict (``--json`` output, DataFrames)."""
        return {"run_id": self.run_id, "uri": self.uri, "kind": self.kind, "step": self.step,
                "size_bytes": self.size_bytes, "sha256": self.sha256, "rank": self.rank,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "metadata": self.metadata, "verify_state": self.verify_state,
                "verify_detail": self.verify_detail,
                "verified_at": self.verified_at.isoformat() if self.verified_at else None}


def list_request(run_id: str, kind: str | Sequence[str] | None, min_step: int | None,
                 max_step: int | None, page_size: int) -> artifacts_pb2.ListArtifactsRequest:
    """The first ListArtifacts request of a listing (ValueError for an unknown kind)."""
    kinds = [kind] if isinstance(kind, str) else list(kind or ())
    req = artifacts_pb2.ListArtifactsRequest(
        run_id=run_id, kinds=[artifacts_pb2.ArtifactKind.ValueType(kind_number(k))
                              for k in kinds],
        page_size=page_size)
    if min_step is not None:
        req.min_step = min_step
    if max_step is not None:
        req.max_step = max_step
    return req


def nearest(artifacts: Iterable[Artifact], step: int) -> Artifact | None:
    """The artifact whose step is nearest ``step`` (a tie goes to the later one, which
    holds more training); artifacts without a step never match."""
    stepped = [(a.step, a) for a in artifacts if a.step is not None]
    if not stepped:
        return None
    return min(stepped, key=lambda sa: (abs(sa[0] - step), -sa[0]))[1]


@dataclass(frozen=True)
class Check:
    """What ``verify`` found for one artifact."""

    artifact: Artifact
    state: str
    """``ok``, ``missing``, ``size_mismatch``, ``hash_mismatch`` or ``unchecked``."""
    detail: str
    """What differs, in words ("" when ok)."""

    def row(self) -> dict[str, Any]:
        """A flat dict for ``--json``."""
        return {"uri": self.artifact.uri, "step": self.artifact.step,
                "kind": self.artifact.kind, "state": self.state, "detail": self.detail}


def check(artifact: Artifact, hash_files: bool = True) -> Check:
    """Compare an artifact with the file it names: existence, size, then (when a hash
    was recorded and ``hash_files``) the SHA-256. Object-store URIs are ``unchecked``."""
    path = local_path(artifact.uri)
    if path is None:
        return Check(artifact, "unchecked", "not a local or shared-storage path: "
                     "tracker does not read object stores")
    want_hash = bool(artifact.sha256) and hash_files
    try:
        if not path.exists():  # raises too: a name too long, a directory not readable
            return Check(artifact, "missing", f"{path} does not exist")
        size, digest = measure(path, want_hash)
    except OSError as exc:
        return Check(artifact, "unchecked", f"cannot read {path}: {exc.strerror}")
    if artifact.size_bytes is not None and size != artifact.size_bytes:
        return Check(artifact, "size_mismatch",
                     f"size is {size} bytes, recorded {artifact.size_bytes}")
    if want_hash and digest != artifact.sha256:
        return Check(artifact, "hash_mismatch",
                     f"sha256 is {digest[:12]}..., recorded {artifact.sha256[:12]}...")
    return Check(artifact, "ok", "")


MAX_DETAIL_BYTES = 1000
"""Longest verification detail the server stores (``domain.artifacts``)."""


def verification_request(run_id: str, checks: Sequence[Check]
                         ) -> artifacts_pb2.RecordVerificationRequest:
    """The RecordVerification call storing ``checks``."""
    results = []
    for c in checks:
        # The server takes at most MAX_DETAIL_BYTES of UTF-8: cut at a character boundary.
        detail = c.detail.encode()[:MAX_DETAIL_BYTES].decode("utf-8", "ignore")
        v = artifacts_pb2.Verification(uri=c.artifact.uri, detail=detail,
                                       state=artifacts_pb2.VerifyState.ValueType(
                                           VERIFY_STATE[c.state]))
        if c.artifact.step is not None:
            v.step = c.artifact.step
        results.append(v)
    return artifacts_pb2.RecordVerificationRequest(run_id=run_id, results=results)


