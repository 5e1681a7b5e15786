"""What one flush transaction writes: :func:`plan_commit` and its :class:`CommitPlan`.

The plan is a pure function of the batches of a flush and the writers' committed seqs
as locked in the transaction, so it can be built ahead of the transaction against the
seqs the engine expects and rebuilt inside it when the locked seqs differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tracker_server.domain.chunking import ChunkSet, SummarySet, build_chunks
from tracker_server.domain.points import PointBatch, WriterInfo, WriterKey


@dataclass
class CommitPlan:
    """What one flush transaction writes."""

    chunks: ChunkSet | None
    summaries: SummarySet | None
    offsets: dict[WriterKey, int]
    """New committed seq per writer (only writers that advanced)."""
    gaps: set[WriterKey] = field(default_factory=set)
    """Writers whose buffered batches do not follow their committed seq."""
    committed_before: dict[WriterKey, int] = field(default_factory=dict)
    """Committed seq per writer the plan was made for (as locked in the transaction)."""
    payload: Any = None
    """The store's encoding of ``chunks`` (``MetricStore.prepare``), made ahead of the
    transaction; None: the store encodes them itself."""
    deferred: set[WriterKey] = field(default_factory=set)
    """Writers the store left out of this transaction (another transaction holds their
    run, e.g. a frozen peer server): their batches wait for the next flush."""


class Planner(Protocol):
    """The plan callback the store calls inside its transaction."""

    def __call__(self, committed: dict[WriterKey, int],
                 deferred: frozenset[WriterKey] = frozenset()) -> CommitPlan:
        """The plan for writers with these committed seqs, leaving ``deferred`` out."""
        ...


@dataclass
class Entry:
    """One buffered batch and the writer it belongs to."""

    info: WriterInfo
    batch: PointBatch


def plan_commit(
    committed: dict[WriterKey, int],
    batches: dict[WriterKey, list[Entry]],
    unsequenced: list[Entry],
    deferred: frozenset[WriterKey] = frozenset(),
) -> CommitPlan:
    """Choose, per writer, the batches that follow its committed seq without a gap;
    ``deferred`` writers are left for a later flush."""
    offsets: dict[WriterKey, int] = {}
    gaps: set[WriterKey] = set()
    rows: list[tuple[WriterInfo, PointBatch]] = []
    later = {w for w in batches if w in deferred}
    for writer, entries in batches.items():
        if writer in later:
            continue
        done = committed.get(writer, 0)
        expected = done + 1
        for entry in sorted(entries, key=lambda e: e.batch.seq):
            seq = entry.batch.seq
            if seq < expected:
                continue  # committed already, here or by another server: fencing
            if seq != expected:
                gaps.add(writer)
                break
            if entry.batch.n:
                rows.append((entry.info, entry.batch))
            expected += 1
        if expected - 1 > done:
            offsets[writer] = expected - 1
    # An empty unsequenced batch has nothing to write (and no seq to consume).
    rows.extend((e.info, e.batch) for e in unsequenced if e.batch.n)
    if rows:
        chunks, summaries = build_chunks(rows)
        return CommitPlan(chunks, summaries, offsets, gaps, dict(committed), deferred=later)
    return CommitPlan(None, None, offsets, gaps, dict(committed), deferred=later)
