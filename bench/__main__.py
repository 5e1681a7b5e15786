"""``python -m bench <command> [args]``: dispatch to ``bench/<command>.py:main(argv)``."""

from __future__ import annotations

import importlib
import sys

# command -> module; each module has ``main(argv: list[str] | None) -> int | None``.
COMMANDS: dict[str, str] = {
    "ingest": "bench.ingest",
    "sweep": "bench.sweep",
    "ceiling": "bench.ceiling",
    "peers": "bench.peers",
    "query": "bench.query",
    "client": "bench.client",
    "export": "bench.export",
    "dashboard": "bench.dashboard",
    "soak": "bench.soak",
    "codec": "bench.codec",
}

_HELP = {
    "ingest": "end-to-end ingest throughput vs the COPY ceiling, exactly-once check",
    "sweep": "ingest over batch sizes x stream counts; writes JSON and a PNG chart",
    "ceiling": "only the binary-COPY ceiling (same schema, no gRPC)",
    "peers": "the same workload through a peer system (MLflow) on the same PostgreSQL",
    "query": "read-path benchmark",
    "client": "client-side benchmark",
    "export": "full-resolution reads of a 10M-point run through the read API",
    "dashboard": "run page of 20 x 1M points in headless Chromium; REST ingest",
    "soak": "long steady ingest + query load: RSS and throughput over time, nothing lost",
    "codec": "chunk codec: bytes/point per column, encode/decode points/s (CPU only)",
}


def _usage() -> str:
    lines = ["usage: python -m bench <command> [--help] [args]", "", "commands:"]
    lines += [f"  {name:<9} {_HELP.get(name, '')}" for name in COMMANDS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run one bench command."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name])
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
