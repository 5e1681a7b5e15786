"""``tracker-server migrate``: apply pending schema migrations and exit.

The server migrates on start too (under an advisory lock, so replicas never race);
this command lets a deployment run the migrations on their own first — a Kubernetes
Job before a rollout, a release step — and fail early, before any replica restarts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

from tracker_server.config import load_settings
from tracker_server.storage.migrate import load_migrations, migrate


def build_parser() -> argparse.ArgumentParser:
    """Options of ``tracker-server migrate``."""
    p = argparse.ArgumentParser(prog="tracker-server migrate", description=__doc__)
    p.add_argument("--database-url", help="PostgreSQL conninfo (DATABASE_URL); "
                   "omitted: the embedded PostgreSQL in the data dir")
    p.add_argument("--data-dir", type=Path, help="TRACKER_DATA_DIR")
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``tracker-server migrate``; the exit code."""
    args = build_parser().parse_args(argv)
    overrides = {"database_url": args.database_url, "data_dir": args.data_dir}
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        print(f"tracker-server migrate: {exc}", file=sys.stderr)
        return 2
    embedded = None
    if settings.database_url:
        conninfo = settings.database_url
    else:
        from tracker_server.storage.embedded import start_embedded

        conninfo, embedded = start_embedded(settings.data_dir)
    try:
        applied = migrate(conninfo)
    except psycopg.Error as exc:
        print(f"tracker-server migrate: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.cleanup()
    latest = max((m.version for m in load_migrations()), default=0)
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))}; schema at version {latest}")
    else:
        print(f"nothing to apply; schema at version {latest}")
    return 0
