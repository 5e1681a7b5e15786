"""``tracker artifacts ls RUN`` and ``tracker artifacts verify RUN``: a run's recorded
checkpoints and other files, and whether they are still what was recorded."""

from __future__ import annotations

import argparse
from typing import Any

from tracker_client._artifact_types import (
    Artifact,
    Check,
    check,
    list_request,
    verification_request,
)
from tracker_client._artifacts import KINDS
from tracker_client.cli._common import Client, CliError, command_parser, print_json, print_table
from tracker_proto.v1 import artifacts_pb2_grpc

PROBLEMS = frozenset({"missing", "size_mismatch", "hash_mismatch"})
"""Outcomes that make ``verify`` exit with 1 (``unchecked`` does not: nothing is known
to be wrong)."""
_RECORD_BATCH = 1000  # the server's most outcomes per RecordVerification call


def register(sub: Any) -> None:
    """Add ``artifacts ls`` and ``artifacts verify``."""
    parser = command_parser(sub, "artifacts", "a run's checkpoints, models and other files")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    ls = command_parser(verbs, "ls", "list the artifacts a run recorded")
    verify = command_parser(verbs, "verify",
                            "check that each artifact exists with the recorded size and "
                            "hash; exit 1 when one differs")
    for p in (ls, verify):
        p.add_argument("run", metavar="RUN", help="run id, unique id prefix or run name")
        p.add_argument("--kind", action="append", choices=sorted(KINDS),
                       help="only this kind (repeatable)")
        p.add_argument("--min-step", type=int, default=None, help="only steps >= this")
        p.add_argument("--max-step", type=int, default=None, help="only steps <= this")
    verify.add_argument("--no-hash", action="store_true",
                        help="check existence and size only (hashing reads every byte)")
    verify.add_argument("--no-record", action="store_true",
                        help="do not store the outcome on the server (the dashboard shows "
                             "the last one)")
    ls.set_defaults(func=run_ls)
    verify.set_defaults(func=run_verify)


def run_artifacts(client: Client, run_id: str, kind: str | list[str] | None = None,
                  min_step: int | None = None, max_step: int | None = None
                  ) -> list[Artifact]:
    """Every artifact of a run (all pages), by step then uri."""
    stub = artifacts_pb2_grpc.ArtifactServiceStub(client.channel)
    try:
        req = list_request(run_id, kind, min_step, max_step, 1000)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    found = client.paginate(stub.ListArtifacts, req, lambda p: p.artifacts, 10**9)
    return [Artifact.from_proto(a) for a in found]


def _artifacts(args: argparse.Namespace, client: Client, run_id: str) -> list[Artifact]:
    return run_artifacts(client, run_id, args.kind, args.min_step, args.max_step)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def run_ls(args: argparse.Namespace, client: Client) -> int:
    """Print the run's artifacts."""
    found = _artifacts(args, client, client.run_id(args.run))
    if args.json:
        print_json([a.row() for a in found])
        return 0
    print_table(["STEP", "KIND", "SIZE", "VERIFIED", "URI"],
                [["-" if a.step is None else a.step, a.kind, _size(a.size_bytes),
                  a.verify_state, a.uri] for a in found])
    return 0


def run_verify(args: argparse.Namespace, client: Client) -> int:
    """Check every artifact against the storage it is on; 1 when one differs."""
    run_id = client.run_id(args.run)  # an id prefix or a run name, like every command
    found = _artifacts(args, client, run_id)
    checks: list[Check] = [check(a, hash_files=not args.no_hash) for a in found]
    if checks and not args.no_record:
        stub = artifacts_pb2_grpc.ArtifactServiceStub(client.channel)
        for i in range(0, len(checks), _RECORD_BATCH):
            client.call(stub.RecordVerification,
                        verification_request(run_id, checks[i:i + _RECORD_BATCH]))
    bad = [c for c in checks if c.state in PROBLEMS]
    if args.json:
        print_json({"run_id": run_id, "checked": len(checks), "problems": len(bad),
                    "artifacts": [c.row() for c in checks]})
    else:
        print_table(["STEP", "KIND", "STATE", "URI", "DETAIL"],
                    [["-" if c.artifact.step is None else c.artifact.step, c.artifact.kind,
                      c.state, c.artifact.uri, c.detail] for c in checks])
        print(f"{len(checks)} artifact(s) checked, {len(bad)} differ from what was recorded")
    return 1 if bad else 0
