"""The client's history columns (tracker_client._history) and the server's export
message conversion (transport.query_convert), without a server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tracker_client._history import Columns, packed_columns, stream_request
from tracker_proto.v1 import query_pb2 as q
from tracker_server.domain.series import Series
from tracker_server.transport import query_convert as qc


def _piece(lo: int, hi: int) -> Series:
    steps = np.arange(lo, hi, dtype=np.int64)
    return Series(0, steps, (steps * 0.5).astype(np.float64), steps * 1000)


def _messages(packed: bool) -> list[q.StreamMetricSeriesResponse]:
    """Two keys, two ranks, several messages each, as the server builds them."""
    out = []
    for lo in range(0, 1000, 300):
        out.append(qc.slice_to_proto(_piece(lo, min(lo + 300, 1000)), packed))
    last = qc.slice_to_proto(Series(4, np.array([-1, 7]), np.array([-0.0, np.nan]),
                                    np.array([5, 6])), packed)
    return [*out, last]


def _read(msgs: list[q.StreamMetricSeriesResponse], reserve: int | None
          ) -> dict[str, list[Any]]:
    cols = Columns()
    if reserve is not None:
        cols.reserve(reserve)
    for i, m in enumerate(msgs):
        cols.add_stream_message("a" if i < 2 else "b", m)
    arrays = cols.arrays()
    for name in ("rank", "step", "value", "wall_time_ns"):
        assert arrays[name].flags.writeable, name
    arrays["value"] = arrays["value"].view(np.uint64)
    return {k: v.tolist() for k, v in arrays.items()}


@pytest.mark.parametrize("reserve", [None, 0, 10, 1002, 100_000])
def test_packed_and_repeated_messages_give_the_same_columns(reserve: int | None) -> None:
    want = _read(_messages(packed=False), None)
    assert want["step"][-2:] == [-1, 7] and want["rank"][-2:] == [4, 4]
    assert want["key"] == ["a"] * 600 + ["b"] * 402
    # A reservation that is too small grows, one that is too large is trimmed.
    assert _read(_messages(packed=True), reserve) == want
    assert _read(_messages(packed=False), reserve) == want


def test_one_packed_message_gives_writable_columns() -> None:
    cols = Columns()
    cols.add_stream_message("k", qc.slice_to_proto(_piece(0, 5), packed=True))
    frame = cols.arrays()
    frame["step"][0] = 99  # an array over the message's bytes would refuse this
    assert frame["step"].tolist() == [99, 1, 2, 3, 4]
    assert Columns().arrays()["step"].shape == (0,)


def test_packed_message_fields_and_malformed_columns() -> None:
    msg = qc.slice_to_proto(_piece(0, 3), packed=True)
    assert not msg.steps and len(msg.packed_steps) == len(msg.packed_values) == 24
    assert msg.packed_steps == np.arange(3, dtype="<i8").tobytes()
    steps, values, wall = packed_columns(msg)
    assert steps.tolist() == [0, 1, 2] and values.tolist() == [0.0, 0.5, 1.0]
    assert wall.tolist() == [0, 1000, 2000]
    bad = q.StreamMetricSeriesResponse(packed_steps=b"\0" * 8, packed_values=b"\0" * 16,
                                       packed_wall_time_ns=b"\0" * 8)
    with pytest.raises(ValueError, match="malformed packed export message"):
        packed_columns(bad)
    odd = q.StreamMetricSeriesResponse(packed_steps=b"\0" * 7, packed_values=b"\0" * 7,
                                       packed_wall_time_ns=b"\0" * 7)
    with pytest.raises(ValueError, match="malformed"):
        packed_columns(odd)


def test_export_message_caps_and_splits() -> None:
    assert qc.export_points_cap(16 * 1024 * 1024, packed=True) == 699_048
    assert qc.export_points_cap(64 * 1024, packed=True) == 2728
    assert qc.export_points_cap(64 * 1024, packed=False) == 2338
    assert qc.export_points_cap(10, packed=True) == 1
    whole = _piece(0, 10)
    assert list(qc.split_slice(whole, 10)) == [whole]
    parts = list(qc.split_slice(whole, 4))
    assert [p.steps.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(p.rank == 0 for p in parts)


def test_stream_request_asks_for_packed() -> None:
    req = stream_request("r", "k", 1, 2, 3)
    assert req.packed and req.start_step == 1 and req.end_step == 2 and req.rank == 3
