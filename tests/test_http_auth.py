"""HTTP auth against a real server with ``auth=required``: header keys, the session
cookie and its CSRF token, roles from the one role table, revocation, origins, CORS,
security headers, TLS."""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import psycopg
import pytest

from tests.http_support import API, client, fields, new_experiment, new_run, ok, problem
from tests.support import ServerThread
from tests.test_auth import make_key
from tests.test_tls import Pki, pki  # noqa: F401  (the fixture)
from tracker_server.config import Settings
from tracker_server.domain.access import METHOD_ROLES, Role
from tracker_server.http.rpc_map import ROUTE_RPCS
from tracker_server.http.security import CSP
from tracker_server.http.sessions import COOKIE_NAME, CSRF_HEADER


@pytest.fixture
def auth_server(settings: Settings) -> Iterator[ServerThread]:
    srv = ServerThread(replace(settings, auth="required", key_cache_ttl_s=0.3))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    assert settings.database_url
    return {role: make_key(settings.database_url, role) for role in
            ("viewer", "operator", "admin")}


def _key_id(token: str) -> str:
    return token.split("_")[1]


def test_header_keys(auth_server: ServerThread, keys: dict[str, str]) -> None:
    with client(auth_server) as c:
        missing = problem(c.get(f"{API}/experiments"), 401)
        assert "X-API-Key" in missing["detail"] and missing["code"] == "UNAUTHENTICATED"
        assert c.get(f"{API}/experiments").headers["www-authenticate"].startswith("Bearer")
        assert "malformed" in problem(c.get(f"{API}/experiments",
                                            headers={"X-API-Key": "nope"}), 401)["detail"]
        fake = f"trk_{'0' * 12}_{'a' * 43}"
        assert "unknown" in problem(c.get(f"{API}/experiments",
                                          headers={"X-API-Key": fake}), 401)["detail"]
        problem(c.get(f"{API}/experiments", headers={"Authorization": "Basic eDp5"}), 401)
        ok(c.get(f"{API}/experiments", headers={"X-API-Key": keys["viewer"]}))
        ok(c.get(f"{API}/experiments", headers={"Authorization": f"Bearer {keys['viewer']}"}))
        # Health and the API description need no key.
        ok(c.get("/health"))
        ok(c.get("/health/ready"))
        ok(c.get("/api/openapi.json"))


def test_viewer_cannot_create_or_finish_anything(auth_server: ServerThread,
                                                 keys: dict[str, str]) -> None:
    with client(auth_server, **{"X-API-Key": keys["operator"]}) as op:
        run = new_run(op)
    rid, eid = run["run_id"], run["experiment_id"]
    writes = [
        ("POST", f"{API}/experiments", {"name": "x"}),
        ("PATCH", f"{API}/experiments/{eid}", {"status": "archived"}),
        ("POST", f"{API}/runs", {"experiment_id": eid}),
        ("POST", f"{API}/runs/{rid}/finish", {"status": "finished"}),
        ("POST", f"{API}/runs/{rid}/params", {"params": {"a": "1"}}),
        ("PATCH", f"{API}/runs/{rid}/tags", {"set": {"a": "1"}}),
        ("POST", f"{API}/runs/{rid}/metrics", {"keys": ["x"], "key_index": [0],
                                                "steps": [1], "values": [1.0]}),
    ]
    with client(auth_server, **{"X-API-Key": keys["viewer"]}) as viewer:
        for verb, url, body in writes:
            denied = problem(viewer.request(verb, url, json=body), 403)
            assert "viewer" in denied["detail"] and denied["code"] == "PERMISSION_DENIED"
        assert ok(viewer.get(f"{API}/runs/{rid}"))["status"] == "running"
        assert ok(viewer.get(f"{API}/runs/{rid}/metrics"))["keys"] == []


def _request_of(verb: str, path: str) -> tuple[str, str, dict[str, Any] | None]:
    url = (path.replace("{experiment_id}", str(uuid.uuid4()))
           .replace("{run_id}", str(uuid.uuid4())).replace("{key:path}", "a/b"))
    return verb, url, {} if verb in ("POST", "PATCH") else None


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_every_route_follows_the_role_table(auth_server: ServerThread, keys: dict[str, str],
                                            role: str) -> None:
    """Allowed means anything but 401/403: the requests are empty, so most allowed ones
    end with 400 or 404, past the role check."""
    with client(auth_server, **{"X-API-Key": keys[role]}) as c:
        for (verb, path), rpc in ROUTE_RPCS.items():
            if rpc.method is None:
                continue
            needed = METHOD_ROLES[rpc.method]
            assert needed is not None
            method, url, body = _request_of(verb, path)
            status = c.request(method, url, json=body).status_code
            allowed = Role.parse(role) >= needed
            assert (status not in (401, 403)) == allowed, (verb, path, role, status)


def _login(c: httpx.Client, key: str) -> dict[str, Any]:
    info: dict[str, Any] = ok(c.post(f"{API}/session", json={"api_key": key}))
    return info


def test_cookie_session_with_csrf(auth_server: ServerThread, keys: dict[str, str]) -> None:
    with client(auth_server) as c:
        problem(c.get(f"{API}/session"), 401)
        problem(c.post(f"{API}/session", json={"api_key": "trk_bad"}), 401)
        response = c.post(f"{API}/session", json={"api_key": keys["operator"]})
        info = ok(response)
        assert info == {"role": "operator", "key_id": _key_id(keys["operator"]),
                        "csrf_token": info["csrf_token"], "auth": True}
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE_NAME}=") and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Path=/api" in cookie and "Secure" not in cookie  # plain HTTP here
        assert keys["operator"] not in cookie  # the cookie never holds the key
        assert ok(c.get(f"{API}/session")) == info
        ok(c.get(f"{API}/experiments"))
        no_csrf = problem(c.post(f"{API}/experiments", json={"name": "a"}), 403)
        assert CSRF_HEADER in no_csrf["detail"]
        problem(c.post(f"{API}/experiments", json={"name": "a"},
                       headers={CSRF_HEADER: "x" + info["csrf_token"][1:]}), 403)
        ok(c.post(f"{API}/experiments", json={"name": "a"},
                  headers={CSRF_HEADER: info["csrf_token"]}), 201)
        problem(c.delete(f"{API}/session"), 403)  # logout is state-changing too
        out = c.delete(f"{API}/session", headers={CSRF_HEADER: info["csrf_token"]})
        assert out.status_code == 204 and 'Max-Age=0' in out.headers["set-cookie"]
        problem(c.get(f"{API}/experiments"), 401)
    with client(auth_server) as c:
        c.cookies.set(COOKIE_NAME, "e30.c2ln")  # a forged, unsigned session
        problem(c.get(f"{API}/experiments"), 401)


def test_viewer_session_cannot_write(auth_server: ServerThread, keys: dict[str, str]) -> None:
    with client(auth_server) as c:
        info = _login(c, keys["viewer"])
        assert info["role"] == "viewer"
        problem(c.post(f"{API}/experiments", json={"name": "a"},
                       headers={CSRF_HEADER: info["csrf_token"]}), 403)
        ok(c.get(f"{API}/experiments"))


def test_revoked_key_ends_its_sessions_within_the_cache_ttl(
        auth_server: ServerThread, keys: dict[str, str], settings: Settings) -> None:
    with client(auth_server) as c:
        _login(c, keys["admin"])
        ok(c.get(f"{API}/experiments"))
        with psycopg.connect(settings.database_url or "") as conn:
            conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s",
                         (_key_id(keys["admin"]),))
        time.sleep(0.5)  # > key_cache_ttl_s
        assert "revoked" in problem(c.get(f"{API}/experiments"), 401)["detail"]
        assert "revoked" in problem(c.get(f"{API}/session"), 401)["detail"]
        problem(c.get(f"{API}/experiments", headers={"X-API-Key": keys["admin"]}), 401)


def test_auth_off_session_is_anonymous_admin_with_csrf(server: ServerThread) -> None:
    with client(server) as c:
        info = ok(c.get(f"{API}/session"))
        assert info["role"] == "admin" and info["key_id"] is None and info["auth"] is False
        assert info["csrf_token"] and COOKIE_NAME in c.cookies
        assert ok(c.get(f"{API}/session")) == info  # the same session on the next call
        problem(c.post(f"{API}/experiments", json={"name": "a"}), 403)  # cookie: CSRF
        ok(c.post(f"{API}/experiments", json={"name": "a"},
                  headers={CSRF_HEADER: info["csrf_token"]}), 201)
    with client(server) as script:  # no cookie: a script on loopback
        new_experiment(script)


def test_cross_origin_writes_are_refused(auth_server: ServerThread,
                                         keys: dict[str, str]) -> None:
    with client(auth_server, **{"X-API-Key": keys["operator"]}) as c:
        evil = problem(c.post(f"{API}/experiments", json={"name": "a"},
                              headers={"Origin": "http://evil.example"}), 403)
        assert "evil.example" in evil["detail"]
        problem(c.post(f"{API}/experiments", json={"name": "a"},
                       headers={"Sec-Fetch-Site": "cross-site"}), 403)
        ok(c.post(f"{API}/experiments", json={"name": "a"},
                  headers={"Origin": auth_server.http_url}), 201)
        # Reads are not refused (CORS decides whether a page may see the answer).
        get = c.get(f"{API}/experiments", headers={"Origin": "http://evil.example"})
        assert get.status_code == 200 and "access-control-allow-origin" not in get.headers


def test_cors_allowlist(settings: Settings, keys: dict[str, str]) -> None:
    allowed = "http://dash.example:3000"
    srv = ServerThread(replace(settings, auth="required", http_cors_origins=allowed))
    try:
        with client(srv) as c:
            pre = c.options(f"{API}/experiments", headers={
                "Origin": allowed, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-csrf-token"})
            assert pre.status_code == 200
            assert pre.headers["access-control-allow-origin"] == allowed
            assert pre.headers["access-control-allow-credentials"] == "true"
            bad = c.options(f"{API}/experiments", headers={
                "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
            assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers
            got = c.get(f"{API}/experiments", headers={"Origin": allowed,
                                                        "X-API-Key": keys["viewer"]})
            assert got.status_code == 200
            assert got.headers["access-control-allow-origin"] == allowed
            assert got.headers["vary"].lower().find("origin") >= 0
            made = c.post(f"{API}/experiments", json={"name": "x"},
                          headers={"Origin": allowed, "X-API-Key": keys["operator"]})
            assert made.status_code == 201
            other = c.get(f"{API}/experiments", headers={"Origin": "http://evil.example",
                                                          "X-API-Key": keys["viewer"]})
            assert "access-control-allow-origin" not in other.headers
    finally:
        srv.stop()


def test_security_headers_on_every_response(hc: httpx.Client) -> None:
    for response in (hc.get("/health"), hc.get(f"{API}/experiments"), hc.get(f"{API}/nope"),
                     hc.get("/"), hc.get("/api/docs"), hc.get("/api/openapi.json"),
                     hc.post(f"{API}/runs", json={"experiment_id": "x"}),
                     hc.put(f"{API}/experiments")):
        assert response.headers["content-security-policy"] == CSP, response.url
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-request-id"]
    echoed = hc.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    failed = hc.get(f"{API}/runs/not-a-uuid", headers={"X-Request-ID": "req-9"})
    assert problem(failed, 400)["request_id"] == "req-9"


def _trusting(pki: Pki, client: bool = False) -> ssl.SSLContext:  # noqa: F811
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client:
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


def test_tls_secure_cookie_and_mtls(settings: Settings, pki: Pki) -> None:  # noqa: F811
    tls = replace(settings, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))
    srv = ServerThread(tls)
    try:
        assert srv.http_url.startswith("https://")
        with httpx.Client(base_url=srv.http_url, verify=_trusting(pki)) as c:
            ok(c.get("/health"))
            response = c.get(f"{API}/session")
            assert "Secure" in response.headers["set-cookie"]
            assert response.headers["strict-transport-security"].startswith("max-age=")
        with httpx.Client(base_url=srv.http_url.replace("https", "http")) as plain, \
                pytest.raises(httpx.HTTPError):
            plain.get("/health")
    finally:
        srv.stop()
    srv = ServerThread(replace(tls, tls_client_ca=str(pki.ca)))
    try:
        with httpx.Client(base_url=srv.http_url, verify=_trusting(pki)) as anonymous, \
                pytest.raises(httpx.HTTPError):
            anonymous.get("/health")
        with httpx.Client(base_url=srv.http_url, verify=_trusting(pki, client=True)) as c:
            ok(c.get("/health"))
    finally:
        srv.stop()


def test_field_names_in_errors_are_the_rest_names(hc: httpx.Client) -> None:
    rid = new_run(hc)["run_id"]
    body = problem(hc.get(f"{API}/runs/{rid}/metrics/x", params={"method": "fancy"}), 400)
    assert fields(body) == ["method"]
    body = problem(hc.get(f"{API}/runs/{rid}/metrics/x", params={"start": 5, "end": 1}), 400)
    assert fields(body) == ["start"]
    body = problem(hc.get(f"{API}/runs", params={"experiment_id": "nope"}), 400)
    assert fields(body) == ["experiment_id"]
