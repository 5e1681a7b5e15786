"""TLS and mutual TLS with a CA and certificates made in the test (127.0.0.1 SAN)."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import tracker_client
from tests.support import ServerThread, count_points
from tests.test_auth import make_key
from tracker_client import _env
from tracker_client._rpc import make_channel
from tracker_client.cli import main as cli_main
from tracker_proto.v1 import experiments_pb2, experiments_pb2_grpc
from tracker_server.config import Settings


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
           key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
           san: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject)).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate | None = None,
           key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("tracker test CA", ca_key, _name("tracker test CA"), ca_key, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), \
        ec.generate_private_key(ec.SECP256R1())
    san: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                   x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = _issue("localhost", ca_key, ca.subject, server_key, san=san)
    client = _issue("trainer", ca_key, ca.subject, client_key)
    return Pki(_write(d / "ca.pem", ca), _write(d / "server.pem", server),
               _write(d / "server.key", key=server_key), _write(d / "client.pem", client),
               _write(d / "client.key", key=client_key))


def _tls_server(settings: Settings, pki: Pki, **extra: object) -> ServerThread:
    return ServerThread(replace(settings, tls_cert=str(pki.server_cert),
                                tls_key=str(pki.server_key), **extra))  # type: ignore[arg-type]


@pytest.fixture
def tls_server(settings: Settings, pki: Pki) -> Iterator[ServerThread]:
    srv = _tls_server(settings, pki)
    try:
        yield srv
    finally:
        srv.stop()


def _list(channel: grpc.Channel, **kw: object) -> None:
    experiments_pb2_grpc.ExperimentServiceStub(channel).ListExperiments(
        experiments_pb2.ListExperimentsRequest(), timeout=5, **kw)


def test_client_logs_over_tls(tls_server: ServerThread, pki: Pki, tmp_path: Path,
                              database_url: str) -> None:
    opt = tracker_client.Options(spool_dir=tmp_path, recover_orphans=False,
                                 system_metrics_interval_s=None)
    with tracker_client.init(experiment="tls", server=tls_server.address, tls=str(pki.ca),
                             options=opt) as run:
        run.log({"loss": 0.5}, step=1)
        run.flush(timeout=20)
    assert count_points(database_url, run.run_id or "") == 1


def test_plaintext_client_and_untrusted_ca_fail(tls_server: ServerThread, pki: Pki) -> None:
    with grpc.insecure_channel(tls_server.address) as ch, pytest.raises(grpc.RpcError) as info:
        _list(ch)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # System roots do not know the test CA.
    with make_channel(tls_server.address, [], _env.TlsConfig()) as ch, \
            pytest.raises(grpc.RpcError) as info:
        _list(ch)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_cli_over_tls_with_an_api_key(settings: Settings, pki: Pki, database_url: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    token = make_key(database_url, "viewer")
    srv = _tls_server(settings, pki, auth="required")
    try:
        code = cli_main(["--server", srv.address, "--tls-ca", str(pki.ca), "--api-key", token,
                         "experiments", "ls"])
        assert code == 0, capsys.readouterr().err
        assert cli_main(["--server", srv.address, "--tls-ca", str(pki.ca),
                         "experiments", "ls"]) == 1
        assert "UNAUTHENTICATED" in capsys.readouterr().err
    finally:
        srv.stop()


def test_mutual_tls_requires_a_client_certificate(settings: Settings, pki: Pki,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    srv = _tls_server(settings, pki, tls_client_ca=str(pki.ca))
    try:
        monkeypatch.setenv("TRACKER_TLS_CA", str(pki.ca))
        with make_channel(srv.address, [], _env.tls_config()) as ch, \
                pytest.raises(grpc.RpcError) as info:
            _list(ch)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        monkeypatch.setenv("TRACKER_TLS_CLIENT_CERT", str(pki.client_cert))
        monkeypatch.setenv("TRACKER_TLS_CLIENT_KEY", str(pki.client_key))
        with make_channel(srv.address, [], _env.tls_config()) as ch:
            _list(ch)
    finally:
        srv.stop()
