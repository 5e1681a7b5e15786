"""Encode chunk rows as PostgreSQL binary COPY data.

Each chunk row's points go in as one codec payload (``domain.codec``, encoding 1) and
its min/max sketch, when it has one, as a second payload (NULL otherwise); the array
columns stay NULL (migration 0013). The codec does the per-point work in numpy; Python
only loops over chunk rows (tens to hundreds per flush) to frame them.
"""

from __future__ import annotations

import struct

from tracker_server.domain import codec
from tracker_server.domain.chunking import ChunkSet

ENCODING_ARRAYS = 0
"""Chunk stored as int8[] / float8[] arrays (written before migration 0013)."""
ENCODING_CODEC_V1 = 1
"""Chunk stored as a ``domain.codec`` version-1 payload."""

COPY_COLUMNS = (
    "run_id", "key_id", "rank", "attempt", "first_step", "last_step", "n",
    "encoding", "payload", "sketch_payload",
)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
"""Start of every binary COPY stream: signature, flags, header extension length."""
COPY_TRAILER = struct.pack("!h", -1)
"""End of every binary COPY stream."""
# Row prefix: field count, uuid, key_id, rank, attempt, first_step, last_step, n,
# encoding, then the payload's length (its bytes follow).
_ROW = struct.Struct("!h i16s i i i i i i i q i q i i i h i")
_LEN = struct.Struct("!i")
_NULL = _LEN.pack(-1)


def encode_chunks(chunks: ChunkSet, level: int = codec.DEFAULT_LEVEL) -> bytes:
    """Binary COPY payload for ``COPY metric_chunks (COPY_COLUMNS) FROM STDIN BINARY``."""
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
    parts = [COPY_HEADER]
    for run_id, key_id, rank, attempt, first, last, n, start, sk_n, sk_start in rows:
        end = start + n
        payload = codec.encode(chunks.steps[start:end], chunks.values[start:end],
                               chunks.wall_ns[start:end], level=level)
        parts.append(_ROW.pack(len(COPY_COLUMNS), 16, run_id.bytes, 4, key_id, 4, rank,
                               4, attempt, 8, first, 8, last, 4, n, 2, ENCODING_CODEC_V1,
                               len(payload)))
        parts.append(payload)
        if sk_n < 0:
            parts.append(_NULL)
        else:
            sk_end = sk_start + sk_n
            sketch = codec.encode(sk.steps[sk_start:sk_end], sk.values[sk_start:sk_end],
                                  sk.wall_ns[sk_start:sk_end], level=level)
            parts.append(_LEN.pack(len(sketch)))
            parts.append(sketch)
    parts.append(COPY_TRAILER)
    return b"".join(parts)
