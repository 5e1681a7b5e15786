"""User summaries and metric goals: the rules, shared by every front door.

A user summary is a number the user sets for a run (``run.summary["test/acc"] =
0.93``): final test scores, counts, anything not logged as a series. A goal says which
direction of a key is better (``run.define_metric("val/acc", goal="max")``), so
``best`` and ``compare`` rank without being told. Both are stored per (run, key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tracker_server.domain.errors import invalid
from tracker_server.domain.ports import UserSummaryStore
from tracker_server.domain.runs import check_metric_key, parse_uuid

GOALS = ("min", "max")
"""Goal words: smaller is better, larger is better."""
MAX_SUMMARY_PER_CALL = 1000
"""Values (plus deleted keys) or goals one SetSummary / DefineMetrics call may carry."""


def check_summary(values: Mapping[str, float], delete_keys: Sequence[str]
                  ) -> tuple[dict[str, float], list[str]]:
    """Bounded, valid keys; any float value (NaN and infinities are stored exactly)."""
    if len(values) + len(delete_keys) > MAX_SUMMARY_PER_CALL:
        raise invalid(f"more than {MAX_SUMMARY_PER_CALL} summary values in one call",
                      [("values", "too many")])
    out = {check_metric_key(k, f"values[{k[:80]}]"): float(v) for k, v in values.items()}
    deletes = [check_metric_key(k, f"delete_keys[{k[:80]}]") for k in delete_keys]
    return out, list(dict.fromkeys(deletes))


def check_goals(goals: Mapping[str, str]) -> dict[str, str]:
    """Keys as metric names, goals ``min`` or ``max`` (INVALID_ARGUMENT otherwise)."""
    if not goals:
        raise invalid("goals must not be empty", [("goals", "empty")])
    if len(goals) > MAX_SUMMARY_PER_CALL:
        raise invalid(f"more than {MAX_SUMMARY_PER_CALL} goals in one call",
                      [("goals", "too many")])
    out = {}
    for key, goal in goals.items():
        check_metric_key(key, f"goals[{key[:80]}]")
        if goal not in GOALS:
            raise invalid(f"goal of {key[:80]!r} must be 'min' or 'max', got {goal[:20]!r}",
                          [(f"goals[{key[:80]}]", "not min or max")])
        out[key] = goal
    return out


def resolve_goal(defined: set[str], key: str) -> bool:
    """``maximize`` for a ranking the caller gave no goal: the one goal the candidate
    runs define for ``key``; INVALID_ARGUMENT when none does or they disagree."""
    if len(defined) == 1:
        return defined == {"max"}
    if not defined:
        raise invalid(f"goal is unset and no run defines one for {key[:80]!r} "
                      "(give min or max, or call define_metric)",
                      [("goal", "unset")])
    raise invalid(f"goal is unset and the runs define both min and max for {key[:80]!r}; "
                  "give min or max", [("goal", "ambiguous")])


class UserSummaries:
    """SetSummary and DefineMetrics over a :class:`UserSummaryStore`."""

    def __init__(self, store: UserSummaryStore) -> None:
        self.store = store

    async def set_summary(self, run_id: str, values: Mapping[str, float],
                          delete_keys: Sequence[str] = ()) -> dict[str, float]:
        """Set and delete user summary values; returns the run's user summary."""
        rid = parse_uuid(run_id, "run_id")
        checked, deletes = check_summary(values, delete_keys)
        return await self.store.set_summary(rid, checked, deletes)

    async def define_metrics(self, run_id: str, goals: Mapping[str, str]) -> dict[str, str]:
        """Record goals of keys; returns every goal of the run."""
        rid = parse_uuid(run_id, "run_id")
        return await self.store.define_metrics(rid, check_goals(goals))
