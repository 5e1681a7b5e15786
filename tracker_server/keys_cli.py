"""``tracker-server keys``: create, list and revoke API keys.

Talks to the database directly (``DATABASE_URL``, else the embedded PostgreSQL in
``TRACKER_DATA_DIR``), so the first admin key can be made before any key exists. The
key is printed once; only its SHA-256 is stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import psycopg

from tracker_server.config import load_settings
from tracker_server.domain.access import Role, generate_key
from tracker_server.storage import key_store as keys_store
from tracker_server.storage.migrate import migrate


def build_parser() -> argparse.ArgumentParser:
    """``keys create|list|revoke`` with their options."""
    p = argparse.ArgumentParser(prog="tracker-server keys", description=__doc__)
    p.add_argument("--database-url", help="PostgreSQL conninfo (DATABASE_URL); "
                   "omitted: the embedded PostgreSQL in the data dir")
    p.add_argument("--data-dir", type=Path, help="TRACKER_DATA_DIR")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--role", required=True, choices=[r.label for r in Role])
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--json", action="store_true", help="print JSON")
    listing = sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = sub.add_parser("revoke", help="revoke a key by id (trk_<id>_...)")
    revoke.add_argument("key_id")
    return p


@contextmanager
def _connect(args: argparse.Namespace) -> Iterator[psycopg.Connection]:
    overrides = {"database_url": args.database_url, "data_dir": args.data_dir}
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    embedded = None
    if settings.database_url:
        conninfo = settings.database_url
    else:
        from tracker_server.storage.embedded import start_embedded

        # Attaches to the cluster a running server started (it stays up after we exit).
        conninfo, embedded = start_embedded(settings.data_dir)
    try:
        migrate(conninfo)  # the api_keys table may not exist yet
        with psycopg.connect(conninfo) as conn:
            yield conn
    finally:
        if embedded is not None:
            embedded.cleanup()


def _key_id(text: str) -> str:
    """Accept the bare id or a whole key (only its id part is used)."""
    parts = text.strip().split("_", 2)
    return parts[1] if len(parts) >= 2 and parts[0] == "trk" else text.strip()


def _ts(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t is not None else "-"


def run(args: argparse.Namespace) -> int:
    """Execute one action; the exit code."""
    with _connect(args) as conn:
        if args.action == "create":
            key = generate_key()
            created = keys_store.create_key(conn, key, args.name, Role.parse(args.role))
            conn.commit()
            if args.json:
                print(json.dumps({"key_id": key.key_id, "key": key.token, "role": args.role,
                                  "name": args.name, "created_at": created.isoformat()}))
            else:
                print(key.token)
                print(f"key id {key.key_id}, role {args.role}, name {args.name!r}: "
                      "store it now, it cannot be shown again", file=sys.stderr)
            return 0
        if args.action == "list":
            keys = keys_store.list_keys(conn, include_revoked=args.all)
            if args.json:
                print(json.dumps([{
                    "key_id": k.key_id, "name": k.name, "role": k.role,
                    "created_at": k.created_at.isoformat(),
                    "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                    "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
                } for k in keys]))
                return 0
            print(f"{'KEY ID':<14}{'ROLE':<10}{'CREATED':<22}{'LAST USED':<22}{'REVOKED':<22}NAME")
            for k in keys:
                print(f"{k.key_id:<14}{k.role:<10}{_ts(k.created_at):<22}"
                      f"{_ts(k.last_used_at):<22}{_ts(k.revoked_at):<22}{k.name}")
            return 0
        revoked = keys_store.revoke_key(conn, _key_id(args.key_id))
        conn.commit()
        if revoked is None:
            print(f"tracker-server keys: no key {args.key_id!r}", file=sys.stderr)
            return 1
        print(f"revoked {_key_id(args.key_id)} at {revoked.isoformat()} (servers stop "
              "accepting it within TRACKER_KEY_CACHE_TTL_S)")
        return 0


def main(argv: list[str]) -> int:
    """Entry point of ``tracker-server keys ...``."""
    return run(build_parser().parse_args(argv))
