"""Credential redaction in log lines masks passwords, not host:port pairs."""

from __future__ import annotations

import pytest

from tracker_server.logs import redact_text


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql://u:s3cret@db:5432/t", "postgresql://u:***@db:5432/t"),
    ("host=db password=s3cret user=u", "host=db password=*** user=u"),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
    ("dashboard at https://tracker.example:443/api", "dashboard at https://tracker.example:443/api"),
    ("Authorization: Bearer abc.def", "Authorization: Bearer ***"),
    ("key trk_0123456789ab_SECRETSECRET", "key trk_0123456789ab_***"),
])
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
