"""Encode chunk rows as PostgreSQL binary COPY data, from numpy in bulk.

The payload is built in one preallocated buffer: each array's elements (a 4-byte
length before every 8-byte big-endian value) are written through a structured numpy
view of that buffer, so there is no per-point Python work and no intermediate copy of
the whole flush. Python only loops over chunk rows (tens to hundreds per flush).
"""

from __future__ import annotations

import struct

import numpy as np

from tracker_server.domain.chunking import ChunkSet

COPY_COLUMNS = (
    "run_id", "key_id", "rank", "attempt", "first_step", "last_step", "n",
    "steps", '"values"', "wall_ns",
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


def encoded_size(chunks: ChunkSet) -> int:
    """Bytes of the COPY payload of ``chunks``."""
    return len(_HEADER) + chunks.rows * _ROW_FIXED + chunks.points * 36 + len(_TRAILER)


def encode_chunks(chunks: ChunkSet) -> memoryview:
    """Binary COPY payload for ``COPY metric_chunks (COPY_COLUMNS) FROM STDIN BINARY``."""
    out = np.empty(encoded_size(chunks), dtype=np.uint8)
    raw = memoryview(out)  # type: ignore[arg-type]
    raw[: len(_HEADER)] = _HEADER
    off = len(_HEADER)
    rows = zip(
        chunks.run_ids,
        chunks.key_ids.tolist(),
        chunks.ranks.tolist(),
        chunks.attempts.tolist(),
        chunks.first_steps.tolist(),
        chunks.last_steps.tolist(),
        chunks.n.tolist(),
        chunks.starts.tolist(),
        strict=True,
    )
    columns = ((chunks.steps, _ELEM_I8, _INT8_OID), (chunks.values, _ELEM_F8, _FLOAT8_OID),
               (chunks.wall_ns, _ELEM_I8, _INT8_OID))
    for run_id, key_id, rank, attempt, first, last, n, start in rows:
        _ROW.pack_into(raw, off, 10, 16, run_id.bytes, 4, key_id, 4, rank, 4, attempt,
                       8, first, 8, last, 4, n)
        off += _ROW.size
        for source, elem, oid in columns:
            _ARRAY_HEAD.pack_into(raw, off, 20 + n * 12, 1, 0, oid, n, 1)
            off += _ARRAY_HEAD.size
            block = out[off : off + n * 12].view(elem)
            block["len"] = 8
            block["v"] = source[start : start + n]
            off += n * 12
    raw[off : off + len(_TRAILER)] = _TRAILER
    return raw
