"""``run.summary`` and ``run.define_metric``: values and goals the user sets for a run.

They travel like params: each change is one line of the spool's ``ops.jsonl`` (written
before any delivery attempt), delivered in order by the control thread with retries,
and by the next start or ``tracker sync`` when the process ends first — so a summary
set while the server is down, or in offline mode, is not lost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, Literal

GoalName = Literal["min", "max"]
GOALS: tuple[GoalName, ...] = ("min", "max")
MAX_KEY_CHARS = 1024
"""The server's bound on a summary or goal key."""



def check_key(key: Any, what: str = "summary key") -> str:
    """A key the server accepts (1..1024 characters, no NUL), else TypeError/ValueError
    at the call, as ``log()`` refuses bad values where they are made."""
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a str, got {type(key).__name__}")
    if not key or len(key) > MAX_KEY_CHARS or "\x00" in key:
        raise ValueError(f"{what} must be 1..{MAX_KEY_CHARS} characters without NUL, "
                         f"got {key[:80]!r}")
    return key


def check_goal(goal: Any) -> GoalName:
    """``min`` or ``max``."""
    for g in GOALS:
        if goal == g:
            return g
    raise ValueError(f"goal must be 'min' or 'max', got {goal!r}")


class RunSummary(MutableMapping[str, float]):
    """``run.summary``: a mapping of numbers stored with the run on the server.

    ``run.summary["test/acc"] = 0.93`` sets a value, ``del run.summary[key]`` removes
    it, ``run.summary.set({...}, timeout=5)`` sets several in one call and can wait for
    the server. Reading gives what this process set (the server's view, merged with
    the last logged values, is ``Api().run(id).summary``). Values are floats; NaN and
    infinities round-trip.
    """

    def __init__(self, submit: Callable[[dict[str, Any], float], Any]) -> None:
        self._submit = submit
        self._values: dict[str, float] = {}

    def set(self, values: Mapping[str, Any], timeout: float = 0.0) -> Any:
        """Set several values in one change; waits up to ``timeout`` s for the server
        and returns the run's ``DeliveryReport``."""
        clean = {check_key(k): float(v) for k, v in values.items()}
        self._values.update(clean)
        return self._submit({"op": "summary", "values": clean}, timeout)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set({key: value})

    def __delitem__(self, key: str) -> None:
        # Sent even when this process never set it: an earlier attempt, or another job
        # attached with init(run_id=...), may have.
        self._values.pop(check_key(key), None)
        self._submit({"op": "summary", "values": {}, "delete": [key]}, 0.0)

    def __getitem__(self, key: str) -> float:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shown = {k: v if math.isfinite(v) else str(v) for k, v in self._values.items()}
        return f"RunSummary({shown!r})"
