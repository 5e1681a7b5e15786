"""Chunk encoding: a chunk's steps, values and wall times as one compact ``bytes``.

Lossless and bit-exact (values are handled as their 64-bit patterns, never as floats,
so NaN payloads, -0.0, subnormals and +-Inf survive; integer arithmetic wraps, so
int64 extremes do too). Every transform is a handful of whole-array numpy passes; the
only per-chunk Python is the header and one zstd call.

Layout, version 1 (little-endian)::

    u8 version (1) | u8 steps mode | u8 values mode | u8 body mode | u32 n
    steps mode REGULAR: i64 first step, i64 stride (step i = first + i * stride)
    body (body mode ZSTD: a zstd frame of the bytes below; BLOSC2: a blosc2 chunk of
    the same columns before byte-shuffling, which blosc2's SHUFFLE filter does; RAW: the
    bytes below as they are):
        steps mode DELTA only: n x 8 bytes, zigzag(step[i] - step[i-1]), byte-shuffled
        n x 8 bytes: zigzag of the wall times' delta-of-delta, byte-shuffled
        n x 8 bytes: the values' bit patterns, XOR'd with the previous value's
                     (values mode XOR) or as they are (values mode PLAIN), byte-shuffled
    body mode PLAIN (chunks of at most PLAIN_MAX_POINTS points): steps, wall times and
        value bits as they are, n x 8 bytes each, no transforms, no compression

Why these transforms (measured with ``python -m bench codec``, see
docs/decisions/0003-chunk-encoding.md): training steps are almost always a regular
progression (16 bytes for the whole chunk); wall times of a step loop have a nearly
constant delta, so their delta-of-delta is mostly zero; consecutive values of one
metric share sign, exponent and leading mantissa bits. Byte-shuffling puts byte k of
every element together, so those repeated (or zero) bytes form long runs that zstd
removes; the random low mantissa bytes of a noisy float64 stay about 1 byte each
(blosc2 compresses each byte plane on its own, so those cost 1 and the others less).
XOR with the previous value (the Gorilla transform) is supported but measured no smaller
than the shuffle alone, so it is not the default. A body that does not shrink is stored
raw.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

import blosc2
import numpy as np
import numpy.typing as npt
import zstandard

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
_U64 = np.dtype("<u8")
_I64 = np.dtype("<i8")

VERSION = 1

STEPS_REGULAR = 0
STEPS_DELTA = 1
VALUES_PLAIN = 0
VALUES_XOR = 1
BODY_RAW = 0
BODY_ZSTD = 1
BODY_PLAIN = 2
BODY_BLOSC2 = 3

BLOSC2_MIN_POINTS = 512
"""Chunks from this size on are compressed with blosc2 (its SIMD byte-shuffle and
zstd level 1 on each byte plane separately: 2-15% smaller than numpy's shuffle and one
zstd frame, encoding 15-30% slower and decoding ~5% faster, ``bench codec``); smaller
ones with one zstd frame, whose
~15 bytes of framing beat blosc2's ~100 on a few dozen points. The same bound as the
compactor's small chunks (512)."""

PLAIN_MAX_POINTS = 8
"""Chunks up to this size are stored as their three columns as they are (body mode
PLAIN: no transforms, no zstd). They gain nothing from either (a zstd frame alone is ~10
bytes) and the numpy calls of the full path cost ~30 us per chunk, which a flush of
thousands of one-point chunks (the lowfreq profile) would pay per row."""

DEFAULT_VALUES_MODE = VALUES_PLAIN
"""Byte-shuffle alone is as small as XOR + shuffle on every measured shape (within 1%,
usually smaller: ``bench codec``), and cheaper to decode (no prefix XOR)."""

DEFAULT_LEVEL = 1
"""zstd level. Level 1 is within a few percent of level 3's size on chunk bodies (the
entropy is in the random low mantissa bytes, which no level removes) at about twice the
speed (``bench codec --levels``)."""

MAX_POINTS = 1 << 24
"""Largest chunk a payload may claim (flush chunks are at most 16,384 points, merged
ones a little more): a corrupt header cannot make the decoder allocate gigabytes."""

_HEAD = struct.Struct("<BBBBI")
# Chunks are encoded in the flush lanes' build threads while the event loop parses the
# next batches: blosc2 holding the GIL while it compresses (its default) serialised the
# two. The penalty of releasing it is for tiny buffers; ours are 4 KiB and up.
blosc2.set_releasegil(True)
_BLOSC2_CODECS = {"zstd": blosc2.Codec.ZSTD, "lz4": blosc2.Codec.LZ4}
_REGULAR = struct.Struct("<qq")


class CodecError(ValueError):
    """A payload that is not a valid encoded chunk (corrupt, truncated, unknown version)."""


@dataclass(frozen=True)
class Decoded:
    """Points of one chunk, in stored order."""

    steps: Int64Array
    values: Float64Array
    wall_ns: Int64Array


_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    """Per-thread compressor (a ZstdCompressor must not be used by two threads at once;
    flush lanes encode concurrently)."""
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "c", None)
    if cache is None:
        cache = _local.c = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def _zigzag(x: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    return ((x << 1) ^ (x >> 63)).view(np.uint64)


def _unzigzag(u: npt.NDArray[np.uint64]) -> Int64Array:
    return ((u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1)))).view(np.int64)


def _delta(x: Int64Array) -> Int64Array:
    """x[0], x[1] - x[0], ... (wrapping int64)."""
    out = np.empty_like(x)
    if x.shape[0]:
        out[0] = x[0]
        np.subtract(x[1:], x[:-1], out=out[1:])
    return out


def _shuffle(u: npt.NDArray[np.uint64]) -> bytes:
    """Byte k of every element together (8 planes of n bytes)."""
    return np.ascontiguousarray(u.astype(_U64, copy=False).view(np.uint8).reshape(-1, 8).T
                                ).tobytes()


def _planes(cols: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    """Each row of ``cols`` byte-shuffled: byte k of every element together."""
    n = cols.shape[1]
    return np.ascontiguousarray(cols.view(np.uint8).reshape(cols.shape[0], n, 8)
                                .transpose(0, 2, 1))


def _regular_stride(deltas: Int64Array) -> int | None:
    """The stride when the steps whose ``_delta`` this is are first + i * stride
    (wrapping), else None."""
    if deltas.shape[0] <= 1:
        return 0
    stride = int(deltas[1])
    return stride if bool((deltas[1:] == stride).all()) else None


def encode(steps: Int64Array, values: Float64Array, wall_ns: Int64Array,
           level: int = DEFAULT_LEVEL, values_mode: int = DEFAULT_VALUES_MODE,
           compressor: int | None = None, blosc2_codec: str = "zstd") -> bytes:
    """One chunk's columns (equal lengths) as a version-1 payload. ``compressor``
    (BODY_ZSTD or BODY_BLOSC2) overrides the choice by size, ``blosc2_codec`` ("zstd" or
    "lz4") the codec inside blosc2 (both for measurements; a blosc2 chunk records its
    codec, so the decoder reads either)."""
    n = int(steps.shape[0])
    if values.shape[0] != n or wall_ns.shape[0] != n:
        raise ValueError("steps, values and wall_ns must have the same length")
    if n > MAX_POINTS:
        raise ValueError(f"a chunk holds at most {MAX_POINTS} points, got {n}")
    if n <= PLAIN_MAX_POINTS:
        return b"".join((_HEAD.pack(VERSION, STEPS_DELTA, VALUES_PLAIN, BODY_PLAIN, n),
                         np.asarray(steps, dtype=_I64).tobytes(),
                         np.asarray(wall_ns, dtype=_I64).tobytes(),
                         np.asarray(values, dtype="<f8").tobytes()))
    if values_mode not in (VALUES_PLAIN, VALUES_XOR):
        raise ValueError(f"unknown values mode {values_mode}")
    steps = np.asarray(steps, dtype=np.int64)
    with np.errstate(over="ignore"):
        step_deltas = _delta(steps)  # once: for the stride check and the delta column
        stride = _regular_stride(step_deltas)
        # The transformed columns as rows of one little-endian matrix, byte-shuffled with
        # a single transposing copy: fewer numpy calls per chunk than column by column.
        cols = np.empty((2 if stride is not None else 3, n), dtype=_U64)
        if stride is None:
            cols[0] = _zigzag(step_deltas)
        cols[-2] = _zigzag(_delta(_delta(np.asarray(wall_ns, dtype=np.int64))))
    bits = np.asarray(values, dtype=np.float64).view(np.uint64)
    if values_mode == VALUES_XOR:
        np.bitwise_xor(bits[1:], bits[:-1], out=cols[-1, 1:])
        cols[-1, 0] = bits[0]
    else:
        cols[-1] = bits
    if compressor is None:
        compressor = BODY_BLOSC2 if n >= BLOSC2_MIN_POINTS else BODY_ZSTD
    shuffled: npt.NDArray[np.uint8] | None = None
    if compressor == BODY_BLOSC2:
        packed = blosc2.compress2(cols, typesize=8, codec=_BLOSC2_CODECS[blosc2_codec],
                                  clevel=level if blosc2_codec == "zstd" else 9,
                                  filters=[blosc2.Filter.SHUFFLE], filters_meta=[0],
                                  splitmode=blosc2.SplitMode.ALWAYS_SPLIT, nthreads=1)
    elif compressor == BODY_ZSTD:
        shuffled = _planes(cols)
        packed = _compressor(level).compress(memoryview(shuffled))  # type: ignore[arg-type]
    else:
        raise ValueError(f"unknown compressor {compressor}")
    small = len(packed) < cols.nbytes
    # Stored raw: the shuffled planes (the layout of a ZSTD body before compression).
    body = packed if small else (_planes(cols) if shuffled is None else shuffled).tobytes()
    body_mode = compressor if small else BODY_RAW
    head = _HEAD.pack(VERSION, STEPS_DELTA if stride is None else STEPS_REGULAR, values_mode,
                      body_mode, n)
    if stride is not None:
        first = int(steps[0]) if n else 0
        head += _REGULAR.pack(first, stride)
    return b"".join((head, body))


def _blosc2_body(frame: bytes | memoryview, want: int) -> bytes:
    """A blosc2 chunk's bytes, after checking its header claims ``want`` of them (a
    corrupt header must not make it allocate more)."""
    if len(frame) < 16:
        raise CodecError("chunk payload truncated in its blosc2 header")
    try:
        nbytes, cbytes, _blocksize = blosc2.get_cbuffer_sizes(bytes(frame[:32]))
    except (RuntimeError, ValueError) as exc:
        raise CodecError(f"chunk payload does not decompress: {exc}") from exc
    if nbytes != want:
        raise CodecError(f"chunk body has {nbytes} bytes, expected {want}")
    if cbytes != len(frame):
        raise CodecError(f"chunk payload has {len(frame)} bytes of blosc2 data, its header "
                         f"says {cbytes}")
    try:
        out = blosc2.decompress2(bytes(frame))
    except (RuntimeError, ValueError) as exc:
        raise CodecError(f"chunk payload does not decompress: {exc}") from exc
    if not isinstance(out, bytes | bytearray):
        raise CodecError("chunk payload does not decompress to bytes")
    return bytes(out)


def decode(payload: bytes | memoryview) -> Decoded:
    """Inverse of ``encode``; ``CodecError`` for a payload whose header, sizes or
    compressed frames are not valid. There is no checksum: a payload damaged inside its
    compressed body can decode to other values without an error."""
    buf = memoryview(payload).cast("B")
    if len(buf) < _HEAD.size:
        raise CodecError(f"chunk payload of {len(buf)} bytes is shorter than its header")
    version, steps_mode, values_mode, body_mode, n = _HEAD.unpack_from(buf)
    if version != VERSION:
        raise CodecError(f"unknown chunk encoding version {version}")
    if (steps_mode not in (STEPS_REGULAR, STEPS_DELTA)
            or values_mode not in (VALUES_PLAIN, VALUES_XOR)
            or body_mode not in (BODY_RAW, BODY_ZSTD, BODY_PLAIN, BODY_BLOSC2)):
        raise CodecError("unknown chunk encoding mode")
    if body_mode == BODY_PLAIN and (steps_mode, values_mode) != (STEPS_DELTA, VALUES_PLAIN):
        raise CodecError("unknown chunk encoding mode")
    if n > MAX_POINTS:
        raise CodecError(f"chunk payload claims {n} points (at most {MAX_POINTS})")
    off = _HEAD.size
    first = stride = 0
    if steps_mode == STEPS_REGULAR:
        if len(buf) < off + _REGULAR.size:
            raise CodecError("chunk payload truncated in its step header")
        first, stride = _REGULAR.unpack_from(buf, off)
        off += _REGULAR.size
    want = 8 * n * (3 if steps_mode == STEPS_DELTA else 2)
    body: bytes | memoryview = buf[off:]
    if body_mode == BODY_ZSTD:
        try:
            body = _decompressor().decompress(body, max_output_size=want)
        except zstandard.ZstdError as exc:
            raise CodecError(f"chunk payload does not decompress: {exc}") from exc
    elif body_mode == BODY_BLOSC2:
        body = _blosc2_body(body, want)
    if len(body) != want:
        raise CodecError(f"chunk body has {len(body)} bytes, expected {want}")
    if body_mode == BODY_PLAIN:
        cols = np.frombuffer(body, dtype=_I64).reshape(3, n)
        return Decoded(cols[0].astype(np.int64), cols[2].astype(np.int64).view(np.float64),
                       cols[1].astype(np.int64))
    m = 3 if steps_mode == STEPS_DELTA else 2
    if body_mode == BODY_BLOSC2:
        cols = np.frombuffer(body, dtype=_U64).reshape(m, n).astype(np.uint64, copy=False)
    else:
        cols = np.ascontiguousarray(
            np.frombuffer(body, dtype=np.uint8).reshape(m, 8, n).transpose(0, 2, 1)
        ).view(_U64).reshape(m, n).astype(np.uint64, copy=False)
    with np.errstate(over="ignore"):
        if steps_mode == STEPS_REGULAR:
            steps = np.int64(first) + np.arange(n, dtype=np.int64) * np.int64(stride)
        else:
            steps = np.cumsum(_unzigzag(cols[0]), dtype=np.int64)
        wall = np.cumsum(np.cumsum(_unzigzag(cols[-2]), dtype=np.int64), dtype=np.int64)
    bits = cols[-1]
    if values_mode == VALUES_XOR:
        bits = np.bitwise_xor.accumulate(bits)
    return Decoded(steps, bits.view(np.float64), wall)
