"""Chunk codec: bit-exact round trips (property tests) and refusal of bad payloads."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tracker_server.domain import codec

I64_MIN, I64_MAX = -(2**63), 2**63 - 1

_special_bits = st.sampled_from([
    0x7FF8000000000000,  # quiet NaN
    0x7FF0000000000001,  # signalling NaN, smallest payload
    0xFFF8DEADBEEF0001,  # negative NaN with a payload
    0x7FFFFFFFFFFFFFFF,  # NaN, all payload bits
    0x8000000000000000,  # -0.0
    0x0000000000000000,  # +0.0
    0x0000000000000001,  # smallest subnormal
    0x000FFFFFFFFFFFFF,  # largest subnormal
    0x7FF0000000000000,  # +Inf
    0xFFF0000000000000,  # -Inf
    0x7FEFFFFFFFFFFFFF,  # largest finite
])
_value_bits = st.one_of(_special_bits, st.integers(0, 2**64 - 1))
_int64 = st.one_of(st.sampled_from([I64_MIN, I64_MAX, 0, -1, 1]),
                   st.integers(I64_MIN, I64_MAX))


@st.composite
def _chunks(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.one_of(st.integers(0, 300), st.integers(codec.BLOSC2_MIN_POINTS - 2, 1200)))
    kind = draw(st.sampled_from(["regular", "irregular", "random"]))
    if kind == "regular":
        first = draw(_int64)
        stride = draw(st.one_of(st.integers(-3, 3), _int64))
        with np.errstate(over="ignore"):
            steps = np.int64(first) + np.arange(n, dtype=np.int64) * np.int64(stride)
    elif kind == "irregular":
        first = draw(st.integers(-(10**6), 10**6))
        deltas = draw(hnp.arrays(np.int64, n, elements=st.integers(-5, 1000)))
        steps = first + np.cumsum(deltas)
    else:
        steps = draw(hnp.arrays(np.int64, n, elements=_int64))
    wall_kind = draw(st.sampled_from(["loop", "random"]))
    if wall_kind == "loop":
        base = draw(st.integers(0, 2**62))
        jitter = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 10**6)))
        wall = base + np.arange(n, dtype=np.int64) * 1_000_000 + jitter
    else:
        wall = draw(hnp.arrays(np.int64, n, elements=_int64))
    bits = draw(hnp.arrays(np.uint64, n, elements=_value_bits))
    return steps.astype(np.int64), bits.view(np.float64), wall.astype(np.int64)


def _assert_same(chunk: tuple[np.ndarray, np.ndarray, np.ndarray], got: codec.Decoded) -> None:
    steps, values, wall = chunk
    assert got.steps.dtype == np.int64 and got.wall_ns.dtype == np.int64
    assert got.values.dtype == np.float64
    assert got.steps.tolist() == steps.tolist()
    assert got.wall_ns.tolist() == wall.tolist()
    # Bit patterns, not float equality: NaN payloads and -0.0 must survive.
    assert got.values.view(np.uint64).tolist() == values.view(np.uint64).tolist()


@settings(max_examples=300, deadline=None)
@given(_chunks(), st.sampled_from([codec.VALUES_XOR, codec.VALUES_PLAIN]),
       st.sampled_from([1, 3]), st.sampled_from([None, codec.BODY_ZSTD, codec.BODY_BLOSC2]))
def test_round_trip_is_bit_exact(chunk: tuple[np.ndarray, np.ndarray, np.ndarray],
                                 mode: int, level: int, compressor: int | None) -> None:
    payload = codec.encode(*chunk, level=level, values_mode=mode, compressor=compressor)
    _assert_same(chunk, codec.decode(payload))


@settings(max_examples=200, deadline=None)
@given(_chunks())
def test_decode_accepts_memoryview_and_non_native_inputs(
        chunk: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    steps, values, wall = chunk
    # Big-endian / non-contiguous inputs (as decoded from PostgreSQL arrays) encode the
    # same points.
    strided = np.repeat(wall, 2)[::2]  # a view with a stride of 16 bytes
    assert len(wall) < 2 or not strided.flags.c_contiguous
    payload = codec.encode(steps.astype(">i8"), values.astype(">f8"), strided)
    _assert_same(chunk, codec.decode(memoryview(payload)))


def test_extremes_and_specials_exactly() -> None:
    steps = np.array([I64_MIN, I64_MAX, 0, -1, I64_MIN, 5], dtype=np.int64)
    wall = np.array([I64_MAX, I64_MIN, I64_MAX, 0, -1, I64_MIN], dtype=np.int64)
    bits = np.array([0x7FF0000000000001, 0x8000000000000000, 0x0000000000000001,
                     0x7FF0000000000000, 0xFFF0000000000000, 0xFFF8DEADBEEF0001],
                    dtype=np.uint64)
    got = codec.decode(codec.encode(steps, bits.view(np.float64), wall))
    _assert_same((steps, bits.view(np.float64), wall), got)
    assert np.signbit(got.values[1]) and got.values[1] == 0.0


def test_regular_steps_cost_no_bytes_per_point() -> None:
    n = 10_000
    steps = np.arange(n, dtype=np.int64) * 10 - 7
    wall = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000
    values = np.full(n, 3e-4)
    payload = codec.encode(steps, values, wall)
    # Regular steps, constant-delta wall times and a constant value: the header and
    # a compressed frame of zero runs (blosc2: ~300 bytes of headers for 10k points).
    assert payload[3] == codec.BODY_BLOSC2 and len(payload) < 400
    _assert_same((steps, values, wall), codec.decode(payload))


def test_noisy_training_metric_fits_in_8_bytes_per_point() -> None:
    rng = np.random.default_rng(0)
    n = 2500
    steps = np.arange(n, dtype=np.int64)
    # The ingest bench's shape: 1 ms per step, the client's send time jittering per
    # batch of 100 steps; a loss-like trend with float64 noise.
    batch_jitter = np.repeat(rng.integers(0, 50_000, n // 100 + 1), 100)[:n]
    wall = 1_700_000_000_000_000_000 + steps * 1_000_000 + np.cumsum(batch_jitter)
    values = 1.5 / np.sqrt(1 + steps / 1000) + rng.standard_normal(n) * 0.01
    payload = codec.encode(steps, values, wall)
    assert len(payload) / n < 7.0


def test_incompressible_body_is_stored_raw() -> None:
    rng = np.random.default_rng(1)
    n = 64
    bits = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    steps = rng.integers(I64_MIN, I64_MAX, n, dtype=np.int64)
    wall = rng.integers(I64_MIN, I64_MAX, n, dtype=np.int64)
    payload = codec.encode(steps, bits.view(np.float64), wall, values_mode=codec.VALUES_PLAIN)
    assert payload[3] == codec.BODY_RAW
    assert len(payload) == 8 + 3 * 8 * n
    _assert_same((steps, bits.view(np.float64), wall), codec.decode(payload))


def test_tiny_chunks_are_stored_plain() -> None:
    steps = np.array([7, 7, -3], dtype=np.int64)
    bits = np.array([0x7FF0000000000001, 0x8000000000000000, 1], dtype=np.uint64)
    wall = np.array([I64_MAX, I64_MIN, 0], dtype=np.int64)
    payload = codec.encode(steps, bits.view(np.float64), wall)
    assert payload[3] == codec.BODY_PLAIN and len(payload) == 8 + 3 * 8 * 3
    _assert_same((steps, bits.view(np.float64), wall), codec.decode(payload))


def test_empty_chunk() -> None:
    z = np.zeros(0, dtype=np.int64)
    got = codec.decode(codec.encode(z, np.zeros(0), z))
    assert got.steps.shape == got.values.shape == got.wall_ns.shape == (0,)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        codec.encode(np.zeros(3, np.int64), np.zeros(2), np.zeros(3, np.int64))


def _payload() -> bytes:
    steps = np.array([3, 1, 4, 1, 5], dtype=np.int64)
    return codec.encode(steps, np.linspace(0, 1, 5), steps * 1000)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda p: p[:5], "shorter than its header"),
    (lambda p: bytes([9]) + p[1:], "unknown chunk encoding version 9"),
    (lambda p: p[:1] + bytes([7]) + p[2:], "unknown chunk encoding mode"),
    (lambda p: p[:4] + struct.pack("<I", codec.MAX_POINTS + 1) + p[8:], "claims"),
    (lambda p: p[:4] + struct.pack("<I", 6) + p[8:], "expected"),
    (lambda p: p[:-3], "expected|does not decompress"),
])
def test_corrupt_payloads_raise_codec_error(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(codec.CodecError, match=message):
        codec.decode(mutate(_payload()))


def test_corrupt_zstd_frame_raises_codec_error() -> None:
    n = 1000
    steps = np.arange(n, dtype=np.int64)
    payload = bytearray(codec.encode(steps, np.zeros(n), steps, compressor=codec.BODY_ZSTD))
    assert payload[3] == codec.BODY_ZSTD
    payload[24 + 4 : 24 + 12] = b"\xff" * 8  # inside the zstd frame (after 24 header bytes)
    with pytest.raises(codec.CodecError):
        codec.decode(bytes(payload))


def test_small_chunks_use_zstd_and_big_ones_blosc2() -> None:
    for n, body in ((codec.PLAIN_MAX_POINTS + 1, codec.BODY_ZSTD),
                    (codec.BLOSC2_MIN_POINTS - 1, codec.BODY_ZSTD),
                    (codec.BLOSC2_MIN_POINTS, codec.BODY_BLOSC2)):
        steps = np.arange(n, dtype=np.int64)
        assert codec.encode(steps, np.sin(steps / 10.0), steps * 1000)[3] == body


def test_threads_encode_and_decode_at_once_with_the_gil_released() -> None:
    # blosc2 releases the GIL (the flush lanes' build threads encode while the event
    # loop parses): concurrent calls must not share state.
    import threading

    rng = np.random.default_rng(7)
    chunks = [(np.arange(n, dtype=np.int64) * 3, rng.standard_normal(n),
               np.cumsum(rng.integers(1, 1000, n)).astype(np.int64))
              for n in (600, 2000, 5000, 9000)]
    want = [codec.encode(*c) for c in chunks]
    errors: list[str] = []

    def work(i: int) -> None:
        for _ in range(30):
            payload = codec.encode(*chunks[i])
            if payload != want[i]:
                errors.append(f"chunk {i}: encoding differs")
            got = codec.decode(payload)
            if not np.array_equal(got.values.view(np.uint64), chunks[i][1].view(np.uint64)):
                errors.append(f"chunk {i}: values differ")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(chunks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("cut", ["truncate", "flip", "header"])
def test_corrupt_blosc2_chunk_raises_codec_error(cut: str) -> None:
    n = 2000
    steps = np.arange(n, dtype=np.int64)
    payload = bytearray(codec.encode(steps, np.sin(steps / 10.0), steps * 1000))
    assert payload[3] == codec.BODY_BLOSC2
    body = 8 + 16  # header + regular steps
    if cut == "truncate":
        payload = payload[:-10]
    elif cut == "flip":
        payload[body + 40 : body + 60] = b"\xa5" * 20
    else:
        payload[body + 4 : body + 8] = (10**9).to_bytes(4, "little")  # claims 1 GB
    with pytest.raises(codec.CodecError):
        codec.decode(bytes(payload))


def test_bench_codec_smoke(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from bench.codec import SHAPES, main

    out = tmp_path / "codec.json"
    assert main(["--points", "3000", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["codec_version"] == codec.VERSION and set(data["shapes"]) == set(SHAPES)
    ingest = data["shapes"]["ingest"]
    assert ingest["points"] >= 3000 and 0 < ingest["bytes_per_point"] < 8
    assert ingest["encode_points_per_s"] > 0 and ingest["decode_points_per_s"] > 0
    assert set(ingest["columns_bytes_per_point"]) == {"steps", "wall_ns", "values"}
