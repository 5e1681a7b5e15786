"""gRPC server reflection, as grpcurl uses it: list the services, then build the API's
descriptors from the server alone; behind the same key check as every tracker method."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.support import ServerThread
from tests.test_auth import make_key, md
from tracker_server.config import Settings
from tracker_server.server import SERVICE_NAMES

pytestmark = pytest.mark.timeout(60)


def _list_services(channel: grpc.Channel, metadata: object = None) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [response] = list(stub.ServerReflectionInfo(iter([request]), metadata=metadata,
                                                timeout=10))
    return [s.name for s in response.list_services_response.service]


@pytest.fixture
def keyed(settings: Settings) -> Iterator[ServerThread]:
    srv = ServerThread(replace(settings, auth="required"))
    try:
        yield srv
    finally:
        srv.stop()


def test_reflection_lists_and_describes_the_api(keyed: ServerThread,
                                               database_url: str) -> None:
    token = make_key(database_url, "viewer")
    with grpc.insecure_channel(keyed.address) as channel:
        listed = _list_services(channel, md(token))
        assert set(SERVICE_NAMES) <= set(listed)
        assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= set(
            listed)
        # What grpcurl does next: fetch the file descriptors and resolve a method.
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="tracker.v1.IngestService")
        [response] = list(stub.ServerReflectionInfo(iter([request]), metadata=md(token),
                                                    timeout=10))
        files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
                 for raw in response.file_descriptor_response.file_descriptor_proto]
        services = {s.name: s for f in files for s in f.service}
        assert {m.name for m in services["IngestService"].method} == {"Stream", "LogMetrics"}


def test_reflection_descriptor_database_resolves_every_method(
    settings: Settings,
) -> None:
    """With auth off (loopback), the reflection client's descriptor database, the way
    generic clients build their pool, finds every tracker method and its types."""
    srv = ServerThread(settings)
    try:
        with grpc.insecure_channel(srv.address) as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            pool = descriptor_pool.DescriptorPool(database)
            for name in SERVICE_NAMES:
                service = pool.FindServiceByName(name)
                assert service.methods, name
                for method in service.methods:
                    assert method.input_type.full_name.startswith(("tracker.v1.", "google."))
            query = pool.FindServiceByName("tracker.v1.MetricsQueryService")
            assert "GetMetricSeries" in {m.name for m in query.methods}
    finally:
        srv.stop()


def test_reflection_needs_a_key_when_keys_are_required(keyed: ServerThread,
                                                       database_url: str) -> None:
    with grpc.insecure_channel(keyed.address) as channel:
        with pytest.raises(grpc.RpcError) as missing:
            _list_services(channel)
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as wrong:
            _list_services(channel, md("trk_000000000000_" + "x" * 43))
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _list_services(channel, md(make_key(database_url, "viewer")))


def test_reflection_can_be_turned_off(settings: Settings) -> None:
    srv = ServerThread(replace(settings, reflection=False))
    try:
        with grpc.insecure_channel(srv.address) as channel, pytest.raises(
                grpc.RpcError) as off:
            _list_services(channel)
        # Not registered: like any unknown method (needs ADMIN in the role table, but
        # auth is off here), gRPC answers UNIMPLEMENTED.
        assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        srv.stop()
