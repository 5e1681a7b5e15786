"""``tracker-server``: run the tracker gRPC server.

Settings come from the environment (TRACKER_*, DATABASE_URL); flags override them.
``tracker-server keys create|list|revoke`` manages API keys (see ``keys_cli``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import structlog

from tracker_server.config import load_settings
from tracker_server.logs import configure_logging
from tracker_server.server import start_server

log = structlog.get_logger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags (each overrides its environment variable)."""
    p = argparse.ArgumentParser(prog="tracker-server", description=__doc__)
    p.add_argument("--listen", help="host:port (TRACKER_LISTEN, default 127.0.0.1:50051)")
    p.add_argument("--database-url", help="PostgreSQL conninfo (DATABASE_URL); "
                   "omitted: embedded PostgreSQL in the data dir")
    p.add_argument("--data-dir", type=Path, help="TRACKER_DATA_DIR")
    p.add_argument("--flush-interval-ms", type=int, help="TRACKER_FLUSH_INTERVAL_MS")
    p.add_argument("--flush-bytes", type=int, help="TRACKER_FLUSH_BYTES")
    p.add_argument("--memory-budget-bytes", type=int, help="TRACKER_MEMORY_BUDGET_BYTES")
    p.add_argument("--max-message-bytes", type=int, help="TRACKER_MAX_MESSAGE_BYTES")
    p.add_argument("--log-level", help="TRACKER_LOG_LEVEL")
    p.add_argument("--auth", choices=["auto", "required", "off"], help="TRACKER_AUTH")
    p.add_argument("--allow-open-network", action="store_true", default=None,
                   help="TRACKER_ALLOW_OPEN_NETWORK: permit --auth off on a non-loopback address")
    p.add_argument("--tls-cert", help="TRACKER_TLS_CERT (PEM)")
    p.add_argument("--tls-key", help="TRACKER_TLS_KEY (PEM)")
    p.add_argument("--tls-client-ca", help="TRACKER_TLS_CLIENT_CA (PEM; enables mutual TLS)")
    p.add_argument("--rate-unary-per-s", type=float, help="TRACKER_RATE_UNARY_PER_S")
    p.add_argument("--rate-points-per-s", type=float, help="TRACKER_RATE_POINTS_PER_S")
    p.add_argument("--otel", choices=["off", "console", "otlp"], help="TRACKER_OTEL")
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
    running = await start_server(settings)
    print(f"tracker-server listening on {settings.listen} (port {running.port})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("server.stopping")
    await running.stop(settings.shutdown_grace_s)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["keys"]:
        from tracker_server.keys_cli import main as keys_main

        raise SystemExit(keys_main(args[1:]))
    asyncio.run(serve(parse_args(args)))


if __name__ == "__main__":
    main()
