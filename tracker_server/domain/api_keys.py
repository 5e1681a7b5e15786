"""API key records the server checks presented keys against."""

from __future__ import annotations

from dataclasses import dataclass

from tracker_server.domain.access import Role


@dataclass(frozen=True)
class KeyRecord:
    """What the server needs to check a presented key (never the secret itself)."""

    role: Role
    secret_hash: bytes
    revoked: bool
