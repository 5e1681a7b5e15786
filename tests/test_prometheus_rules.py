"""deploy/grafana/tracker-dashboard.json and deploy/prometheus/alerts.yaml cannot drift
from the server: every metric and label they use appears in a real scrape of
``GET /metrics``; the rules parse, and pass ``promtool check rules`` and the rule unit
tests (``promtool test rules``) where promtool is installed (Debian's ``prometheus``;
``.ci/run`` installs it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from prometheus_client.samples import Sample

from tests.conftest import TEMPLATE
from tests.prometheus_support import names, scrape
from tests.stream_writer import Writer
from tests.support import Api, ServerThread
from tracker_server.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "tracker-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"

_METRIC = re.compile(r"\b(?:tracker|target)_[A-Za-z0-9_]+\b")
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
ADDED_BY_PROMETHEUS = {"job", "instance", "le"}
"""Labels the scrape itself adds (``le`` is the histogram's own)."""

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (Debian: prometheus)")


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in board["templating"]["list"]
              if v["type"] == "query"]
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [r for g in yaml.safe_load(ALERTS.read_text())["groups"]
                                   for r in g["rules"]]
    return rules


def used_metrics(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in _METRIC.findall(e)}


def used_labels(exprs: list[str]) -> set[str]:
    labels = {label.strip() for e in exprs for group in _BY.findall(e)
              for label in group.split(",") if label.strip()}
    labels |= {m for e in exprs for m in _MATCHER.findall(e)}
    return labels - ADDED_BY_PROMETHEUS


@pytest.fixture(scope="module")
def real_scrape(tmp_path_factory: pytest.TempPathFactory,
                pg_admin_url: str, template_url: str) -> Iterator[list[Sample]]:
    """One scrape of a server that ingested a stream and answered gRPC and HTTP calls."""
    dbname = f"prom_rules_{os.getpid()}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {dbname} TEMPLATE {TEMPLATE}")
    url = psycopg.conninfo.make_conninfo(pg_admin_url, dbname=dbname)
    srv = ServerThread(Settings(listen="127.0.0.1:0", database_url=url,
                                data_dir=tmp_path_factory.mktemp("data"),
                                flush_interval_ms=20, db_pool_size=4, auth="off"))
    api = Api(srv.address)
    try:
        writer = Writer(srv.address, api.new_run(), rank=0, batches=5, per=100)
        writer.run(30)
        assert writer.acked == 5, writer.errors
        httpx.get(f"{srv.http_url}/api/v1/experiments", timeout=10).raise_for_status()
        yield scrape(srv.http_url)
    finally:
        api.close()
        srv.stop()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def test_the_dashboard_uses_only_metrics_and_labels_the_server_exposes(
    real_scrape: list[Sample],
) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    exposed = names(real_scrape)
    missing = used_metrics(exprs) - exposed
    assert not missing, f"dashboard metrics the server does not expose: {sorted(missing)}"
    labels = {k for s in real_scrape for k in s.labels} | {"worker"}
    assert not used_labels(exprs) - labels, sorted(used_labels(exprs) - labels)


def test_the_alerts_use_only_metrics_and_labels_the_server_exposes(
    real_scrape: list[Sample],
) -> None:
    exprs = [r["expr"] for r in alert_rules()]
    exposed = names(real_scrape)
    missing = used_metrics(exprs) - exposed
    assert not missing, f"alert metrics the server does not expose: {sorted(missing)}"
    labels = {k for s in real_scrape for k in s.labels}
    assert not used_labels(exprs) - labels, sorted(used_labels(exprs) - labels)


def test_the_alerts_cover_what_operators_need() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert {"TrackerDatabaseUnavailable", "TrackerFlushFailures", "TrackerIngestBudgetNearFull",
            "TrackerIngestLag", "TrackerSlowDowns"} <= set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name


def test_the_dashboard_is_well_formed() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in board["panels"]:
        grid = p["gridPos"]
        assert grid["x"] + grid["w"] <= 24, p["title"]
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "job", "instance"}
    # Every query filters on the chosen job and pods.
    for expr in dashboard_exprs():
        for selector in re.findall(r"(?:tracker|target)_[A-Za-z0-9_]+(\{[^}]*\})?", expr):
            if "label_values" not in expr:
                assert 'job=~"$job"' in selector and 'instance=~"$instance"' in selector, expr


def test_metric_names_in_expressions_are_found() -> None:
    """The extraction itself (else the drift checks would pass on nothing)."""
    expr = ('sum by (job, rpc_method) (rate(tracker_rpc_duration_milliseconds_count'
            '{code!="OK", rpc_method!="/tracker.v1.IngestService/Stream"}[5m]))')
    assert used_metrics([expr]) == {"tracker_rpc_duration_milliseconds_count"}
    assert used_labels([expr]) == {"rpc_method", "code"}


@needs_promtool
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(ALERTS)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", ALERT_TESTS.name],
                            cwd=ALERT_TESTS.parent, capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
