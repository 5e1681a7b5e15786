"""The pure rules of user summaries and goals (no server): validation, resolving a
goal for a ranking, picking the best cell of a comparison."""

from __future__ import annotations

import math

import pytest

from tracker_server.domain.errors import TrackerError
from tracker_server.domain.runs import MAX_METRIC_KEY_CHARS
from tracker_server.domain.summaries import MetricSummary, best_cell, shared_goal
from tracker_server.domain.user_summaries import (
    MAX_SUMMARY_PER_CALL,
    check_goals,
    check_summary,
    resolve_goal,
)

pytestmark = pytest.mark.unit


def summary(last: float) -> MetricSummary:
    return MetricSummary("k", 1, 0, 0, last, 0, 0, last, 0, last, 0)


def test_resolve_goal() -> None:
    assert resolve_goal({"max"}, "acc") is True
    assert resolve_goal({"min"}, "loss") is False
    with pytest.raises(TrackerError, match="no run defines one"):
        resolve_goal(set(), "acc")
    with pytest.raises(TrackerError, match="both min and max"):
        resolve_goal({"min", "max"}, "acc")


def test_best_cell_follows_the_goal_and_skips_nan_and_missing() -> None:
    cells = [summary(0.5), None, summary(math.nan), summary(0.9), summary(0.9)]
    assert best_cell("max", cells) == 3  # first of equal values
    assert best_cell("min", cells) == 0
    assert best_cell("", cells) is None
    assert best_cell("max", [None, summary(math.nan)]) is None
    assert shared_goal(["max", None, "max"]) == "max"
    assert shared_goal(["max", "min"]) == "" and shared_goal([None]) == ""


def test_check_summary_and_goals() -> None:
    values, deletes = check_summary({"a": 1, "b": math.inf}, ["c", "c"])
    assert values == {"a": 1.0, "b": math.inf} and deletes == ["c"]
    for bad in ({"": 1.0}, {"x" * (MAX_METRIC_KEY_CHARS + 1): 1.0}, {"a\x00": 1.0}):
        with pytest.raises(TrackerError):
            check_summary(bad, [])
    with pytest.raises(TrackerError, match="more than"):
        check_summary({f"k{i}": 0.0 for i in range(MAX_SUMMARY_PER_CALL + 1)}, [])
    assert check_goals({"acc": "max", "loss": "min"}) == {"acc": "max", "loss": "min"}
    for bad_goals in ({}, {"acc": "MAX"}, {"": "min"}):
        with pytest.raises(TrackerError):
            check_goals(bad_goals)
