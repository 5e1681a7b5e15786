"""``tracker import mlflow|tensorboard``: bring runs from MLflow or TensorBoard event files.

Importing is idempotent: run keys and writer ids derive from the source, so a second
import sends nothing twice and only what is new (see docs/client.md, "Importers").
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from tracker_client.cli._common import Client, CliError, command_parser, print_json, print_table
from tracker_client.importers._progress import Progress
from tracker_client.importers._sink import ImportFailed, RunOutcome, Sink, SourceRun


def register(sub: Any) -> None:
    """Add ``import`` with its ``mlflow`` and ``tensorboard`` subcommands."""
    parser = command_parser(sub, "import", "import runs from MLflow or TensorBoard")
    kinds = parser.add_subparsers(dest="source", metavar="SOURCE")
    kinds.required = True
    ml = command_parser(kinds, "mlflow", "import experiments and runs from MLflow")
    ml.add_argument("--tracking-uri", required=True,
                    help="MLflow tracking URI, e.g. http://127.0.0.1:5000")
    ml.add_argument("--experiment", action="append", default=[], metavar="NAME",
                    help="MLflow experiment to import (repeatable; default: all active)")
    ml.set_defaults(func=run_mlflow)
    tb = command_parser(kinds, "tensorboard", "import scalars from TensorBoard event files")
    tb.add_argument("logdir", metavar="LOGDIR", help="directory of event files (searched "
                                                     "recursively; one run per directory)")
    tb.add_argument("--experiment", default=None, metavar="NAME",
                    help="tracker experiment (default: LOGDIR's name)")
    tb.set_defaults(func=run_tensorboard)


def run_mlflow(args: argparse.Namespace, client: Client) -> int:
    """Import from MLflow."""
    try:
        from tracker_client.importers import mlflow
    except ImportError as exc:
        raise CliError(str(exc)) from None
    try:
        return _import(mlflow.read(args.tracking_uri, args.experiment), client, args, "mlflow")
    except mlflow.UnknownExperiment as exc:
        raise CliError(str(exc)) from None


def run_tensorboard(args: argparse.Namespace, client: Client) -> int:
    """Import from event files."""
    try:
        from tracker_client.importers import tensorboard
    except ImportError as exc:
        raise CliError(str(exc)) from None
    try:
        return _import(tensorboard.read_logdir(args.logdir, args.experiment), client, args,
                       "tensorboard")
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None


def _import(sources: Iterable[SourceRun], client: Client, args: argparse.Namespace,
            kind: str) -> int:
    """Write runs as they are read (a source's experiments and paths are checked before
    its first run is yielded), then print the summary."""
    sink = Sink(client.channel, client.metadata, timeout_s=client.timeout)
    outcomes: list[RunOutcome] = []
    with Progress(0, "pt", f"import {kind}") as bar:
        for src in sources:
            bar.add_total(src.points.n)
            bar.describe(src.name or src.run_key)
            try:
                outcomes.append(sink.write(src, bar.update))
            except ImportFailed as exc:
                raise CliError(str(exc)) from None
    summary: dict[str, Any] = {
        "source": kind,
        "runs": len(outcomes),
        "runs_created": sum(o.created for o in outcomes),
        "runs_updated": sum(o.changed and not o.created for o in outcomes),
        "runs_skipped": sum(not o.changed for o in outcomes),
        "points_sent": sum(o.points_sent for o in outcomes),
        "points_skipped": sum(o.points_skipped for o in outcomes),
        "warnings": [f"{o.run_key}: {o.warning}" for o in outcomes if o.warning],
        "details": [dict(run_id=o.run_id, run_key=o.run_key, created=o.created,
                         points_sent=o.points_sent, points_skipped=o.points_skipped,
                         status_set=o.status_set) for o in outcomes],
    }
    if args.json:
        print_json(summary)
        return 0
    print_table(["RUN KEY", "RUN", "NEW", "POINTS SENT", "POINTS SKIPPED"],
                [[o.run_key, o.run_id, "yes" if o.created else "no", o.points_sent,
                  o.points_skipped] for o in outcomes])
    print(f"\n{summary['runs']} run(s): {summary['runs_created']} new, "
          f"{summary['runs_updated']} updated, {summary['runs_skipped']} skipped "
          f"(already imported); {summary['points_sent']} point(s) sent, "
          f"{summary['points_skipped']} skipped")
    for warning in summary["warnings"]:
        print(f"warning: {warning}")
    return 0
