"""``tracker-server points``: every stored point of some runs as CSV, on stdout.

The replacement for ``SELECT ... FROM metric_points`` in psql now that chunks are
codec payloads (migration 0013; docs/decisions/0003-chunk-encoding.md): one row per
stored point, earlier attempts and overwritten steps included, columns
run_id, key, rank, attempt, step, value, wall_ns, in write order per (run, key, rank,
attempt). Values are printed exactly (PostgreSQL's shortest round-trip form); NaN keeps
no payload in text. ``--key`` keeps only those keys.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import psycopg

from tracker_server.config import load_settings
from tracker_server.storage.points_export import materialize_points

_COPY_OUT = """
COPY (SELECT p.run_id, k.name AS key, p.rank, p.attempt, p.step, p.value, p.wall_ns
      FROM pg_temp.metric_points_decoded p JOIN metric_keys k USING (key_id)
      WHERE cardinality(%s::text[]) = 0 OR k.name = ANY(%s::text[])
      ORDER BY p.run_id, k.name, p.rank, p.attempt, p.seq)
TO STDOUT (FORMAT csv, HEADER)
"""


def build_parser() -> argparse.ArgumentParser:
    """Options of ``tracker-server points``."""
    p = argparse.ArgumentParser(prog="tracker-server points", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, metavar="RUN_ID",
                   help="a run id (repeat for several runs)")
    p.add_argument("--key", action="append", default=[], metavar="KEY",
                   help="only this metric key (repeat for several; default: all)")
    p.add_argument("--database-url", help="PostgreSQL conninfo (DATABASE_URL); "
                   "omitted: the embedded PostgreSQL in the data dir")
    p.add_argument("--data-dir", type=Path, help="TRACKER_DATA_DIR")
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``tracker-server points``; the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        runs = [uuid.UUID(r) for r in args.run]
    except ValueError:
        parser.error(f"--run needs run ids (UUIDs), got {args.run}")
    overrides = {"database_url": args.database_url, "data_dir": args.data_dir}
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        print(f"tracker-server points: {exc}", file=sys.stderr)
        return 2
    embedded = None
    if settings.database_url:
        conninfo = settings.database_url
    else:
        from tracker_server.storage.embedded import start_embedded

        conninfo, embedded = start_embedded(settings.data_dir)
    try:
        with psycopg.connect(conninfo) as conn:
            materialize_points(conn, runs)
            with conn.cursor().copy(_COPY_OUT, (args.key, args.key)) as copy:
                for block in copy:
                    sys.stdout.buffer.write(block)
            sys.stdout.buffer.flush()
    except psycopg.Error as exc:
        print(f"tracker-server points: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.cleanup()
    return 0
