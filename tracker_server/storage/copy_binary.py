"""Encode chunk rows as PostgreSQL binary COPY data, from numpy in bulk.

The payload is built in one preallocated buffer: each array's elements (a 4-byte
length before every 8-byte big-endian value) are written through a structured numpy
view of that buffer, so there is no per-point Python work and no intermediate copy of
the whole flush. Python only loops over chunk rows (tens to hundreds per flush).
A row without a min/max sketch writes the three sketch columns as NULL (length -1).
"""

from __future__ import annotations

import struct

import numpy as np

from tracker_server.domain.chunking import ChunkSet

COPY_COLUMNS = (
    "run_id", "key_id", "rank", "attempt", "first_step", "last_step", "n",
    "steps", '"values"', "wall_ns", "sketch_steps", "sketch_values", "sketch_wall_ns",
)
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_TRAILER = struct.pack("!h", -1)
_INT8_OID = 20
_FLOAT8_OID = 701
# Row prefix: field count, uuid, key_id, rank, attempt, first_step, last_step, n.
_ROW = struct.Struct("!h i16s i i i i i i i q i q i i")
_ARRAY_HEAD = struct.Struct("!i iiiii")  # field length, ndim, has_null, oid, dim, lbound
_ELEM_I8 = np.dtype([("len", ">i4"), ("v", ">i8")])
_ELEM_F8 = np.dtype([("len", ">i4"), ("v", ">f8")])
_ROW_FIXED = _ROW.size + 3 * _ARRAY_HEAD.size
_NULL3 = struct.pack("!iii", -1, -1, -1)  # three NULL fields: no sketch


def encoded_size(chunks: ChunkSet) -> int:
    """Bytes of the COPY payload of ``chunks``."""
    sketched = int(np.count_nonzero(chunks.sketch.n >= 0))
    return (len(_HEADER) + chunks.rows * _ROW_FIXED + chunks.points * 36
            + sketched * 3 * _ARRAY_HEAD.size + chunks.sketch.points * 36
            + (chunks.rows - sketched) * len(_NULL3) + len(_TRAILER))


def _write_arrays(out: np.ndarray, raw: memoryview, off: int,
                  columns: tuple[tuple[np.ndarray, np.dtype, int], ...], start: int, n: int
                  ) -> int:
    """Write one row's ``columns[start:start + n]`` as binary arrays; returns the offset."""
    for source, elem, oid in columns:
        _ARRAY_HEAD.pack_into(raw, off, 20 + n * 12, 1, 0, oid, n, 1)
        off += _ARRAY_HEAD.size
        block = out[off : off + n * 12].view(elem)
        block["len"] = 8
        block["v"] = source[start : start + n]
        off += n * 12
    return off


def encode_chunks(chunks: ChunkSet) -> memoryview:
    """Binary COPY payload for ``COPY metric_chunks (COPY_COLUMNS) FROM STDIN BINARY``."""
    out = np.empty(encoded_size(chunks), dtype=np.uint8)
    raw = memoryview(out)  # type: ignore[arg-type]
    raw[: len(_HEADER)] = _HEADER
    off = len(_HEADER)
    sk = chunks.sketch
    rows = zip(
        chunks.run_ids,
        chunks.key_ids.tolist(),
        chunks.ranks.tolist(),
        chunks.attempts.tolist(),
        chunks.first_steps.tolist(),
        chunks.last_steps.tolist(),
        chunks.n.tolist(),
        chunks.starts.tolist(),
        sk.n.tolist(),
        sk.starts.tolist(),
        strict=True,
    )
    columns = ((chunks.steps, _ELEM_I8, _INT8_OID), (chunks.values, _ELEM_F8, _FLOAT8_OID),
               (chunks.wall_ns, _ELEM_I8, _INT8_OID))
    sketch_columns = ((sk.steps, _ELEM_I8, _INT8_OID), (sk.values, _ELEM_F8, _FLOAT8_OID),
                      (sk.wall_ns, _ELEM_I8, _INT8_OID))
    for run_id, key_id, rank, attempt, first, last, n, start, sk_n, sk_start in rows:
        _ROW.pack_into(raw, off, len(COPY_COLUMNS), 16, run_id.bytes, 4, key_id, 4, rank,
                       4, attempt, 8, first, 8, last, 4, n)
        off += _ROW.size
        off = _write_arrays(out, raw, off, columns, start, n)
        if sk_n < 0:
            raw[off : off + len(_NULL3)] = _NULL3
            off += len(_NULL3)
        else:
            off = _write_arrays(out, raw, off, sketch_columns, sk_start, sk_n)
    raw[off : off + len(_TRAILER)] = _TRAILER
    return raw
