"""Artifact records: references to checkpoints, models and data sets on shared storage.

tracker never uploads or copies a file; it records where one is (a path on storage
mounted on every node, or an object-store URI), what the writer saw (size, optional
SHA-256) and, once someone checked, whether it is still there. Pure rules here; the
store is ``ports.ArtifactStore``.

A URI that carries credentials (``s3://key:secret@bucket/...``, a pre-signed URL's
signature) is refused, and the error message never repeats the URI, so a secret
never reaches the database, the logs or an error report.
"""

from __future__ import annotations

import enum
import re
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from tracker_server.domain.errors import invalid


class ArtifactKind(enum.IntEnum):
    """What an artifact is (values are tracker.v1.ArtifactKind numbers)."""

    CHECKPOINT = 1
    MODEL = 2
    DATASET = 3
    OTHER = 4


class VerifyState(enum.IntEnum):
    """What the last verification found (tracker.v1.VerifyState numbers)."""

    UNVERIFIED = 0
    OK = 1
    MISSING = 2
    SIZE_MISMATCH = 3
    HASH_MISMATCH = 4
    UNCHECKED = 5


@dataclass(frozen=True)
class ArtifactLimits:
    """Bounds of one artifact record and of one call (all refused with INVALID_ARGUMENT)."""

    max_uri_bytes: int = 2048
    """Longest URI, in UTF-8 bytes."""
    max_per_call: int = 100
    """Most artifacts in one LogArtifacts call."""
    max_metadata_entries: int = 32
    """Most metadata entries of one artifact."""
    max_metadata_key_bytes: int = 200
    """Longest metadata key, in UTF-8 bytes."""
    max_metadata_value_bytes: int = 1000
    """Longest metadata value, in UTF-8 bytes."""
    max_verifications_per_call: int = 1000
    """Most outcomes in one RecordVerification call."""
    max_detail_bytes: int = 1000
    """Longest verification detail, in UTF-8 bytes."""


@dataclass(frozen=True)
class NewArtifact:
    """An artifact as a writer reports it (checked)."""

    uri: str
    kind: ArtifactKind
    step: int | None
    size_bytes: int | None
    sha256: str
    metadata: dict[str, str]
    rank: int
    created_at: datetime | None


@dataclass(frozen=True)
class Artifact:
    """A stored artifact record."""

    run_id: uuid.UUID
    uri: str
    kind: ArtifactKind
    step: int | None
    size_bytes: int | None
    sha256: str
    metadata: dict[str, str]
    rank: int
    created_at: datetime
    verify_state: VerifyState = VerifyState.UNVERIFIED
    verify_detail: str = ""
    verified_at: datetime | None = None


@dataclass(frozen=True)
class Verification:
    """What a check found for one artifact (checked)."""

    uri: str
    step: int | None
    state: VerifyState
    detail: str


@dataclass(frozen=True)
class ArtifactFilter:
    """Which artifacts of a run a listing wants."""

    kinds: list[ArtifactKind] = field(default_factory=list)
    """Empty: every kind."""
    min_step: int | None = None
    max_step: int | None = None


STEP_NONE = -(2**63)
"""How an artifact without a step sorts (first) and is keyed in storage."""

INT64_MAX = 2**63 - 1

# Query parameters that make a URL a credential (pre-signed S3/GCS/Azure URLs, tokens).
_SECRET_PARAMS = frozenset({
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "awsaccesskeyid",
    "signature", "x-goog-signature", "x-goog-credential", "sig",
    "token", "access_token", "password", "secret", "api_key", "apikey",
})
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_WINDOWS_PATH_RE = re.compile(r"^[A-Za-z]:[\\/]")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def check_uri(uri: str, limits: ArtifactLimits, what: str = "uri") -> str:
    """A URI or absolute path to record: non-empty, bounded, printable, absolute, and
    without credentials. Messages never quote a URI (it may hold a secret)."""
    if not uri:
        raise invalid(f"{what} must not be empty", [(what, "empty")])
    if _utf8_len(uri) > limits.max_uri_bytes:
        raise invalid(f"{what} is longer than {limits.max_uri_bytes} bytes",
                      [(what, "too long")])
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        raise invalid(f"{what} contains control characters", [(what, "control character")])
    if _SCHEME_RE.match(uri):
        parts = urllib.parse.urlsplit(uri)
        if "@" in parts.netloc:
            raise invalid(
                f"{what} carries credentials (user info before '@'); record the location "
                "without them (object-store clients read keys from their own config)",
                [(what, "credentials")])
        names = {k.lower() for k, _ in urllib.parse.parse_qsl(parts.query,
                                                              keep_blank_values=True)}
        if names & _SECRET_PARAMS:
            raise invalid(
                f"{what} carries credentials (a signed or token query parameter); record "
                "the location without them", [(what, "credentials")])
        return uri
    if uri.startswith("/") or _WINDOWS_PATH_RE.match(uri):
        return uri
    raise invalid(f"{what} must be an absolute path or a URI with a scheme (file://, "
                  "s3://, ...): a relative path means nothing on another node",
                  [(what, "relative path")])


def check_kind(value: int, what: str = "kind") -> ArtifactKind:
    """A wire kind number; UNSPECIFIED and unknown numbers are INVALID_ARGUMENT."""
    try:
        return ArtifactKind(value)
    except ValueError:
        names = ", ".join(k.name.lower() for k in ArtifactKind)
        raise invalid(f"{what} must be one of {names}, got {value}",
                      [(what, "unknown kind")]) from None


def check_metadata(values: Mapping[str, str], limits: ArtifactLimits,
                   what: str = "metadata") -> dict[str, str]:
    """Bound an artifact's metadata map."""
    if len(values) > limits.max_metadata_entries:
        raise invalid(f"{what} has more than {limits.max_metadata_entries} entries",
                      [(what, "too many entries")])
    for key, value in values.items():
        if not key or _utf8_len(key) > limits.max_metadata_key_bytes or "\x00" in key:
            raise invalid(f"{what} keys must be 1..{limits.max_metadata_key_bytes} bytes "
                          "without NUL", [(what, "bad key")])
        if _utf8_len(value) > limits.max_metadata_value_bytes or "\x00" in value:
            raise invalid(f"{what} value of {key[:80]!r} must be at most "
                          f"{limits.max_metadata_value_bytes} bytes without NUL",
                          [(what, "bad value")])
    return dict(values)


def check_step(step: int | None, what: str = "step") -> int | None:
    """A step in int64 (the storage keeps the smallest int64 for "no step")."""
    if step is not None and not STEP_NONE < step <= INT64_MAX:
        raise invalid(f"{what} is out of range", [(what, "out of range")])
    return step


def check_artifact(
    uri: str,
    kind: int,
    step: int | None,
    size_bytes: int | None,
    sha256: str,
    metadata: Mapping[str, str],
    rank: int,
    created_at: datetime | None,
    limits: ArtifactLimits,
    what: str = "artifacts[0]",
) -> NewArtifact:
    """One artifact from the wire, checked."""
    if size_bytes is not None and size_bytes < 0:
        raise invalid(f"{what}.size_bytes must be >= 0, got {size_bytes}",
                      [(f"{what}.size_bytes", "negative")])
    digest = sha256.lower()
    if digest and not _SHA256_RE.match(digest):
        raise invalid(f"{what}.sha256 must be 64 hex digits",
                      [(f"{what}.sha256", "not a SHA-256")])
    if rank < 0:
        raise invalid(f"{what}.rank must be >= 0, got {rank}", [(f"{what}.rank", "negative")])
    return NewArtifact(
        uri=check_uri(uri, limits, f"{what}.uri"),
        kind=check_kind(kind, f"{what}.kind"),
        step=check_step(step, f"{what}.step"),
        size_bytes=size_bytes,
        sha256=digest,
        metadata=check_metadata(metadata, limits, f"{what}.metadata"),
        rank=rank,
        created_at=created_at,
    )


def check_verification(uri: str, step: int | None, state: int, detail: str,
                       limits: ArtifactLimits, what: str = "results[0]") -> Verification:
    """One verification outcome from the wire, checked."""
    try:
        verified = VerifyState(state)
    except ValueError:
        verified = VerifyState.UNVERIFIED
    if verified is VerifyState.UNVERIFIED:
        raise invalid(f"{what}.state must be one of ok, missing, size_mismatch, "
                      f"hash_mismatch, unchecked; got {state}",
                      [(f"{what}.state", "unknown state")])
    if _utf8_len(detail) > limits.max_detail_bytes or "\x00" in detail:
        raise invalid(f"{what}.detail must be at most {limits.max_detail_bytes} bytes "
                      "without NUL", [(f"{what}.detail", "too long")])
    return Verification(check_uri(uri, limits, f"{what}.uri"), check_step(step, f"{what}.step"),
                        verified, detail)


def check_filter(kinds: list[int], min_step: int | None, max_step: int | None
                 ) -> ArtifactFilter:
    """A listing's filter; a range with min > max is INVALID_ARGUMENT."""
    checked = sorted({check_kind(k, "kinds") for k in kinds})
    check_step(min_step, "min_step")
    check_step(max_step, "max_step")
    if min_step is not None and max_step is not None and min_step > max_step:
        raise invalid(f"min_step ({min_step}) is greater than max_step ({max_step})",
                      [("min_step", "greater than max_step")])
    return ArtifactFilter(checked, min_step, max_step)

