"""Client settings from the environment: a typo is an error naming the variable and the
words it takes, raised by init() before anything touches the disk or the network."""

from __future__ import annotations

from pathlib import Path

import pytest

import tracker_client
from tracker_client import _env
from tracker_client import _sync as sync_cli
from tracker_client.cli import main as cli_main

OPTS = tracker_client.Options(system_metrics_interval_s=None, recover_orphans=False)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("TRACKER_MODE", "TRACKER_TLS", "TRACKER_TLS_CA", "TRACKER_EXIT_TIMEOUT_S",
                "TRACKER_SERVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRACKER_SPOOL_DIR", str(tmp_path / "spool"))


@pytest.mark.parametrize(("var", "value", "accepted"), [
    ("TRACKER_MODE", "ofline", "online, offline"),
    ("TRACKER_TLS", "ture", "1, true, yes, on, 0, false, no, off"),
    ("TRACKER_EXIT_TIMEOUT_S", "ten", "seconds >= 0"),
    ("TRACKER_EXIT_TIMEOUT_S", "-1", "seconds >= 0"),
    ("TRACKER_EXIT_TIMEOUT_S", "nan", "seconds >= 0"),
])
def test_init_refuses_a_malformed_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           var: str, value: str, accepted: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError) as info:
        tracker_client.init(experiment="e", server="127.0.0.1:1", options=OPTS)
    assert f"{var}={value!r}" in str(info.value) and accepted in str(info.value)
    assert not (tmp_path / "spool").exists()  # refused before a spool was created


def test_explicit_mode_typo_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be one of online, offline"):
        # The typo under test is what the type checker would catch.
        tracker_client.init(experiment="e", mode="ofline", options=OPTS)  # type: ignore[arg-type]
    assert not (tmp_path / "spool").exists()


@pytest.mark.parametrize(("value", "expected"), [
    ("", "online"), ("online", "online"), ("offline", "offline"), (" Offline ", "offline")])
def test_mode_words(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("TRACKER_MODE", value)
    assert _env.mode() == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("", False), ("0", False), ("off", False), ("No", False),
    ("1", True), ("TRUE", True), ("yes", True), ("on", True)])
def test_boolean_words(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("TRACKER_TLS", value)
    assert _env.flag("TRACKER_TLS") is expected
    assert (_env.tls_config() is not None) is expected


def test_offline_mode_from_the_environment_spools_only(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("TRACKER_MODE", "OFFLINE")
    monkeypatch.setenv("TRACKER_EXIT_TIMEOUT_S", "0.5")
    run = tracker_client.init(experiment="e", options=OPTS)
    try:
        assert run.mode == "offline" and run.stats.state == "offline"
        run.log({"loss": 1.0}, step=0)
    finally:
        report = run.close(timeout=2)
    assert report.points_pending == 1 and (tmp_path / "spool").is_dir()


def test_spool_full_policy_typo_is_refused() -> None:
    with pytest.raises(ValueError, match="spool_full_policy must be one of drop_new, "
                                         "drop_oldest, got 'drop_newest'"):
        # The typo under test is what the type checker would catch.
        tracker_client.Options(spool_full_policy="drop_newest")  # type: ignore[arg-type]


def test_cli_reports_a_malformed_variable(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRACKER_TLS", "ture")
    assert cli_main(["--server", "127.0.0.1:1", "experiments", "ls"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tracker: TRACKER_TLS='ture': expected one of") and "Traceback" not in err


def test_sync_reports_a_malformed_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRACKER_TLS", "ture")
    assert sync_cli.main([str(tmp_path)]) == 2
    assert "TRACKER_TLS='ture'" in capsys.readouterr().err
