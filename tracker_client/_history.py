"""Metric series from the wire into numpy columns (and pandas), with no per-point Python.

Full-resolution exports ask for the packed form (``StreamMetricSeriesRequest.packed``):
each column arrives as little-endian bytes and becomes an array with
``np.frombuffer`` (no per-point decoding on either side). The repeated fields (what
``GetMetricSeries`` sends, and what a server that predates ``packed`` streams) convert
to numpy in one call too: ``np.array(msg.steps, dtype=np.int64)`` copies upb's
contiguous buffer (~3 GB/s measured), where ``np.fromiter`` walks the container element
by element (~30 M values/s); parsing the message itself (varint decoding) is what
remains, ~45 M points/s on the reference machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tracker_proto.v1 import query_pb2

HistoryArrays = dict[str, npt.NDArray[Any]]
"""Columns ``key`` (str), ``rank`` (int32), ``step`` (int64), ``value`` (float64) and
``wall_time_ns`` (int64, nanoseconds since the epoch), one entry per point."""

Aggregation = Literal["mean", "min", "max"]
"""Across ranks: one series with, per step, the mean / min / max over the ranks."""

AGGREGATIONS = {"mean": query_pb2.RANK_AGGREGATION_MEAN, "min": query_pb2.RANK_AGGREGATION_MIN,
                "max": query_pb2.RANK_AGGREGATION_MAX}

DOWNSAMPLING = {"minmax": query_pb2.DOWNSAMPLING_MINMAX, "lttb": query_pb2.DOWNSAMPLING_LTTB}

STREAM_POINTS_PER_MESSAGE = 50_000
"""Points per packed export message (1.2 MB). Measured on 2 cores, 10 M points: 50,000
and 25,000 stream ~12 M points/s, 100,000 (the server's largest) ~10, 10,000 ~9: fewer
messages save fixed cost until the messages outgrow the caches."""


RESERVE_MAX_POINTS = 64_000_000
"""Largest reservation of one column (512 MB of address space, touched only as points
arrive); a longer read grows the buffers by doubling."""


class _Column:
    """One numeric column: pieces kept as they come and joined at the end, or (after
    :meth:`reserve`) copied into one buffer as they arrive.

    Copying on arrival overlaps the copy, and the page faults of a fresh large array,
    with waiting for the next message; a join at the end does both after the stream,
    which measured 0.06-0.56 s for 10 M points on the reference VM (fresh memory there
    costs more the first time a page is touched).
    """

    def __init__(self, dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        self.parts: list[npt.NDArray[Any]] = []
        self.buf: npt.NDArray[Any] | None = None
        self.n = 0

    def reserve(self, points: int) -> None:
        """Room for ``points`` (an estimate: more is fine, fewer is trimmed)."""
        if self.buf is None and not self.parts and points > 0:
            self.buf = np.empty(min(points, RESERVE_MAX_POINTS), dtype=self.dtype)

    def append(self, part: npt.NDArray[Any]) -> None:
        """One piece (kept without a copy unless reserved)."""
        end = self.n + int(part.shape[0])
        if self.buf is None:
            self.parts.append(part)
        else:
            if end > self.buf.shape[0]:
                grown = np.empty(max(end, 2 * self.buf.shape[0]), dtype=self.dtype)
                grown[:self.n] = self.buf[:self.n]
                self.buf = grown
            self.buf[self.n:end] = part
        self.n = end

    def join(self) -> npt.NDArray[Any]:
        """Every point, as one writable array."""
        if self.buf is not None:
            if self.buf.shape[0] != self.n:
                # realloc shrinks in place (a large block is mremap'ed): no copy. No
                # view of buf exists outside this object.
                self.buf.resize(self.n, refcheck=False)
            return self.buf
        if not self.parts:
            return np.empty(0, dtype=self.dtype)
        if len(self.parts) == 1:
            # An array over a message's bytes is read-only; callers get writable columns.
            only = self.parts[0]
            return only if only.flags.writeable else only.copy()
        return np.concatenate(self.parts)


@dataclass
class Columns:
    """Points of several keys, gathered piece by piece, joined once at the end.

    Key and rank are kept as runs (code, rank, length), not per point: the pieces of one
    series arrive in order, and ``np.repeat`` over a few runs builds the key and rank
    columns ~10x faster than indexing a per-point code array (measured at 10 M points).
    """

    keys: list[str] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)
    _run_codes: list[int] = field(default_factory=list)
    _run_ranks: list[int] = field(default_factory=list)
    _run_lengths: list[int] = field(default_factory=list)
    _steps: _Column = field(default_factory=lambda: _Column(np.int64))
    _values: _Column = field(default_factory=lambda: _Column(np.float64))
    _wall: _Column = field(default_factory=lambda: _Column(np.int64))
    points: int = 0

    def reserve(self, points: int) -> None:
        """Expect about ``points`` points in all (e.g. the stored counts of the keys of
        a full-resolution read): pieces are then copied into place as they arrive."""
        for column in (self._steps, self._values, self._wall):
            column.reserve(points)

    def reserve_for(self, stored: query_pb2.ListMetricKeysResponse, keys: Sequence[str]) -> None:
        """:meth:`reserve` for ``keys`` from a ``ListMetricKeys`` answer: the stored
        counts bound the points a full-resolution read of them brings."""
        counts = {k.summary.key: k.summary.count for k in stored.keys}
        self.reserve(sum(counts.get(key, 0) for key in keys))

    def add(self, key: str, rank: int, steps: Any, values: Any, wall_ns: Any) -> None:
        """One piece: packed repeated fields (or arrays) of one key and rank."""
        s = np.asarray(steps, dtype=np.int64)
        n = int(s.shape[0])
        if not n:
            return
        code = self._index.get(key)
        if code is None:
            code = self._index[key] = len(self.keys)
            self.keys.append(key)
        self._steps.append(s)
        self._values.append(np.asarray(values, dtype=np.float64))
        self._wall.append(np.asarray(wall_ns, dtype=np.int64))
        if self._run_lengths and self._run_codes[-1] == code and self._run_ranks[-1] == rank:
            self._run_lengths[-1] += n
        else:
            self._run_codes.append(code)
            self._run_ranks.append(rank)
            self._run_lengths.append(n)
        self.points += n

    def add_stream_message(self, key: str, msg: query_pb2.StreamMetricSeriesResponse) -> None:
        """One ``StreamMetricSeries`` message, packed or not (whichever the server sent)."""
        if msg.packed_steps:
            steps, values, wall = packed_columns(msg)
            self.add(key, msg.rank, steps, values, wall)
        else:
            self.add(key, msg.rank, msg.steps, msg.values, msg.wall_time_ns)

    def add_series(self, series: Iterable[query_pb2.MetricSeries]) -> None:
        """The series of a ``GetMetricSeries`` answer."""
        for s in series:
            self.add(s.key, s.rank, s.steps, s.values, s.wall_time_ns)

    def _runs(self, per_run: Sequence[Any], dtype: Any) -> npt.NDArray[Any]:
        return np.repeat(np.asarray(per_run, dtype=dtype), self._run_lengths)

    def codes(self) -> npt.NDArray[np.int32]:
        """Index into :attr:`keys` of every point."""
        return self._runs(self._run_codes, np.int32)

    def ranks(self) -> npt.NDArray[np.int32]:
        """Rank of every point."""
        return self._runs(self._run_ranks, np.int32)

    def arrays(self) -> HistoryArrays:
        """The points as numpy columns (see :data:`HistoryArrays`)."""
        names = np.array(self.keys if self.keys else [""], dtype=str)
        return {
            "key": self._runs([names[c] for c in self._run_codes], names.dtype),
            "rank": self.ranks(),
            "step": self._steps.join(),
            "value": self._values.join(),
            "wall_time_ns": self._wall.join(),
        }

    def frame(self) -> Any:
        """The points as a pandas DataFrame: ``key`` (categorical), ``rank``, ``step``,
        ``value``, ``wall_time`` (UTC datetimes)."""
        import pandas as pd

        return pd.DataFrame({
            "key": pd.Categorical.from_codes(self.codes(), categories=self.keys or []),
            "rank": self.ranks(),
            "step": self._steps.join(),
            "value": self._values.join(),
            "wall_time": pd.to_datetime(self._wall.join(), unit="ns", utc=True),
        }, copy=False)


def packed_columns(msg: query_pb2.StreamMetricSeriesResponse
                   ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                              npt.NDArray[np.int64]]:
    """The packed byte columns of an export message as (read-only) numpy arrays in
    native byte order: steps, values, wall times."""
    raw = (msg.packed_steps, msg.packed_values, msg.packed_wall_time_ns)
    if len({len(b) for b in raw}) != 1 or len(raw[0]) % 8:
        raise ValueError("malformed packed export message: column lengths "
                         f"{[len(b) for b in raw]} bytes (equal multiples of 8 expected)")
    return (np.frombuffer(raw[0], dtype="<i8").astype(np.int64, copy=False),
            np.frombuffer(raw[1], dtype="<f8").astype(np.float64, copy=False),
            np.frombuffer(raw[2], dtype="<i8").astype(np.int64, copy=False))


def have_pandas() -> bool:
    """Whether pandas can be imported."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def result(columns: Columns, as_frame: bool | None) -> Any:
    """A DataFrame (``as_frame`` True, or None with pandas installed) or numpy columns."""
    if as_frame is None:
        as_frame = have_pandas()
    return columns.frame() if as_frame else columns.arrays()


def key_list(keys: str | Sequence[str]) -> list[str]:
    """One key or several, as a list without duplicates."""
    if isinstance(keys, str):
        return [keys]
    return list(dict.fromkeys(keys))


def stream_request(run_id: str, key: str, start: int | None, end: int | None,
                   rank: int | None) -> query_pb2.StreamMetricSeriesRequest:
    """A full-resolution export request, in the packed form."""
    req = query_pb2.StreamMetricSeriesRequest(
        run_id=run_id, key=key, points_per_message=STREAM_POINTS_PER_MESSAGE, packed=True)
    if start is not None:
        req.start_step = start
    if end is not None:
        req.end_step = end
    if rank is not None:
        req.rank = rank
    return req


def series_request(run_ids: Sequence[str], keys: Sequence[str], start: int | None,
                   end: int | None, max_points: int, rank: int | None,
                   aggregation: Aggregation | None, downsampling: str
                   ) -> query_pb2.GetMetricSeriesRequest:
    """A downsampled read request."""
    if downsampling not in DOWNSAMPLING:
        raise ValueError(f"downsampling must be one of {sorted(DOWNSAMPLING)}, "
                         f"got {downsampling!r}")
    req = query_pb2.GetMetricSeriesRequest(
        run_ids=list(run_ids), keys=list(keys), max_points=max_points,
        downsampling=DOWNSAMPLING[downsampling])
    if aggregation is not None:
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {sorted(AGGREGATIONS)}, "
                             f"got {aggregation!r}")
        req.aggregation = AGGREGATIONS[aggregation]
    if start is not None:
        req.start_step = start
    if end is not None:
        req.end_step = end
    if rank is not None:
        req.rank = rank
    return req
