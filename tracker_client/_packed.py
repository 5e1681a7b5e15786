"""``MetricColumns`` serialized straight from numpy columns.

Filling protobuf repeated fields from Python makes every element a Python object on the
way in: 160-210 ns per point for a batch of ``log()`` records of 10 keys (2,000 and
100,000 points, measured with ``timeit`` on the reference machine), most of the batcher
thread's time, and that thread shares the GIL with the training loop. The wire format
of packed repeated fields is simple and fixed (protobuf's encoding spec), so the
columns are encoded here with whole-array numpy passes instead: ~50 ns per point for
the same batches. ``tests/unit/test_packed.py`` proves the bytes equal protobuf's own
``SerializeToString`` for any input.

``MetricColumns`` (protos/tracker/v1/metrics.proto): 1 keys (string), 2 key_index
(packed uint32 varints), 3 steps (packed sint64: zigzag varints), 4 values (packed
double: 8 bytes little-endian each), 5 wall_time_ns (packed int64: varints of the two's
complement, 10 bytes when negative).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

_MAX_VARINT = 10
_THRESHOLDS = np.array([1 << (7 * j) for j in range(1, _MAX_VARINT)], dtype=np.uint64)


def varint(value: int) -> bytes:
    """One unsigned varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _uniform(v: npt.NDArray[np.uint64], width: int) -> npt.NDArray[np.uint8]:
    """Varints of elements that all take ``width`` bytes, one row each."""
    rest = v.copy()
    group = np.empty_like(rest)
    rows = np.empty((v.shape[0], width), dtype=np.uint8)
    for j in range(width):
        np.bitwise_and(rest, np.uint64(0x7F), out=group)
        if j < width - 1:
            group |= np.uint64(0x80)
            rest >>= np.uint64(7)
        rows[:, j] = group
    return rows


def _same_width(u: npt.NDArray[np.uint64], width: int) -> bytes:
    """Varints of elements of one width. Runs of equal values (a log() record's step
    and wall time are shared by all of its keys) are encoded once and repeated."""
    n = u.shape[0]
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(u[1:], u[:-1], out=new[1:])
    firsts = np.flatnonzero(new)
    if firsts.shape[0] * 2 > n:
        return _uniform(u, width).tobytes()
    counts = np.diff(np.append(firsts, n))
    return np.repeat(_uniform(u[firsts], width), counts, axis=0).tobytes()


def _width(value: int) -> int:
    """Bytes of the varint of ``value``."""
    return max(1, (value.bit_length() + 6) // 7)


def varints(u: npt.NDArray[np.uint64]) -> bytes:
    """Unsigned varints of every element, concatenated (a packed field's body)."""
    n = u.shape[0]
    if not n:
        return b""
    top = int(u.max())
    if top < 0x80:  # every element one byte (key indexes, small steps)
        return u.astype(np.uint8).tobytes()
    width = _width(top)
    if _width(int(u.min())) == width:  # the usual case: widths between min and max's
        return _same_width(u, width)
    # Mixed widths (steps crossing a power of 128, negative wall times, random ids):
    # every element's groups as one row of a matrix, then only the bytes each needs.
    lengths = np.searchsorted(_THRESHOLDS, u, side="right") + 1
    rows = _uniform(u, int(lengths.max()))
    last = np.arange(rows.shape[1]) == (lengths - 1)[:, None]
    rows[last] &= np.uint8(0x7F)  # the last byte of each varint has no continuation bit
    return rows[np.arange(rows.shape[1]) < lengths[:, None]].tobytes()


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(body)) + body if body else b""


def encode_columns(keys: Sequence[str], key_index: npt.NDArray[np.uint32],
                   steps: npt.NDArray[np.int64], values: npt.NDArray[np.float64],
                   wall_ns: npt.NDArray[np.int64]) -> bytes:
    """Serialized ``MetricColumns``, byte for byte what protobuf writes."""
    s = np.ascontiguousarray(steps, dtype=np.int64)
    zigzag = (s << np.int64(1)) ^ (s >> np.int64(63))  # sint64; wraps like protobuf's
    parts = [_field(1, k.encode("utf-8")) if k else b"\x0a\x00" for k in keys]
    parts.append(_field(2, varints(np.asarray(key_index, dtype=np.uint32).astype(np.uint64))))
    parts.append(_field(3, varints(zigzag.view(np.uint64))))
    parts.append(_field(4, np.ascontiguousarray(values, dtype="<f8").tobytes()))
    parts.append(_field(5, varints(np.ascontiguousarray(wall_ns, dtype=np.int64)
                                   .view(np.uint64))))
    return b"".join(parts)
