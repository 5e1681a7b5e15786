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
    ({"TRACKER_SERIES_CACHE_BYTES": "-1"}, "TRACKER_SERIES_CACHE_BYTES must be >= 0"),
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


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", True), ("true", True), ("YES", True), ("on", True),
    ("0", False), ("false", False), ("No", False), ("off", False),
])
def test_boolean_words(raw: str, expected: bool) -> None:
    assert load_settings({"TRACKER_ALLOW_OPEN_NETWORK": raw}).allow_open_network is expected


@pytest.mark.parametrize(("env", "message"), [
    ({"TRACKER_ALLOW_OPEN_NETWORK": "ture"},
     "TRACKER_ALLOW_OPEN_NETWORK='ture': expected a boolean: one of 1, true, yes, on, 0, "
     "false, no, off"),
    ({"TRACKER_AUTH": "requird"}, "TRACKER_AUTH must be one of auto, required, off; got 'requird'"),
    ({"TRACKER_OTEL": "jaeger"}, "TRACKER_OTEL must be one of off, console, otlp; got 'jaeger'"),
    ({"TRACKER_LOG_LEVEL": "verbose"},
     "TRACKER_LOG_LEVEL must be one of debug, info, warning, error; got 'verbose'"),
])
def test_unrecognised_words_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as info:
        load_settings(env)
    assert str(info.value) == message


def test_enumerated_settings_ignore_case() -> None:
    s = load_settings({"TRACKER_AUTH": "Required", "TRACKER_OTEL": "OFF",
                       "TRACKER_LOG_LEVEL": "WARNING"})
    assert (s.auth, s.otel, s.log_level) == ("required", "off", "warning")


def test_every_enumerated_setting_has_the_same_words_as_its_flag() -> None:
    from tracker_server.config import CHOICES

    for name, words in CHOICES.items():
        flag = "--" + name.replace("_", "-")
        for word in words:
            assert getattr(parse_args([flag, word]), name) == word
        with pytest.raises(SystemExit):
            parse_args([flag, "nonsense"])


def test_help_names_each_default_once() -> None:
    import subprocess
    import sys
    from dataclasses import fields

    proc = subprocess.run([sys.executable, "-m", "tracker_server", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # argparse wraps long help lines
    assert text.count("(default:") == len(fields(Settings))
    assert "(default: None)" not in text
    assert "DATABASE_URL (default: unset)" in text
    assert "TRACKER_FLUSH_BYTES (default: 8388608)" in text


def test_a_typo_stops_the_server_with_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "TRACKER_ALLOW_OPEN_NETWORK": "ture",
           "TRACKER_DATA_DIR": str(tmp_path / "data"), "TRACKER_LISTEN": "127.0.0.1:0"}
    env.pop("DATABASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "tracker_server"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "tracker-server: TRACKER_ALLOW_OPEN_NETWORK='ture': expected a boolean: one of 1, "
        "true, yes, on, 0, false, no, off"]
    assert not (tmp_path / "data").exists()  # refused before the database was started
