"""Test support for the HTTP API: an httpx client on a real server, small helpers."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support import ServerThread

API = "/api/v1"


def client(server: ServerThread, **headers: str) -> httpx.Client:
    """A client of the server's HTTP port."""
    assert server.http_url, "HTTP is disabled on this server"
    return httpx.Client(base_url=server.http_url, timeout=30, headers=headers)


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that must have ``status``."""
    assert response.status_code == status, (response.status_code, response.text[:2000])
    return response.json() if response.content else None


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem document of an error response with ``status``."""
    assert response.status_code == status, (response.status_code, response.text[:2000])
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"] and body["title"], body
    assert body["type"].startswith("/api/docs#error-"), body
    return body


def fields(body: dict[str, Any]) -> list[str]:
    """The fields an error names."""
    return [e["field"] for e in body.get("errors", [])]


def new_experiment(c: httpx.Client, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """Create an experiment."""
    body = {"name": name or f"exp-{uuid.uuid4().hex[:8]}", **extra}
    result: dict[str, Any] = ok(c.post(f"{API}/experiments", json=body), 201)
    return result


def new_run(c: httpx.Client, experiment_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """Create a run (in a new experiment unless given)."""
    eid = experiment_id or new_experiment(c)["experiment_id"]
    result: dict[str, Any] = ok(c.post(f"{API}/runs", json={"experiment_id": eid, **extra}), 201)
    return result


def log(c: httpx.Client, run_id: str, **body: Any) -> dict[str, Any]:
    """POST a metrics batch, expecting success."""
    result: dict[str, Any] = ok(c.post(f"{API}/runs/{run_id}/metrics", json=body))
    return result
