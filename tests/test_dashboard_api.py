"""The dashboard's API types stay generated from the server's schema: the committed
OpenAPI snapshot is the schema of the routes (and what a server publishes), and the
committed TypeScript types are what @hey-api/openapi-ts makes of that snapshot.

(The generated-types check needs npm and lives in ``test_dashboard_bundle.py``, which
installs the dashboard's dependencies once.) Fix a failure with
``python -m tracker_server.http.openapi_export`` and commit
``tracker_server/dashboard/openapi.json`` and ``src/api/generated/``.
"""

from __future__ import annotations

import json

import httpx

from tracker_server.http.app import api_schema
from tracker_server.http.openapi_export import SNAPSHOT, render

FIX = "run `python -m tracker_server.http.openapi_export` and commit the result"


def test_committed_schema_is_the_schema_of_the_routes() -> None:
    assert SNAPSHOT.read_text(encoding="utf-8") == render(api_schema()), (
        f"tracker_server/dashboard/openapi.json is stale: {FIX}")


def test_server_publishes_the_committed_schema(hc: httpx.Client) -> None:
    served = hc.get("/api/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_series_schema_describes_the_band() -> None:
    series = json.loads(SNAPSHOT.read_text())["components"]["schemas"]["SeriesOut"]
    assert {"min_values", "max_values"} <= set(series["properties"])
    op = json.loads(SNAPSHOT.read_text())["paths"]["/api/v1/runs/{run_id}/metrics/{key}"]["get"]
    assert op["operationId"] == "get_series"
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SeriesList"}
