"""The hand-written MetricColumns encoder equals protobuf's, byte for byte."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker_client._packed import encode_columns, varint, varints
from tracker_proto.v1 import metrics_pb2

I64 = st.integers(-(2**63), 2**63 - 1)
U32 = st.integers(0, 2**32 - 1)
KEYS = st.lists(st.text(max_size=12), max_size=5)


def _reference(keys: list[str], ki: list[int], steps: list[int], values: list[float],
               wall: list[int]) -> bytes:
    return metrics_pb2.MetricColumns(keys=keys, key_index=ki, steps=steps, values=values,
                                     wall_time_ns=wall).SerializeToString()


def _check(keys: list[str], ki: list[int], steps: list[int], values: list[float],
           wall: list[int]) -> None:
    got = encode_columns(keys, np.array(ki, dtype=np.uint32), np.array(steps, dtype=np.int64),
                         np.array(values, dtype=np.float64), np.array(wall, dtype=np.int64))
    assert got == _reference(keys, ki, steps, values, wall)


@settings(max_examples=300, deadline=None)
@given(keys=KEYS, data=st.lists(st.tuples(U32, I64, st.floats(allow_nan=True), I64),
                                max_size=60))
def test_any_columns(keys: list[str], data: list[tuple[int, int, float, int]]) -> None:
    ki, steps, values, wall = (list(c) for c in zip(*data, strict=True)) if data else \
        ([], [], [], [])
    _check(keys, ki, steps, values, wall)


@settings(max_examples=100, deadline=None)
@given(first=st.integers(-(2**40), 2**40), n_records=st.integers(1, 300),
       n_keys=st.integers(1, 12), t0=I64, dt=st.integers(0, 10**9))
def test_log_shaped_batches(first: int, n_records: int, n_keys: int, t0: int,
                            dt: int) -> None:
    # What the batcher builds: each record's step and wall time repeated for its keys
    # (the run-length path), steps crossing varint widths, wall times wrapping.
    steps = np.repeat(np.arange(first, first + n_records, dtype=np.int64), n_keys)
    with np.errstate(over="ignore"):
        wall = np.repeat(np.int64(t0) + np.arange(n_records, dtype=np.int64) * np.int64(dt),
                         n_keys)
    ki = np.tile(np.arange(n_keys, dtype=np.uint32), n_records)
    values = np.random.default_rng(n_records).standard_normal(steps.shape[0])
    _check([f"k{i}" for i in range(n_keys)], ki.tolist(), steps.tolist(), values.tolist(),
           wall.tolist())


def test_nan_payloads_and_signed_zero_are_bit_exact() -> None:
    bits = np.array([0x7FF8000000000001, 0xFFF0000000000001, 0x8000000000000000, 1,
                     0x7FF0000000000000], dtype=np.uint64)
    values = bits.view(np.float64)
    got = encode_columns(["a"], np.zeros(5, np.uint32), np.arange(5), values, np.zeros(5))
    parsed = metrics_pb2.MetricColumns.FromString(got)
    assert np.array(parsed.values, dtype=np.float64).view(np.uint64).tolist() == bits.tolist()


@given(st.lists(st.integers(0, 2**64 - 1), max_size=80))
def test_varints_match_the_scalar_encoder(values: list[int]) -> None:
    assert varints(np.array(values, dtype=np.uint64)) == b"".join(varint(v) for v in values)
