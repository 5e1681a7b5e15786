"""The unary ingest path (gRPC ``LogMetrics``, HTTP ``POST /runs/{id}/metrics``): one
batch in, the reply once it is durable.

A batch with ``seq`` > 0 is exactly-once like a stream's: a replay of a committed seq
is acknowledged without writing. ``seq`` 0 means "unsequenced": written once per call,
with no protection against the caller's own retries.
"""

from __future__ import annotations

from dataclasses import dataclass

from tracker_server.domain.ingest import IngestEngine
from tracker_server.domain.key_limit import KeyLimit
from tracker_server.domain.points import (
    Limits,
    RawColumns,
    WriterInfo,
    validate_columns,
    validate_writer,
)


@dataclass(frozen=True)
class LogResult:
    """What a unary write did."""

    committed_through_seq: int
    """The writer's committed seq after the call (0 for a writer that only sends seq 0)."""
    points_written: int
    """Points stored by this call (0 for a replay)."""


class IngestService:
    """Unary writes through the ingest engine (same budget, flushes and fencing as the
    streams)."""

    def __init__(self, engine: IngestEngine, limits: Limits,
                 key_limit: KeyLimit | None = None) -> None:
        self._engine = engine
        self._limits = limits
        self._key_limit = key_limit

    async def log_metrics(
        self,
        run_id: str,
        writer_id: str,
        rank: int,
        attempt: int,
        seq: int,
        columns: RawColumns,
    ) -> LogResult:
        """Validate and write one batch of ``writer_id`` (rank, attempt) of a run;
        returns once it is committed (or known to be committed already)."""
        info = validate_writer(run_id, writer_id, rank, attempt)
        await self._engine.open(info)
        try:
            return await self._log(info, seq, columns)
        finally:
            self._engine.release(info.key)

    async def _log(self, info: WriterInfo, seq: int, columns: RawColumns) -> LogResult:
        engine = self._engine
        if seq and seq <= engine.committed_seq(info.key):
            return LogResult(engine.committed_seq(info.key), 0)
        batch = validate_columns(seq, columns, self._limits)
        if seq == 0 and batch.n == 0:
            return LogResult(engine.committed_seq(info.key), 0)  # nothing to write
        if self._key_limit is not None and batch.n:
            await self._key_limit.check(info.key.run_id, batch.keys, seq)
        await engine.resolve_keys(batch)
        await engine.wait_for_budget()
        if seq == 0:
            return LogResult(await engine.submit_unsequenced(info, batch), batch.n)
        fresh = engine.submit(info, batch)
        committed = await engine.wait_committed(info.key, seq)
        return LogResult(committed, batch.n if fresh else 0)
