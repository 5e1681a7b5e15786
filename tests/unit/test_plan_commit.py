"""``plan_commit``: which buffered batches one flush transaction writes.

The plan is the fence of exactly-once: given the committed seqs locked in the
transaction, it writes, per writer, only the batches that continue the committed seq
without a gap, each once, and reports a gap instead of skipping over it.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.ingest_store import tagged_batch
from tracker_server.domain.chunking import build_chunks
from tracker_server.domain.ingest import CommitPlan, _Entry, plan_commit
from tracker_server.domain.points import WriterInfo, WriterKey

RUN = uuid.UUID(int=7)
WRITERS = [WriterInfo(WriterKey(RUN, f"w{i}"), rank=i, attempt=0) for i in range(3)]
TABLE = [11, 12, 13]


def _ids(writer: int, seq: int, n: int) -> list[int]:
    """Tags of a sequenced batch's points (unique per writer, seq and index)."""
    return [(writer + 1) * 1_000_000 + seq * 100 + i for i in range(n)]


def _entry(writer: int, seq: int, n: int) -> _Entry:
    return _Entry(WRITERS[writer], tagged_batch(seq, _ids(writer, seq, n), TABLE))


def _stored(plan: CommitPlan) -> Counter[int]:
    """Multiset of the tags of the points the plan writes."""
    return Counter(plan.chunks.wall_ns.tolist()) if plan.chunks is not None else Counter()


# Per writer: committed seq, and the buffered batches as (seq, points); seqs may repeat
# (the same batch buffered by two streams of one writer) and need not be contiguous.
writer_case = st.tuples(
    st.integers(0, 4),
    st.lists(st.tuples(st.integers(1, 9), st.integers(0, 3)), max_size=8),
)


@settings(max_examples=200, deadline=None)
@given(
    cases=st.lists(writer_case, min_size=1, max_size=3),
    unseq=st.lists(st.integers(0, 3), max_size=3),
    omit_committed=st.booleans(),
)
def test_plan_takes_exactly_the_contiguous_run_after_committed(
    cases: list[tuple[int, list[tuple[int, int]]]], unseq: list[int], omit_committed: bool,
) -> None:
    committed: dict[WriterKey, int] = {}
    batches: dict[WriterKey, list[_Entry]] = {}
    sizes: dict[tuple[int, int], int] = {}
    for w, (done, buffered) in enumerate(cases):
        key = WRITERS[w].key
        if done or not omit_committed:  # a writer without an offset row counts as 0
            committed[key] = done
        entries = []
        for seq, n in buffered:
            n = sizes.setdefault((w, seq), n)  # one seq is one batch, however often buffered
            entries.append(_entry(w, seq, n))
        batches[key] = entries
    unsequenced = [
        _Entry(WRITERS[0], tagged_batch(0, [9_000_000 + u * 100 + i for i in range(n)], TABLE))
        for u, n in enumerate(unseq)
    ]

    plan = plan_commit(committed, batches, unsequenced)

    expected: Counter[int] = Counter()
    for w, (done, buffered) in enumerate(cases):
        key = WRITERS[w].key
        seqs = {seq for seq, _ in buffered}
        end = done
        while end + 1 in seqs:
            end += 1
        assert plan.offsets.get(key) == (end if end > done else None)
        # A gap is any buffered seq beyond the contiguous run: reported, never skipped.
        assert (key in plan.gaps) == any(s > end for s in seqs)
        for seq in range(done + 1, end + 1):
            expected.update(_ids(w, seq, sizes[(w, seq)]))
    for u, n in enumerate(unseq):
        expected.update(9_000_000 + u * 100 + i for i in range(n))
    assert _stored(plan) == expected  # every point of the chosen batches, each once
    assert plan.committed_before == committed
    if plan.chunks is None:
        assert not expected and plan.summaries is None
    else:
        assert plan.summaries is not None
        assert int(plan.summaries.count.sum()) == sum(expected.values())


def test_batches_committed_elsewhere_are_skipped_without_a_gap() -> None:
    key = WRITERS[0].key
    # Another replica committed 1..5; this one still holds 3..7.
    plan = plan_commit({key: 5}, {key: [_entry(0, s, 2) for s in range(3, 8)]}, [])
    assert plan.offsets == {key: 7}
    assert not plan.gaps
    assert _stored(plan) == Counter(_ids(0, 6, 2) + _ids(0, 7, 2))


def test_everything_committed_elsewhere_writes_nothing() -> None:
    key = WRITERS[0].key
    plan = plan_commit({key: 9}, {key: [_entry(0, s, 2) for s in range(3, 8)]}, [])
    assert plan == CommitPlan(None, None, {}, set(), {key: 9})


def test_a_gap_stops_the_writer_but_not_the_others() -> None:
    a, b = WRITERS[0].key, WRITERS[1].key
    plan = plan_commit(
        {a: 1, b: 0},
        {a: [_entry(0, 2, 1), _entry(0, 4, 1)], b: [_entry(1, 1, 1)]},
        [],
    )
    assert plan.offsets == {a: 2, b: 1}
    assert plan.gaps == {a}
    assert _stored(plan) == Counter(_ids(0, 2, 1) + _ids(1, 1, 1))


def test_empty_batches_consume_their_seq_and_write_nothing() -> None:
    key = WRITERS[0].key
    plan = plan_commit({key: 0}, {key: [_entry(0, 1, 0), _entry(0, 2, 0)]}, [])
    assert plan.offsets == {key: 2}
    assert plan.chunks is None and plan.summaries is None


def test_an_empty_unsequenced_batch_writes_nothing() -> None:
    # A unary LogMetrics with seq 0 and no points used to make build_chunks raise
    # IndexError, failing (and retrying) every flush it was part of.
    empty = _Entry(WRITERS[0], tagged_batch(0, []))
    assert plan_commit({}, {}, [empty]) == CommitPlan(None, None, {}, set(), {})
    key = WRITERS[1].key
    plan = plan_commit({key: 0}, {key: [_entry(1, 1, 0)]}, [empty, empty])
    assert plan.offsets == {key: 1} and plan.chunks is None
    with_points = plan_commit({}, {}, [empty, _Entry(WRITERS[0], tagged_batch(0, [5], TABLE))])
    assert _stored(with_points) == Counter([5])


def test_build_chunks_ignores_empty_batches_and_names_a_pointless_flush() -> None:
    empty = (WRITERS[0], tagged_batch(0, []))
    chunks, _ = build_chunks([empty, (WRITERS[1], tagged_batch(3, [1, 2], TABLE)), empty])
    assert chunks.wall_ns.tolist() == [1, 2]
    with pytest.raises(ValueError, match="at least one point"):
        build_chunks([empty, empty])
