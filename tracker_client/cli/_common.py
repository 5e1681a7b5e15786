"""Shared pieces of the CLI: connection, experiment lookup, output formatting."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from tracker_client import _enums, _env
from tracker_client._rpc import make_channel
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import experiments_pb2_grpc, query_pb2_grpc

RUN_STATUS = _enums.RUN_STATUS_NAME
EXPERIMENT_STATUS = _enums.EXPERIMENT_STATUS_NAME
SPARKS = "▁▂▃▄▅▆▇█"


class _PageRequest(Protocol):
    page_token: str


class _Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_PageReq = TypeVar("_PageReq", bound=_PageRequest)
_PageResp = TypeVar("_PageResp", bound=_Page)
_Item = TypeVar("_Item")


class CliError(Exception):
    """A usage problem reported without a traceback."""


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """--server, --api-key, --json, --timeout (also accepted after the subcommand)."""
    parser.add_argument("--server", default=None,
                        help="host:port of the tracker server (env TRACKER_SERVER, "
                             f"default {_env.DEFAULT_SERVER})")
    parser.add_argument("--api-key", default=None, help="API key (env TRACKER_API_KEY)")
    parser.add_argument("--tls-ca", default=None,
                        help="PEM CA bundle: connect with TLS (env TRACKER_TLS_CA; "
                             "TRACKER_TLS=1 uses the system roots)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")


def command_parser(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand parser that also accepts the global options after its name."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text,
                                                     description=help_text)
    parser.add_argument("--server", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--api-key", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--tls-ca", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON instead of tables")
    parser.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    return parser


class Client:
    """Stubs on one channel, with the API key attached to every call."""

    def __init__(self, address: str, api_key: str | None, timeout: float,
                 tls: _env.TlsOption = None) -> None:
        self.address = address
        self.channel = make_channel(
            address, [("grpc.max_receive_message_length", 64 << 20)], _env.tls_config(tls)
        )
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ()
        )
        self.timeout = timeout
        self.experiments = experiments_pb2_grpc.ExperimentServiceStub(self.channel)
        self.query = query_pb2_grpc.MetricsQueryServiceStub(self.channel)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Client:
        """From flags, then the environment (a malformed variable is a CliError)."""
        try:
            return cls(_env.server_address(args.server), _env.api_key(args.api_key),
                       args.timeout, args.tls_ca)
        except ValueError as exc:
            raise CliError(str(exc)) from None

    def call(self, method: grpc.UnaryUnaryMultiCallable[_Req, _Resp], request: _Req) -> _Resp:
        """Unary call with the timeout and credentials."""
        return method(request, timeout=self.timeout, metadata=self.metadata)

    def paginate(self, method: grpc.UnaryUnaryMultiCallable[_PageReq, _PageResp],
                 request: _PageReq, items: Callable[[_PageResp], Iterable[_Item]],
                 limit: int) -> list[_Item]:
        """Follow ``next_page_token`` until ``limit`` of the ``items`` of the pages (or
        the last page)."""
        found: list[_Item] = []
        while len(found) < limit:
            page = self.call(method, request)
            found += items(page)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        return found[:limit]

    def __enter__(self) -> Client:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.channel.close()

    def experiment_id(self, ref: str, owner: str | None = None) -> str:
        """An experiment id from an id or an exact name (newest match when ambiguous)."""
        try:
            return str(uuid.UUID(ref))
        except ValueError:
            pass
        req = ex.ListExperimentsRequest(name_prefix=ref, owner=owner or "",
                                        statuses=list(_enums.EXPERIMENT_STATUS.values()),
                                        page_size=1000)
        for e in self.call(self.experiments.ListExperiments, req).experiments:
            if e.name == ref:
                return str(e.experiment_id)
        raise CliError(f"no experiment named {ref!r}; try `tracker experiments ls`")


    def run_id(self, ref: str) -> str:
        """A run id from a full id, a unique id prefix (4+ hex digits) or a run name.

        Ambiguous references are a CliError listing the candidates (exit code 2), as is
        a reference matching nothing."""
        try:
            return str(uuid.UUID(ref))
        except ValueError:
            pass
        candidates = {r.run_id: r for r in self._runs_matching(ref)}
        if len(candidates) == 1:
            return str(next(iter(candidates)))
        if not candidates:
            raise CliError(f"no run with id prefix or name {ref!r}")
        listed = sorted(candidates.values(), key=lambda r: r.run_id)
        lines = "\n".join(f"  {r.run_id}  {r.name}  ({RUN_STATUS.get(r.status, '?')})"
                          for r in listed[:RESOLVE_LIST_MAX])
        # The search stops at one more than the list shows: past that, the count is open.
        count = (f"more than {RESOLVE_LIST_MAX}" if len(listed) > RESOLVE_LIST_MAX
                 else str(len(listed)))
        raise CliError(f"{ref!r} matches {count} runs; give more of the id:\n{lines}")

    def run_ids(self, refs: Sequence[str]) -> list[str]:
        """:meth:`run_id` of each reference."""
        return [self.run_id(r) for r in refs]

    def _runs_matching(self, ref: str) -> list[Any]:
        from tracker_client.cli.slurm import search_everywhere

        hex_digits = ref.replace("-", "").lower()
        clauses = [f"name = {quote(ref)}"]
        if len(hex_digits) >= MIN_ID_PREFIX and _HEX.fullmatch(hex_digits):
            low, high = (_uuid_text(hex_digits.ljust(32, fill)) for fill in "0f")
            clauses.append(f'(run_id >= "{low}" and run_id <= "{high}")')
        return search_everywhere(self, " or ".join(clauses), RESOLVE_LIST_MAX + 1)


MIN_ID_PREFIX = 4
"""Shortest id prefix looked up (shorter ones are taken as names only)."""
RESOLVE_LIST_MAX = 20
"""Candidates listed when a run reference is ambiguous."""
_HEX = re.compile(r"[0-9a-f]{1,32}")


def quote(text: str) -> str:
    """``text`` as a string literal of the filter language."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\t", "\\t"))
    return f'"{escaped}"'


def _uuid_text(hex32: str) -> str:
    return str(uuid.UUID(hex=hex32))


def to_dict(message: Message) -> dict[str, Any]:
    """Proto message -> JSON-ready dict (field names as in the proto)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def print_json(value: Any) -> None:
    """Pretty JSON on stdout (NaN/Infinity as JSON5-style tokens, like protobuf JSON)."""
    json.dump(value, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Aligned plain-text table."""
    cells = [[str(h) for h in headers]] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    if not rows:
        print("(none)")


def fmt(value: Any) -> str:
    """Human formatting of one cell."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    return str(value)


def when(ts: Timestamp | None) -> str:
    """Timestamp message -> UTC text ('-' when unset)."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return "-"
    return datetime.fromtimestamp(ts.seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def sparkline(values: Sequence[float], width: int = 60) -> str:
    """Unicode sparkline of finite values, resampled to ``width`` characters."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width)]
    lo, hi = min(finite), max(finite)
    span = hi - lo or 1.0
    return "".join(
        SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * len(SPARKS)))] if math.isfinite(v)
        else " "
        for v in values
    )

