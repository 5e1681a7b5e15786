"""numpy arrays as binary PostgreSQL array parameters.

psycopg dumps a Python list element by element; for the per-flush parameters (one
summary row per (run, key), one offset per writer) that was a quarter of the server's
CPU in the low-frequency profile (500 runs, thousands of rows per flush). These
wrappers dump a whole numpy array into PostgreSQL's binary array format in one
vectorised step. Arrays carry no NULLs: optional values travel with a boolean mask.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import psycopg
import psycopg.adapt
from psycopg.adapt import Dumper
from psycopg.pq import Format

_HEAD = struct.Struct("!iiiii")  # ndim, has_null, element oid, length, lower bound


class PgArray:
    """A one-dimensional array parameter of a fixed-size PostgreSQL type."""

    element_oid: ClassVar[int]
    array_oid: ClassVar[int]
    wire: ClassVar[str]  # numpy dtype of one element on the wire (big-endian)
    size: ClassVar[int]

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray[Any, Any]) -> None:
        self.values = values

    def encode(self) -> bytes:
        """Binary array format: header, then (length, value) per element."""
        n = int(self.values.shape[0])
        out = np.empty(n, dtype=[("len", ">i4"), ("v", self.wire)])
        out["len"] = self.size
        out["v"] = self.values
        return _HEAD.pack(1, 0, self.element_oid, n, 1) + out.tobytes()


class Int4Array(PgArray):
    """int4[]"""

    element_oid, array_oid, wire, size = 23, 1007, ">i4", 4


class Int8Array(PgArray):
    """int8[]"""

    element_oid, array_oid, wire, size = 20, 1016, ">i8", 8


class Float8Array(PgArray):
    """float8[] (NaN, +-Inf and -0.0 exact)."""

    element_oid, array_oid, wire, size = 701, 1022, ">f8", 8


class BoolArray(PgArray):
    """bool[]"""

    element_oid, array_oid, wire, size = 16, 1000, "u1", 1


class UuidArray(PgArray):
    """uuid[] from 16-byte values (dtype V16)."""

    element_oid, array_oid, wire, size = 2950, 2951, "V16", 16

    @classmethod
    def of(cls, ids: Sequence[uuid.UUID]) -> UuidArray:
        """From UUID objects."""
        return cls(np.frombuffer(b"".join(u.bytes for u in ids), dtype="V16"))


def _dumper_for(kind: type[PgArray]) -> type[Dumper]:
    class _ArrayDumper(Dumper):
        format = Format.BINARY
        oid = kind.array_oid

        def dump(self, obj: Any) -> bytes:
            return obj.encode()  # type: ignore[no-any-return]

    _ArrayDumper.__name__ = f"{kind.__name__}Dumper"
    return _ArrayDumper


def register_globally() -> None:
    """Teach every connection to dump the wrappers (they are private types, so the
    global adapter map is the simplest place; idempotent)."""
    for kind in (Int4Array, Int8Array, Float8Array, BoolArray, UuidArray):
        psycopg.adapters.register_dumper(kind, _dumper_for(kind))
