"""Load ``int8[]`` / ``float8[]`` columns straight into numpy arrays.

psycopg's default array loaders build a Python list with one object per element:
about 10x slower than viewing PostgreSQL's binary array format with a structured
numpy dtype. Register these loaders on a cursor and execute with ``binary=True``.

Binary array layout (big-endian): int32 ndim, int32 has-nulls flag, int32 element
oid, then (int32 length, int32 lower bound) per dimension, then per element an int32
byte length (-1 for NULL) followed by the element's bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from psycopg import AsyncCursor, Cursor, errors
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format

INT8_ARRAY_OID = 1016
FLOAT8_ARRAY_OID = 1022

_HEADER = np.dtype(">i4")


def decode_array(data: Buffer, element: str, out_dtype: type[np.generic]) -> np.ndarray[Any, Any]:
    """Binary one-dimensional array of 8-byte elements -> native numpy array."""
    head = np.frombuffer(data, dtype=_HEADER, count=3)
    ndim, has_nulls = int(head[0]), int(head[1])
    if ndim == 0:
        return np.zeros(0, dtype=out_dtype)
    if ndim != 1 or has_nulls:
        raise errors.DataError("expected a one-dimensional array without NULLs")
    n = int(np.frombuffer(data, dtype=_HEADER, count=1, offset=12)[0])
    items = np.frombuffer(
        data, dtype=np.dtype([("len", ">i4"), ("v", element)]), count=n, offset=20
    )
    return items["v"].astype(out_dtype)


class Int8ArrayLoader(Loader):
    """``int8[]`` (binary) -> numpy int64 array."""

    format = Format.BINARY

    def load(self, data: Buffer) -> np.ndarray[Any, Any]:
        return decode_array(data, ">i8", np.int64)


class Float8ArrayLoader(Loader):
    """``float8[]`` (binary) -> numpy float64 array (NaN, +-Inf, -0.0 exact)."""

    format = Format.BINARY

    def load(self, data: Buffer) -> np.ndarray[Any, Any]:
        return decode_array(data, ">f8", np.float64)


def use_numpy_arrays(cur: AsyncCursor[Any] | Cursor[Any]) -> None:
    """Make ``cur`` load int8[] and float8[] columns as numpy arrays (binary results)."""
    cur.adapters.register_loader(INT8_ARRAY_OID, Int8ArrayLoader)
    cur.adapters.register_loader(FLOAT8_ARRAY_OID, Float8ArrayLoader)
