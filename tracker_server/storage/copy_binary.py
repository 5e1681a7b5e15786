"""Encode chunk rows as PostgreSQL binary COPY data, from numpy in bulk.

The per-element part of an array (a 4-byte length before every 8-byte value) is
built with one structured numpy array for the whole flush; Python only loops over
chunk rows (tens to hundreds per flush), never over points.
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


def _elements(values: np.ndarray, dtype: str) -> np.ndarray:
    """Interleave a 4-byte length (8) before each big-endian 8-byte element."""
    out = np.empty(values.shape[0], dtype=[("len", ">i4"), ("v", dtype)])
    out["len"] = 8
    out["v"] = values
    return out


def encode_chunks(chunks: ChunkSet) -> bytes:
    """Binary COPY payload for ``COPY metric_chunks (COPY_COLUMNS) FROM STDIN BINARY``."""
    steps = _elements(chunks.steps, ">i8").view(np.uint8)
    values = _elements(chunks.values, ">f8").view(np.uint8)
    wall = _elements(chunks.wall_ns, ">i8").view(np.uint8)
    parts: list[bytes | memoryview] = [_HEADER]
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
    for run_id, key_id, rank, attempt, first, last, n, start in rows:
        parts.append(
            _ROW.pack(10, 16, run_id.bytes, 4, key_id, 4, rank, 4, attempt,
                      8, first, 8, last, 4, n)
        )
        lo, hi = start * 12, (start + n) * 12
        size = 20 + n * 12
        parts.append(_ARRAY_HEAD.pack(size, 1, 0, _INT8_OID, n, 1))
        parts.append(steps[lo:hi].data)
        parts.append(_ARRAY_HEAD.pack(size, 1, 0, _FLOAT8_OID, n, 1))
        parts.append(values[lo:hi].data)
        parts.append(_ARRAY_HEAD.pack(size, 1, 0, _INT8_OID, n, 1))
        parts.append(wall[lo:hi].data)
    parts.append(_TRAILER)
    return b"".join(parts)
