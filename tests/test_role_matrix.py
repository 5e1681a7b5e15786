"""Every RPC, called with no key and with a viewer, an operator and an admin key against
a real server with ``auth=required``: allowed or refused exactly as METHOD_ROLES says.

"Allowed" is any status but PERMISSION_DENIED / UNAUTHENTICATED: the requests are empty,
so most allowed calls end with INVALID_ARGUMENT or NOT_FOUND, which is the point — the
call got past the role check.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

import tracker_proto.v1
from tests.support import ServerThread
from tests.test_auth import make_key, md
from tracker_server.config import Settings
from tracker_server.domain.access import METHOD_ROLES, Role

REFUSED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


def _methods() -> list[MethodDescriptor]:
    modules = [importlib.import_module(f"tracker_proto.v1.{m.name}")
               for m in pkgutil.iter_modules(tracker_proto.v1.__path__)
               if m.name.endswith("_pb2")] + [health_pb2, reflection_pb2]
    return [method for module in modules
            for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods]


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _status(channel: grpc.Channel, method: MethodDescriptor, metadata: Any) -> grpc.StatusCode:
    """Call ``method`` with an empty request; the status it ends with."""
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {"request_serializer": request_cls.SerializeToString,
              "response_deserializer": response_cls.FromString}
    try:
        if method.client_streaming and method.server_streaming:
            list(channel.stream_stream(_path(method), **kwargs)(
                iter(()), metadata=metadata, timeout=20))
        elif method.server_streaming:
            responses: Any = channel.unary_stream(_path(method), **kwargs)(
                request_cls(), metadata=metadata, timeout=20)
            next(responses, None)  # Watch never ends by itself: the first answer will do
            responses.cancel()
        else:
            channel.unary_unary(_path(method), **kwargs)(
                request_cls(), metadata=metadata, timeout=20)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


@pytest.fixture
def auth_server(settings: Settings) -> Iterator[ServerThread]:
    srv = ServerThread(replace(settings, auth="required"))
    try:
        yield srv
    finally:
        srv.stop()


def test_every_rpc_against_every_role(auth_server: ServerThread, database_url: str) -> None:
    methods = _methods()
    assert {_path(m) for m in methods} == set(METHOD_ROLES)  # the matrix covers the table
    callers: dict[str, tuple[Role | None, Any]] = {"no key": (None, ())}
    for key_role in Role:
        callers[key_role.label] = (key_role, md(make_key(database_url, key_role.label)))
    wrong: list[str] = []
    with grpc.insecure_channel(auth_server.address) as channel:
        for method in methods:
            needed = METHOD_ROLES[_path(method)]
            for name, (role, metadata) in callers.items():
                code = _status(channel, method, metadata)
                if needed is None:
                    expected = "allowed"
                elif role is None:
                    expected = "UNAUTHENTICATED"
                else:
                    expected = "allowed" if role >= needed else "PERMISSION_DENIED"
                got = "allowed" if code not in REFUSED else code.name
                if got != expected:
                    wrong.append(f"{_path(method)} as {name}: {code.name}, expected {expected}")
    assert not wrong, "\n".join(wrong)
