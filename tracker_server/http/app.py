"""The HTTP application: REST API under /api/v1, health, API description, dashboard.

``create_app`` wires the same domain services, authenticator and rate limiters the
gRPC servicers use; ``serving.start_http`` runs it with uvicorn on the server's loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import HTMLResponse, Response

from tracker_server.config import Settings, cors_origins, http_body_limit
from tracker_server.http import docs_page, errors, schemas
from tracker_server.http.context import DEFAULT_DIST, HttpContext, HttpOptions, RateLimits
from tracker_server.http.encoding import ENCODING_DOC, JsonResponse
from tracker_server.http.middleware import FrontDoor
from tracker_server.http.routes import (
    artifacts,
    experiments,
    health,
    metrics,
    prometheus,
    runs,
    session,
)
from tracker_server.http.security import cors_options
from tracker_server.http.sessions import SessionCodec
from tracker_server.http.static import DashboardFiles
from tracker_server.storage.server_state import Readiness
from tracker_server.telemetry import Telemetry
from tracker_server.transport.auth import Authenticator

if TYPE_CHECKING:
    from tracker_server.http.prometheus import Exposition
    from tracker_server.server import Services

ROUTERS = (experiments.router, runs.router, metrics.router, artifacts.router, session.router,
           health.router, prometheus.router)
"""Every router of the app (each carries its full path prefix)."""

DESCRIPTION = ("REST API of tracker: experiments, runs and metrics, the same operations "
               "and rules as the gRPC API. Authenticate with `X-API-Key: <key>` or "
               "`Authorization: Bearer <key>`, or log in (POST /api/v1/session) for a "
               "session cookie; state-changing requests with the cookie send "
               "`X-CSRF-Token`. ")


def create_app(
    services: Services,
    auth: Authenticator,
    limits: RateLimits,
    settings: Settings,
    *,
    session_secret: bytes,
    ready: Callable[[], Awaitable[Readiness]],
    telemetry: Telemetry | None = None,
    dist_dir: Path | None = None,
    metrics: Exposition | None = None,
) -> FastAPI:
    """The ASGI app of one server; ``metrics`` serves ``GET /metrics``."""
    options = HttpOptions(
        body_limit_bytes=http_body_limit(settings),
        cors_origins=cors_origins(settings),
        tls=bool(settings.tls_cert),
        dist_dir=dist_dir or DEFAULT_DIST,
    )
    telemetry = telemetry or Telemetry()
    app = _bare_app()
    app.state.tracker = HttpContext(
        services=services, auth=auth, limits=limits, options=options,
        sessions=SessionCodec(session_secret, settings.http_session_ttl_s),
        telemetry=telemetry, ready=ready, metrics=metrics,
        metrics_require_key=settings.metrics_require_key)
    for router in ROUTERS:
        app.include_router(router)
    _describe(app)
    errors.install(app)
    app.router.default = DashboardFiles(options.dist_dir)
    if options.cors_origins:
        app.add_middleware(CORSMiddleware, **cors_options(options.cors_origins))
    # A 2,000-point series with wall times is ~100 KB of JSON, ~25 KB gzipped.
    app.add_middleware(GZipMiddleware, minimum_size=1000, compresslevel=5)
    app.add_middleware(FrontDoor, telemetry=telemetry, body_limit_bytes=options.body_limit_bytes,
                       tls=options.tls)
    return app


def _schema(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema of ``app``: 400 problem instead of FastAPI's 422, and the
    hand-parsed metrics body."""
    schema = get_openapi(title=app.title, version=app.version,
                         description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    extra = schemas.MetricsIn.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(extra.pop("$defs", {}))
    components["MetricsIn"] = extra
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for item in schema.get("paths", {}).values():
        for op in item.values():
            responses = op.get("responses", {})
            if responses.pop("422", None) is not None:
                responses["400"] = {
                    "description": "invalid request (application/problem+json)",
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Problem"}}}}
    return schema


def _operation_id(route: APIRoute) -> str:
    """The route function's name (``get_series``): generated clients name their types
    after it (``GetSeriesData``), and the docs page its anchors."""
    return route.name


def _bare_app() -> FastAPI:
    return FastAPI(title="tracker", version="v1", description=DESCRIPTION + ENCODING_DOC,
                   docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                   default_response_class=JsonResponse,
                   generate_unique_id_function=_operation_id)


def api_schema() -> dict[str, Any]:
    """The OpenAPI schema every server publishes at /api/openapi.json, built from the
    routes alone (no services, no database): what the dashboard's wire types are
    generated from (``python -m tracker_server.http.openapi_export``)."""
    app = _bare_app()
    for router in ROUTERS:
        app.include_router(router)
    return _schema(app)


def _describe(app: FastAPI) -> None:
    """The schema (see ``_schema``) and the docs page."""

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            app.openapi_schema = _schema(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override

    @cache
    def page() -> str:
        return docs_page.render(app.openapi())

    @app.get("/api/docs", include_in_schema=False)
    async def docs() -> Response:
        return HTMLResponse(page())

    @app.get("/api/docs.css", include_in_schema=False)
    async def docs_css() -> Response:
        return Response(docs_page.CSS, media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})


def routes_of(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route of the app, HEAD left out (it goes with
    GET); the role-table test walks them."""
    every = [*app.routes, *(route for router in ROUTERS for route in router.routes)]
    return [(verb, path) for route in every
            if (path := getattr(route, "path", None)) is not None
            for verb in sorted(getattr(route, "methods", None) or ()) if verb != "HEAD"]
