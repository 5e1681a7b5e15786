"""The role table covers exactly the methods that exist, and the docs show it."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

import tracker_proto.v1
from tracker_server.domain.access import METHOD_ROLES, UNLISTED_ROLE, Role, required_role
from tracker_server.server import SERVICE_NAMES

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
_BEGIN, _END = "<!-- role-table: begin -->", "<!-- role-table: end -->"


def _descriptor_modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(tracker_proto.v1.__path__)
             if m.name.endswith("_pb2")]
    return [importlib.import_module(f"tracker_proto.v1.{n}") for n in names] + [
        health_pb2, reflection_pb2]


def _served_methods() -> set[str]:
    """Every method of every service in the generated descriptors, ``/pkg.Svc/Method``."""
    return {f"/{service.full_name}/{method.name}"
            for module in _descriptor_modules()
            for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods}


def test_every_method_has_a_role_and_every_entry_is_a_method() -> None:
    served, listed = _served_methods(), set(METHOD_ROLES)
    assert not served - listed, f"methods without a role: {sorted(served - listed)}"
    assert not listed - served, f"roles for methods that do not exist: {sorted(listed - served)}"


def test_the_walk_sees_every_tracker_service_the_server_registers() -> None:
    walked = {m.split("/")[1] for m in _served_methods()}
    assert set(SERVICE_NAMES) <= walked
    assert walked - set(SERVICE_NAMES) == {"grpc.health.v1.Health",
                                           "grpc.reflection.v1alpha.ServerReflection"}


def test_only_health_is_open() -> None:
    open_methods = {m for m, role in METHOD_ROLES.items() if role is None}
    assert {m.split("/")[1] for m in open_methods} == {"grpc.health.v1.Health"}


def test_unlisted_methods_need_admin_even_on_read_only_services() -> None:
    assert UNLISTED_ROLE is Role.ADMIN
    assert required_role("/tracker.v1.MetricsQueryService/DeleteAllSeries") is Role.ADMIN
    assert required_role("/tracker.v1.ExperimentService/GetSecrets") is Role.ADMIN
    assert required_role("/tracker.v1.KeyService/CreateKey") is Role.ADMIN
    assert required_role("/grpc.health.v1.Health/Shutdown") is Role.ADMIN
    assert required_role("") is Role.ADMIN
    assert required_role("/grpc.health.v1.Health/Check") is None
    assert required_role("/tracker.v1.IngestService/Stream") is Role.OPERATOR
    assert required_role("/tracker.v1.ExperimentService/GetRun") is Role.VIEWER


def role_table_markdown() -> str:
    """The docs' role table, rendered from METHOD_ROLES (in its order)."""
    rows = ["| method | least role |", "|---|---|"]
    for method, role in METHOD_ROLES.items():
        rows.append(f"| `{method.lstrip('/')}` | "
                    f"{'none (no key)' if role is None else f'`{role.label}`'} |")
    return "\n".join(rows)


def test_operations_doc_shows_the_table_from_the_code() -> None:
    text = DOC.read_text()
    assert _BEGIN in text and _END in text, f"{DOC} lacks the {_BEGIN} ... {_END} markers"
    shown = text.split(_BEGIN, 1)[1].split(_END, 1)[0].strip()
    expected = role_table_markdown()
    assert shown == expected, (
        f"docs/operations.md's role table differs from domain/access.py; "
        f"put this between the markers:\n{expected}")
