"""Points of stored chunk rows, whatever their layout (migration 0013).

A row is a codec payload (``domain.codec``; encoding 1) or, when written before the
codec, three arrays (encoding 0, loaded as numpy by ``numpy_arrays``). Every reader
selects ``steps, "values", wall_ns, payload`` last and decodes here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tracker_server.domain import codec

CHUNK_COLUMNS = 'steps, "values", wall_ns, payload'
"""The layout columns, in the order ``decode_chunk_rows`` expects them (last)."""


Columns = list[np.ndarray[Any, Any]]


def decode_chunk_rows(rows: Sequence[Sequence[Any]]) -> tuple[Columns, Columns, Columns]:
    """Per row ``(..., steps, values, wall_ns, payload)`` (the last four columns): its
    points as numpy columns, from the payload when the row has one, else the arrays."""
    steps: Columns = []
    values: Columns = []
    wall: Columns = []
    for row in rows:
        payload = row[-1]
        if payload is not None:
            # A payload that does not decode (codec.CodecError) is damaged storage, not
            # the caller's fault: it surfaces as an internal error, never as bad input.
            got = codec.decode(payload)
            steps.append(got.steps)
            values.append(got.values)
            wall.append(got.wall_ns)
        else:
            steps.append(row[-4])
            values.append(row[-3])
            wall.append(row[-2])
    return steps, values, wall
