"""Supervisor helpers without processes: how many workers, and what each is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracker_server.config import Settings, load_settings, worker_count
from tracker_server.supervisor import WORKER_ENV, worker_env


def test_worker_count_is_the_setting_or_the_cores_within_the_cgroup_limit(
    tmp_path: Path,
) -> None:
    limit = tmp_path / "cpu.max"
    assert worker_count(Settings(workers=3), limit) == 3
    limit.write_text("max 100000\n")
    unlimited = worker_count(Settings(), limit)
    assert unlimited >= 1
    limit.write_text("150000 100000\n")  # 1.5 CPUs: two processes
    assert worker_count(Settings(), limit) == min(2, unlimited)
    limit.write_text("50000 100000\n")
    assert worker_count(Settings(), limit) == 1
    assert worker_count(Settings(), tmp_path / "missing") == unlimited


def test_negative_workers_and_lanes_are_refused() -> None:
    with pytest.raises(ValueError, match="TRACKER_WORKERS"):
        load_settings({"TRACKER_WORKERS": "-1"})
    with pytest.raises(ValueError, match="TRACKER_FLUSH_LANES"):
        load_settings({"TRACKER_FLUSH_LANES": "0"})
    assert load_settings({"TRACKER_FLUSH_INTERVAL_MS": "0"}).flush_interval_ms == 0


def test_a_worker_gets_every_setting_its_budget_share_and_the_shared_port() -> None:
    settings = Settings(memory_budget_bytes=64 << 20, flush_bytes=48 << 20, flush_lanes=3,
                        allow_open_network=True, tls_cert=None, http_listen="")
    env = worker_env(settings, 1, 2, "postgresql:///db", "127.0.0.1:5000", "", 9)
    again = load_settings(env)
    assert again.memory_budget_bytes == 32 << 20
    assert again.flush_bytes == 32 << 20  # never above the share
    assert (again.flush_lanes, again.workers, again.listen) == (3, 1, "127.0.0.1:5000")
    assert again.database_url == "postgresql:///db" and again.allow_open_network
    assert again.http_listen == ""
    assert env[WORKER_ENV] == "1:9"
