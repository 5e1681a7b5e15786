"""The one check every fault test ends with: per (run, key, rank), what was logged is
stored exactly once, and the run's summaries equal a recomputation over what a series
read returns.

``logged`` is what writers logged: per (key, rank), step -> value. Stored points come
from the ``metric_points`` view (raw, every attempt); the series read is
``StreamMetricSeries`` through the server, the same resolution clients get.
"""

from __future__ import annotations

import math
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import psycopg

from tracker_proto.v1 import query_pb2, query_pb2_grpc
from tracker_server.storage.points_export import materialize_points

Logged = dict[tuple[str, int], dict[int, float]]
"""(key, rank) -> {step: value} as logged (one attempt)."""


def same_float(a: float, b: float) -> bool:
    """Bit-for-bit equal (NaN payloads, -0.0)."""
    return struct.pack("<d", a) == struct.pack("<d", b)


@dataclass
class Report:
    """What a check found for one run."""

    logged: int = 0
    stored: int = 0
    duplicates: int = 0
    missing: int = 0
    unexpected: int = 0
    wrong_values: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing twice, nothing wrong."""
        return not self.problems

    def note(self, text: str) -> None:
        """Record a problem (the first 20 are kept verbatim)."""
        if len(self.problems) < 20:
            self.problems.append(text)
        else:
            self.problems[-1] = f"... and more ({text})"


def check_points(database_url: str, run_id: str, logged: Logged) -> Report:
    """Every logged point stored once with its value; nothing else stored."""
    report = Report(logged=sum(len(v) for v in logged.values()))
    with psycopg.connect(database_url) as conn, conn.cursor(binary=True) as cur:
        materialize_points(conn, [run_id])
        cur.execute("SELECT key, rank, step, value FROM metric_points WHERE run_id = %s",
                    (run_id,))
        rows = cur.fetchall()
    report.stored = len(rows)
    seen: Counter[tuple[str, int, int]] = Counter()
    for key, rank, step, value in rows:
        k = (str(key), int(rank), int(step))
        seen[k] += 1
        want = logged.get((k[0], k[1]), {}).get(k[2])
        if want is None:
            report.unexpected += 1
            report.note(f"stored but never logged: {k}")
        elif not same_float(float(value), want):
            report.wrong_values += 1
            report.note(f"{k}: stored {value!r}, logged {want!r}")
    for k, n in seen.items():
        if n > 1:
            report.duplicates += n - 1
            report.note(f"stored {n} times: {k}")
    for (key, rank), steps in logged.items():
        for step in steps:
            if (key, rank, step) not in seen:
                report.missing += 1
                report.note(f"logged but not stored: {(key, rank, step)}")
    return report


@dataclass(frozen=True)
class ReadPoint:
    """A point of a series read, with the attempt it comes from."""

    rank: int
    attempt: int
    step: int
    value: float


def read_points(address: str, database_url: str, run_id: str, key: str) -> list[ReadPoint]:
    """The points a full-resolution series read returns (every rank), each with its
    attempt: the latest attempt of its rank whose first step is at or below it (the
    supersede rule makes every other attempt's point at that step hidden)."""
    with psycopg.connect(database_url) as conn:
        firsts = conn.execute(
            "SELECT c.rank, c.attempt, min(c.first_step) FROM metric_chunks c "
            "JOIN metric_keys k USING (key_id) WHERE c.run_id = %s AND k.name = %s "
            "GROUP BY 1, 2", (run_id, key)).fetchall()
    starts: dict[int, list[tuple[int, int]]] = {}
    for rank, attempt, first in firsts:
        starts.setdefault(int(rank), []).append((int(attempt), int(first)))
    # Right after a database outage the server's query pool may still be reconnecting
    # (psycopg_pool backs off 1, 2, 4 ... s): UNAVAILABLE is retryable, so retry it the
    # way a client would, within a bound.
    deadline = time.monotonic() + 60
    while True:
        try:
            return _stream_points(address, run_id, key, starts)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _stream_points(address: str, run_id: str, key: str,
                   starts: dict[int, list[tuple[int, int]]]) -> list[ReadPoint]:
    with grpc.insecure_channel(address) as channel:
        stub = query_pb2_grpc.MetricsQueryServiceStub(channel)
        out = []
        for msg in stub.StreamMetricSeries(
                query_pb2.StreamMetricSeriesRequest(run_id=run_id, key=key), timeout=60):
            for step, value in zip(msg.steps, msg.values, strict=True):
                attempt = max(a for a, f in starts[msg.rank] if f <= step)
                out.append(ReadPoint(msg.rank, attempt, int(step), float(value)))
    return out


def wait_repaired(database_url: str, run_id: str, timeout_s: float = 30.0) -> bool:
    """Wait until no summary of the run is marked stale (the background repair has
    recomputed what rewriting flushes left); False at the timeout."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM run_metric_summary "
                               "WHERE run_id = %s AND stale", (run_id,)).fetchone()
            if row is not None and row[0] == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def check_summaries(address: str, database_url: str, run_id: str) -> list[str]:
    """Differences between run_metric_summary and a recomputation over the series read
    (ties of min/max and of "last" across ranks may pick any of the tied points), once
    stale summaries are repaired."""
    if not wait_repaired(database_url, run_id):
        return ["stale summaries not repaired within 30 s"]
    with psycopg.connect(database_url) as conn:
        with conn.cursor(binary=True) as cur:  # binary: NaN payloads as stored
            cur.execute(
                "SELECT k.name, count, first_step, last_step, last_value, last_attempt, "
                "min_value, min_step, max_value, max_step FROM run_metric_summary s "
                "JOIN metric_keys k USING (key_id) WHERE run_id = %s", (run_id,))
            rows = cur.fetchall()
        keys = [r[0] for r in conn.execute(
            "SELECT DISTINCT k.name FROM metric_chunks c JOIN metric_keys k USING (key_id) "
            "WHERE c.run_id = %s", (run_id,)).fetchall()]
    stored = {r[0]: r[1:] for r in rows}
    problems = [f"{k}: no summary" for k in keys if k not in stored]
    problems += [f"{k}: summary without points" for k in stored if k not in keys]
    for key in keys:
        if key not in stored:
            continue
        pts = read_points(address, database_url, run_id, key)
        count, first, last_step, last_value, last_attempt, lo, lo_step, hi, hi_step = (
            stored[key])
        if count != len(pts):
            problems.append(f"{key}: count {count}, read {len(pts)}")
        if not pts:
            continue
        if first != min(p.step for p in pts):
            problems.append(f"{key}: first_step {first}, read {min(p.step for p in pts)}")
        top = max((p.attempt, p.step) for p in pts)
        if (last_attempt, last_step) != top:
            problems.append(f"{key}: last at {(last_attempt, last_step)}, read {top}")
        elif not any(same_float(last_value, p.value) for p in pts
                     if (p.attempt, p.step) == top):
            problems.append(f"{key}: last_value {last_value!r} not among the last points")
        finite = [p for p in pts if not math.isnan(p.value)]
        if not finite:
            if lo is not None or hi is not None:
                problems.append(f"{key}: min/max {lo}/{hi} but every value is NaN")
            continue
        want_lo, want_hi = min(p.value for p in finite), max(p.value for p in finite)
        if lo != want_lo or lo_step not in {p.step for p in finite if p.value == want_lo}:
            problems.append(f"{key}: min {lo}@{lo_step}, read {want_lo}")
        if hi != want_hi or hi_step not in {p.step for p in finite if p.value == want_hi}:
            problems.append(f"{key}: max {hi}@{hi_step}, read {want_hi}")
    return problems
