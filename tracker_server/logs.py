"""structlog set-up: JSON lines on stderr, one pipeline of small processors."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = frozenset({
    "api_key", "authorization", "password", "database_url", "conninfo", "token", "secret",
    "tls_key", "private_key",
})
# An API key anywhere in a string (an error message quoting metadata, a repr): keep the
# public id, drop the secret. Bearer tokens of any shape likewise.
_TOKEN_RE = re.compile(r"\b(trk_[0-9a-f]{12})_[A-Za-z0-9_-]+")
_BEARER_RE = re.compile(r"(?i)\b(bearer\s+)[^\s'\",]+")
# A URL's password is the part between "user:" and "@"; "host:port/" is no credential.
_PASSWORD_RE = re.compile(r"(?i)(password=)[^\s&'\"]+|(://[^:/@\s]+:)[^@\s/]+(?=@)")


def redact_text(text: str) -> str:
    """``text`` with API keys, bearer tokens and conninfo passwords masked."""
    if "trk_" in text:
        text = _TOKEN_RE.sub(r"\1_***", text)
    if "earer" in text:
        text = _BEARER_RE.sub(r"\1***", text)
    if "assword" in text or "://" in text:
        text = _PASSWORD_RE.sub(lambda m: (m[1] or m[2]) + "***", text)
    return text


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never log credentials, whatever the call site passed: secret-named fields are
    masked whole, and keys or passwords embedded in any string field are masked."""
    for key in _SECRET_KEYS & event.keys():
        event[key] = "***"
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact_text(value)
    return event


def configure_logging(level: str = "info", json: bool = True) -> None:
    """Configure structlog once per process."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(message)s")
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,  # after format_exc_info: tracebacks can quote secrets too
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
