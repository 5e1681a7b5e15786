"""Regenerate the dashboard's API types from the server's OpenAPI schema, in one command:

    python -m tracker_server.http.openapi_export

writes the schema of the routes (``app.api_schema``, what every server publishes at
``/api/openapi.json``) to ``tracker_server/dashboard/openapi.json``, then runs
``npm run gen:api`` there, which turns that snapshot into
``src/api/generated/types.gen.ts`` with @hey-api/openapi-ts. Both files are committed;
``tests/test_dashboard_api.py`` fails when either drifts from the routes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from typing import Any

from tracker_server.dashboard import DIST_DIR
from tracker_server.http.app import api_schema

DASHBOARD_DIR = DIST_DIR.parent
SNAPSHOT = DASHBOARD_DIR / "openapi.json"
"""The committed schema the generated types come from."""


def render(schema: dict[str, Any]) -> str:
    """The schema as the committed file holds it (stable key order, one trailing
    newline)."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _npm(*args: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not installed (Node >= 20.19): cannot generate the types")
    if not (DASHBOARD_DIR / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=DASHBOARD_DIR, check=True)
    subprocess.run([npm, *args], cwd=DASHBOARD_DIR, check=True)


def main(argv: list[str] | None = None) -> int:
    """Write the snapshot and regenerate the types (``--schema-only``: the snapshot)."""
    parser = argparse.ArgumentParser(prog="python -m tracker_server.http.openapi_export",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema-only", action="store_true",
                        help="write openapi.json but do not run npm")
    args = parser.parse_args(argv)
    SNAPSHOT.write_text(render(api_schema()), encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
    if not args.schema_only:
        _npm("run", "gen:api")
        print(f"regenerated {DASHBOARD_DIR / 'src' / 'api' / 'generated'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
