"""deploy/k8s/: every overlay renders with ``kubectl kustomize``, every rendered object
validates offline against the Kubernetes schemas (kubernetes-validate, strict: unknown
fields fail) and yamllint, and the manifests agree with the code they deploy: ports,
probe services, the shutdown grace, setting names, the migrate subcommand.

The ServiceMonitor is a CRD (Prometheus Operator): kubernetes-validate has no schema for
it, so its schema check is skipped and its facts are checked here instead."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, validate
from yamllint import linter
from yamllint.config import YamlLintConfig

from tracker_server.config import Settings, env_var, load_settings
from tracker_server.server import SERVICE_NAMES
from tracker_server.supervisor import DRAIN_MARGIN_S

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = {"dev": "tracker-dev", "prod": "tracker"}
# The oldest Kubernetes the manifests target (gRPC probes are GA since 1.27) and the
# newest the validator knows.
K8S_VERSIONS = ("1.27", "1.37")
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
KNOWN = {env_var(f.name) for f in fields(Settings)}
# The HTTP server's listen setting (dashboard, REST, /metrics); the manifests declare it
# ahead of that server. Empty once Settings has it.
PENDING = {"TRACKER_HTTP_LISTEN"} - KNOWN
MiB = 1024 * 1024

needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl not installed; .ci/run installs Debian's kubernetes-client",
)


def render(overlay: str) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of one overlay, as objects."""
    out = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def rendered(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield request.param, render(request.param)


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def config(objs: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = one(objs, "ConfigMap")["data"]
    return data


def port_of(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


def mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, quantity
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def cores(quantity: str) -> float:
    """A CPU quantity (``250m``, ``"2"``) in cores."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def pod_spec(objs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objs, "Deployment", "tracker")["spec"]["template"]["spec"]
    return spec


# --- rendering and schemas --------------------------------------------------------------


@needs_kubectl
def test_overlay_validates_against_the_kubernetes_schemas(
    rendered: tuple[str, list[dict[str, Any]]]
) -> None:
    _, objs = rendered
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "Job", "NetworkPolicy",
            "HorizontalPodAutoscaler", "ServiceMonitor"} <= kinds
    for obj in objs:
        for version in K8S_VERSIONS:
            try:
                validate(obj, version, strict=True)
            except SchemaNotFoundError:
                assert (obj["apiVersion"], obj["kind"]) in CRDS, obj["kind"]
            except ValidationError as exc:
                path = ".".join(map(str, exc.path))
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} ({version}): "
                            f"{path}: {exc.message}")


def test_the_validator_rejects_what_it_should() -> None:
    """Strict validation fails an unknown field and a wrong type (so passing means
    something)."""
    deployment = yaml.safe_load((K8S / "base" / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "tracker-server:1"
    validate(deployment, K8S_VERSIONS[0], strict=True)
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "grpc"
    for bad in (typo, wrong):
        with pytest.raises(ValidationError):
            validate(bad, K8S_VERSIONS[0], strict=True)


@needs_kubectl
def test_yamllint_passes_sources_and_rendered_output() -> None:
    conf = YamlLintConfig(file=str(ROOT / "deploy" / ".yamllint.yaml"))
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in sorted(K8S.rglob("*.yaml"))}
    for overlay in OVERLAYS:
        texts[f"kubectl kustomize {overlay}"] = subprocess.run(
            ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
            capture_output=True, text=True, check=True, timeout=60).stdout
    problems = [f"{name}:{p.line}: {p.desc}" for name, text in texts.items()
                for p in linter.run(text, conf)]
    assert problems == []
    assert list(linter.run("a: 1\na: 2\n", conf))  # duplicate keys are caught


# --- facts against the code -------------------------------------------------------------


@needs_kubectl
def test_settings_exist_and_ports_agree(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objs = rendered
    settings = config(objs)
    assert set(settings) <= KNOWN | PENDING, set(settings) - KNOWN - PENDING
    loaded = load_settings(env=settings)  # the server would start with this
    assert loaded.listen == settings["TRACKER_LISTEN"] and loaded.auth == "required"
    grpc_port, http_port = port_of(settings["TRACKER_LISTEN"]), port_of(
        settings["TRACKER_HTTP_LISTEN"])
    container = pod_spec(objs)["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": grpc_port, "http": http_port}
    env = {e["name"] for e in container.get("env", [])}
    assert env <= KNOWN, env - KNOWN
    for svc in (o for o in objs if o["kind"] == "Service"):
        assert {p["name"]: p["targetPort"] for p in svc["spec"]["ports"]} == {
            "grpc": "grpc", "http": "http"}
        assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == ports
        labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()
    assert one(objs, "Service", "tracker-headless")["spec"]["clusterIP"] == "None"
    policy = one(objs, "NetworkPolicy")
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert set(ports.values()) <= allowed


@needs_kubectl
def test_probes_name_services_the_server_registers(
    rendered: tuple[str, list[dict[str, Any]]]
) -> None:
    _, objs = rendered
    container = pod_spec(objs)["containers"][0]
    grpc_port = port_of(config(objs)["TRACKER_LISTEN"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["grpc"]
        assert check["port"] == grpc_port
        assert check.get("service", "") in ("", *SERVICE_NAMES)
    assert container["readinessProbe"]["grpc"]["service"] == "tracker.v1.IngestService"


@needs_kubectl
def test_rollout_and_shutdown_timing(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, objs = rendered
    deployment = one(objs, "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1,
                                                               "maxUnavailable": 0}
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    pod = pod_spec(objs)
    sleep = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    grace = float(config(objs).get("TRACKER_SHUTDOWN_GRACE_S", Settings().shutdown_grace_s))
    # SIGTERM comes after preStop; the server then takes up to the grace for streams and
    # the last flush (RunningServer.stop), plus closing the pool, and the supervisor
    # waits that long for its workers before it kills them: SIGKILL must wait for it.
    assert pod["terminationGracePeriodSeconds"] >= float(sleep[1]) + grace + DRAIN_MARGIN_S
    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 1
    pdb = one(objs, "PodDisruptionBudget")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


@needs_kubectl
def test_resources_follow_the_memory_budget_and_the_workers(
    rendered: tuple[str, list[dict[str, Any]]]
) -> None:
    _, objs = rendered
    settings = load_settings(env=config(objs))
    # Explicit: 0 would start one worker per core of the node (no CPU limit to read).
    assert settings.workers >= 1
    workers = settings.workers
    budget = settings.memory_budget_bytes / MiB
    resources = pod_spec(objs)["containers"][0]["resources"]
    # docs/deploy.md, "Size": budget + 256 MiB per worker process (one measured at
    # ~100 MB idle and 160-175 MB after ingesting), twice that as the limit.
    assert mebibytes(resources["requests"]["memory"]) == budget + 256 * workers
    assert mebibytes(resources["limits"]["memory"]) == budget + 512 * workers
    # The 256 MiB hold the worker (at most 175 MB measured) and its full series cache.
    assert 175 + settings.series_cache_bytes / MiB <= 256
    assert "cpu" not in resources["limits"]
    # A worker uses at most about one core: requesting more than workers wastes it.
    assert cores(resources["requests"]["cpu"]) <= workers


@needs_kubectl
def test_flush_settings_are_the_measured_defaults(
    rendered: tuple[str, list[dict[str, Any]]]
) -> None:
    _, objs = rendered
    settings = load_settings(env=config(objs))
    defaults = Settings()
    assert settings.flush_interval_ms == defaults.flush_interval_ms  # group commit
    assert settings.flush_lanes == defaults.flush_lanes


@needs_kubectl
def test_secrets_migration_job_and_namespace(
    rendered: tuple[str, list[dict[str, Any]]]
) -> None:
    overlay, objs = rendered
    pod = pod_spec(objs)
    job = one(objs, "Job", "tracker-migrate")["spec"]["template"]["spec"]
    for spec in (pod, job):
        [db] = [e for e in spec["containers"][0]["env"] if e["name"] == "DATABASE_URL"]
        assert db["valueFrom"]["secretKeyRef"] == {"name": "tracker-db", "key": "DATABASE_URL"}
    assert job["containers"][0]["image"] == pod["containers"][0]["image"]
    assert job["containers"][0]["args"] == ["migrate"]
    assert job["restartPolicy"] == "Never"
    helped = subprocess.run([sys.executable, "-m", "tracker_server", "migrate", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "tracker-server migrate" in helped.stdout
    for obj in objs:
        assert obj["metadata"].get("namespace") == OVERLAYS[overlay], obj["kind"]
    if overlay == "prod":
        ingress = one(objs, "Ingress")
        assert ingress["spec"]["tls"][0]["secretName"] == "tracker-tls"
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        service = one(objs, "Service", backend["name"])
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


@needs_kubectl
def test_service_monitor_scrapes_metrics_once_per_pod(
    rendered: tuple[str, list[dict[str, Any]]]
) -> None:
    _, objs = rendered
    monitor = one(objs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in objs if s["kind"] == "Service"
                and selector.items() <= s["metadata"].get("labels", {}).items()]
    assert [s["metadata"]["name"] for s in selected] == ["tracker"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}
    assert endpoint["port"] == "http"
