"""``tracker-server``: run the tracker server (gRPC, and the dashboard and REST API over
HTTP in the same process).

Settings come from the environment (TRACKER_*, DATABASE_URL); flags override them.
With more than one worker (``--workers``, default one per core) this process is the
supervisor of worker processes sharing the port (see ``supervisor``).
``tracker-server keys create|list|revoke`` manages API keys (see ``keys_cli``);
``tracker-server migrate`` applies schema migrations and exits (see ``migrate_cli``);
``tracker-server points --run RUN_ID`` writes a run's stored points as CSV (``points_cli``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import fields
from pathlib import Path

import structlog

from tracker_server.config import CHOICES, Settings, env_var, load_settings, worker_count
from tracker_server.logs import configure_logging
from tracker_server.server import Role, dashboard_url, start_server
from tracker_server.supervisor import Supervisor, report_ready, worker_identity
from tracker_server.telemetry import setup_telemetry

log = structlog.get_logger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """One flag per setting (``--flush-interval-ms`` for TRACKER_FLUSH_INTERVAL_MS, ...),
    generated from ``Settings`` so flags and environment variables cannot drift apart;
    a flag overrides its environment variable.

    Every flag defaults to None (so an unset flag leaves its variable in charge); the
    help names the variable and the setting's own default instead.
    """
    p = argparse.ArgumentParser(prog="tracker-server", description=__doc__)
    defaults = Settings()
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        text = f"{env_var(f.name)} (default: {'unset' if default is None else default})"
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", default=None, help=text)
        elif isinstance(default, int | float):
            p.add_argument(flag, type=type(default), help=text)
        elif isinstance(default, Path):
            p.add_argument(flag, type=Path, help=text)
        else:
            p.add_argument(flag, choices=CHOICES.get(f.name), help=text)
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully."""
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = load_settings(**overrides)
    except ValueError as exc:
        # Refuse to start (e.g. auth off on a public address) with the reason, no traceback.
        print(f"tracker-server: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    identity = worker_identity()
    workers = worker_count(settings)
    if identity is None and workers > 1:
        try:
            code = await Supervisor(settings, workers).run()
        except (OSError, ValueError) as exc:  # port in use, unsafe settings
            print(f"tracker-server: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        if code:
            raise SystemExit(code)
        return
    try:
        telemetry = setup_telemetry(settings.otel,
                                    prometheus=settings.metrics == "prometheus")
    except RuntimeError as exc:  # TRACKER_OTEL=otlp without the tracker[otel] extra
        print(f"tracker-server: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    role = Role() if identity is None else Role(
        migrate=False, reuse_port=True, serving_at_start=False, compactor=identity[0] == 0,
        worker=identity[0])
    running = await start_server(settings, telemetry, role)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if identity is None:
        dashboard = (f"; dashboard and REST API at {dashboard_url(settings, running.http_port)}"
                     if running.http_port is not None else "")
        print(f"tracker-server listening on {settings.listen} (port {running.port}){dashboard}",
              flush=True)
    else:
        # The supervisor says when every worker is up (SERVING) or one is down.
        tasks: set[asyncio.Task[None]] = set()

        def health(serving: bool) -> None:
            task = asyncio.ensure_future(running.set_serving(serving))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.add_signal_handler(signal.SIGUSR1, health, True)
        loop.add_signal_handler(signal.SIGUSR2, health, False)
        report_ready(identity[1], running.port)
    await stop.wait()
    log.info("server.stopping", worker=None if identity is None else identity[0])
    await running.stop(settings.shutdown_grace_s)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["keys"]:
        from tracker_server.keys_cli import main as keys_main

        raise SystemExit(keys_main(args[1:]))
    if args[:1] == ["points"]:
        from tracker_server.points_cli import main as points_main

        raise SystemExit(points_main(args[1:]))
    if args[:1] == ["migrate"]:
        from tracker_server.migrate_cli import main as migrate_main

        raise SystemExit(migrate_main(args[1:]))
    asyncio.run(serve(parse_args(args)))


if __name__ == "__main__":
    main()
