"""Settings come from TRACKER_* / DATABASE_URL, flags override, bad values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker_server.__main__ import parse_args
from tracker_server.config import Settings, load_settings


def test_defaults() -> None:
    s = load_settings({})
    assert s.listen == "127.0.0.1:50051" and s.database_url is None
    assert s == Settings()


def test_environment_and_overrides() -> None:
    env = {"TRACKER_LISTEN": "127.0.0.1:6000", "DATABASE_URL": "dbname=x",
           "TRACKER_FLUSH_INTERVAL_MS": "250", "TRACKER_DATA_DIR": "/tmp/tr",
           "TRACKER_MEMORY_BUDGET_BYTES": "100000000"}
    s = load_settings(env, flush_interval_ms=50)
    assert s.listen == "127.0.0.1:6000" and s.database_url == "dbname=x"
    assert s.flush_interval_ms == 50 and s.data_dir == Path("/tmp/tr")
    assert s.memory_budget_bytes == 100_000_000


def test_flags_parse_into_overrides() -> None:
    args = parse_args(["--listen", "127.0.0.1:7000", "--flush-bytes", "1024"])
    s = load_settings({}, **{k: v for k, v in vars(args).items() if v is not None})
    assert s.listen == "127.0.0.1:7000" and s.flush_bytes == 1024


@pytest.mark.parametrize(("env", "message"), [
    ({"TRACKER_FLUSH_BYTES": "abc"}, "TRACKER_FLUSH_BYTES='abc'"),
    ({"TRACKER_MEMORY_BUDGET_BYTES": "0"}, "TRACKER_MEMORY_BUDGET_BYTES must be > 0"),
    ({"TRACKER_FLUSH_BYTES": "100", "TRACKER_MEMORY_BUDGET_BYTES": "10"}, "must not exceed"),
])
def test_bad_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        load_settings(env)


def test_every_setting_has_a_flag() -> None:
    from dataclasses import fields

    help_text = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "tracker_server", "--help"],
        capture_output=True, text=True, timeout=60).stdout
    for f in fields(Settings):
        assert "--" + f.name.replace("_", "-") in help_text, f.name
    args = parse_args(["--compact-interval-s", "0", "--max-keys-per-batch", "7",
                       "--data-dir", "/tmp/x", "--auth", "off"])
    s = load_settings({}, **{k: v for k, v in vars(args).items() if v is not None})
    assert (s.compact_interval_s, s.max_keys_per_batch, s.data_dir, s.auth) == (
        0.0, 7, Path("/tmp/x"), "off")
