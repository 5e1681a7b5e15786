"""Opaque page tokens for keyset pagination.

A token is URL-safe base64 of JSON ``{"v": 1, "q": <query fingerprint>, "k": [...]}``
where ``k`` holds the sort-key values of the last row of the previous page. The next
page starts strictly after that position, so pages stay stable while rows are added
elsewhere in the order, and a token cannot be replayed against a different query
(its fingerprint would not match).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from tracker_server.domain.errors import Code, TrackerError, invalid

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_VERSION = 1


def page_size(requested: int, what: str = "page_size") -> int:
    """The page size to use: the default for 0, INVALID_ARGUMENT when out of range."""
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if requested < 0 or requested > MAX_PAGE_SIZE:
        raise invalid(
            f"{what} must be between 0 and {MAX_PAGE_SIZE}, got {requested}",
            [(what, "out of range")],
        )
    return requested


def fingerprint(*parts: Any) -> str:
    """A short digest of the query a token belongs to."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def encode_token(query: str, position: list[Any]) -> str:
    """Token for the page after ``position`` of query ``query`` (a fingerprint)."""
    body = json.dumps({"v": _VERSION, "q": query, "k": [_plain(v) for v in position]})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_token(token: str, query: str, n_keys: int, what: str = "page_token") -> list[Any]:
    """Position of a token; INVALID_ARGUMENT when malformed or from another query."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError):
        raise invalid(f"{what} is malformed", [(what, "malformed")]) from None
    if (
        not isinstance(body, dict)
        or body.get("v") != _VERSION
        or not isinstance(body.get("k"), list)
        or len(body["k"]) != n_keys
    ):
        raise invalid(f"{what} is malformed", [(what, "malformed")])
    if body.get("q") != query:
        raise invalid(
            f"{what} belongs to a different query (filters or order changed)",
            [(what, "different query")],
        )
    position: list[Any] = body["k"]
    if any(not isinstance(v, str | int | float | type(None)) for v in position):
        raise invalid(f"{what} is malformed", [(what, "malformed")])
    return position


def bounded_count(value: int, default: int, most: int, what: str) -> int:
    """A positive count from the wire: ``default`` for 0, INVALID_ARGUMENT outside
    1..``most``."""
    if value == 0:
        return default
    if value < 0 or value > most:
        raise invalid(f"{what} must be between 1 and {most}, got {value}", [(what, "out of range")])
    return value


class PositionError(TrackerError):
    """A store could not use a page position: its values do not fit the sort keys (a
    hand-edited token, or one from an older server). ``keyset_page`` reports it as a
    malformed token, naming the request's token field."""

    def __init__(self) -> None:
        super().__init__(Code.INVALID_ARGUMENT, "page position is malformed")


@dataclass(frozen=True)
class KeysetPage(Generic[T]):
    """What a store returns: rows and the sort-key values of the last one (None on the
    last page)."""

    items: list[T]
    next_position: list[Any] | None


@dataclass(frozen=True)
class Page(Generic[T]):
    """What a service returns: rows and the token of the next page ("" on the last)."""

    items: list[T]
    next_page_token: str


async def keyset_page(
    fetch: Callable[[list[Any] | None], Awaitable[KeysetPage[T]]],
    query: str,
    n_keys: int,
    page_token: str,
    what: str = "page_token",
) -> Page[T]:
    """Decode ``page_token`` (of query fingerprint ``query``, positions of ``n_keys``
    values), fetch the page after it, and encode the next token."""
    position = decode_token(page_token, query, n_keys, what) if page_token else None
    try:
        page = await fetch(position)
    except PositionError:
        raise invalid(f"{what} is malformed", [(what, "malformed")]) from None
    token = encode_token(query, page.next_position) if page.next_position else ""
    return Page(page.items, token)
