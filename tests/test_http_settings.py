"""HTTP settings: empty disables, unsafe values refuse to start, the auth rule covers the
HTTP address too."""

from __future__ import annotations

import asyncio

import pytest

from tracker_server.config import Settings, cors_origins, http_body_limit, load_settings
from tracker_server.server import auth_required


class _Keys:
    async def active_count(self) -> int:
        return 0


def test_http_settings_from_the_environment() -> None:
    assert load_settings({}).http_listen == "127.0.0.1:8080"
    assert load_settings({"TRACKER_HTTP_LISTEN": ""}).http_listen == ""  # empty: HTTP off
    s = load_settings({"TRACKER_HTTP_CORS_ORIGINS": "https://a.example:8443, http://[::1]:3000/",
                       "TRACKER_MAX_MESSAGE_BYTES": "1000"})
    assert cors_origins(s) == ("https://a.example:8443", "http://[::1]:3000")
    assert http_body_limit(s) == 1000
    assert http_body_limit(load_settings({"TRACKER_HTTP_MAX_BODY_BYTES": "5"})) == 5


@pytest.mark.parametrize(("env", "message"), [
    ({"TRACKER_HTTP_CORS_ORIGINS": "*"}, "wildcard"),
    ({"TRACKER_HTTP_CORS_ORIGINS": "https://a.example/path"}, "not an origin"),
    ({"TRACKER_HTTP_SESSION_SECRET": "short"}, "at least 32"),
    ({"TRACKER_HTTP_LISTEN": "8080"}, "host:port"),
    ({"TRACKER_HTTP_MAX_BODY_BYTES": "-1"}, ">= 0"),
    ({"TRACKER_HTTP_LISTEN": "0.0.0.0:8080", "TRACKER_AUTH": "off"}, "ALLOW_OPEN_NETWORK"),
])
def test_unsafe_or_broken_http_settings_refuse_to_start(env: dict[str, str], message: str
                                                        ) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(env)


def test_auto_auth_is_required_when_http_listens_beyond_loopback() -> None:
    keys = _Keys()
    assert not asyncio.run(auth_required(Settings(), keys))  # type: ignore[arg-type]
    public = Settings(http_listen="0.0.0.0:8080")
    assert asyncio.run(auth_required(public, keys))  # type: ignore[arg-type]
    assert not asyncio.run(auth_required(Settings(http_listen=""), keys))  # type: ignore[arg-type]
