"""The dashboard's files: the built bundle in ``tracker_server/dashboard/dist/``
(``tracker_server.dashboard.DIST_DIR``).

Served as the router's fallback (not as a catch-all route, so a wrong method on an API
route is still 405): a file of the bundle as it is, ``index.html`` for every other GET
outside ``/api`` (client-side routes), a problem 404 for unknown API paths. Vite names
files under ``assets/`` by content hash, so they are cached for a year; ``index.html``
and the rest are revalidated on every load (``no-cache``).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from tracker_server.dashboard import IMMUTABLE_PREFIX
from tracker_server.http.errors import problem

LONG_CACHE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
TEMPLATE = "/{path}"
"""The path template the log line and span give a dashboard file."""

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tracker: dashboard not built</title>
</head><body><h1>The dashboard bundle is not built</h1>
<p>This server has no <code>tracker_server/dashboard/dist/</code>. Build the dashboard
(see <code>tracker_server/dashboard/</code>) and restart the server.</p>
<p>The REST API works without it: <a href="/api/docs">/api/docs</a> describes it.</p>
</body></html>
"""


class DashboardFiles:
    """ASGI app for the requests no route matched."""

    def __init__(self, dist_dir: Path) -> None:
        self._dist = dist_dir.resolve()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["tracker_template"] = TEMPLATE
        response = self.response(Request(scope))
        await response(scope, receive, send)

    def response(self, request: Request) -> Response:
        """What a request for ``request.url.path`` gets."""
        path = request.url.path
        if request.method not in ("GET", "HEAD") or path == "/api" or path.startswith(
                ("/api/", "/health")):
            return problem(request, 404, f"no endpoint {request.method} {path}")
        index = self._dist / "index.html"
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, status_code=404,
                                headers={"Cache-Control": NO_CACHE})
        found = self._file(path.lstrip("/"))
        if found is not None:
            cache = LONG_CACHE if path.lstrip("/").startswith(IMMUTABLE_PREFIX) else NO_CACHE
            return FileResponse(found, headers={"Cache-Control": cache})
        if "." in path.rsplit("/", 1)[-1]:  # a missing file, not a client-side route
            return problem(request, 404, f"no file {path[:200]} in the dashboard bundle")
        return FileResponse(index, headers={"Cache-Control": NO_CACHE})

    def _file(self, relative: str) -> Path | None:
        if not relative:
            return None
        try:
            candidate = (self._dist / relative).resolve()
        except (OSError, ValueError):  # NUL bytes, names too long
            return None
        if not candidate.is_relative_to(self._dist) or not candidate.is_file():
            return None
        return candidate
