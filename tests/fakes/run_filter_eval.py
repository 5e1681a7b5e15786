"""The run filter language and ``order_by`` evaluated in Python, over an
:class:`InMemoryDatabase` — what ``storage/run_filter_sql.py`` compiles to SQL.

It keeps the SQL semantics that matter to callers: three-valued logic (a comparison
with a NULL column is unknown, and ``not unknown`` is still unknown), a comparison on a
param, tag or metric the run lacks is false (so ``not`` matches such runs), params and
tags compare as numbers when the literal is a number (values that are not numbers never
match), NaN equals NaN and sorts above every number, missing values sort last in
either direction, a param or tag sorts by its number and then by its text.

Where it differs from PostgreSQL: text compares and sorts by code point (PostgreSQL
uses the database collation), and ``like`` is case-sensitive with ``\\`` as escape,
as PostgreSQL's is with the C collation.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from typing import Any

from tests.fakes.experiment_store import as_time, as_uuid
from tests.fakes.memory import InMemoryDatabase
from tracker_server.domain.paging import PositionError
from tracker_server.domain.run_filter import (
    COLUMNS,
    And,
    Compare,
    Field,
    InList,
    IsNull,
    Node,
    Not,
    Or,
    OrderKey,
)
from tracker_server.domain.runs import Run

_NUMBER = re.compile(
    r"^\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(nan|inf|infinity))\s*$", re.IGNORECASE
)


def tracker_num(text: str) -> float | None:
    """The number a param or tag value holds, None when it holds none (the SQL
    function ``tracker_num``)."""
    if not _NUMBER.match(text):
        return None
    value = float(text)
    return None if math.isinf(value) and "inf" not in text.lower() else value


def compare(a: Any, b: Any) -> int:
    """-1, 0 or 1, ordering NaN above every number and equal to itself."""
    a_nan = isinstance(a, float) and math.isnan(a)
    b_nan = isinstance(b, float) and math.isnan(b)
    if a_nan or b_nan:
        return int(a_nan) - int(b_nan)
    return int(a > b) - int(a < b)


def _like(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _holds(op: str, value: Any, literal: Any) -> bool:
    if op in ("like", "not like"):
        hit = _like(str(literal)).fullmatch(str(value)) is not None
        return hit if op == "like" else not hit
    c = compare(value, literal)
    return {"=": c == 0, "!=": c != 0, "<": c < 0, "<=": c <= 0, ">": c > 0,
            ">=": c >= 0}[op]


def column(run: Run, name: str) -> Any:
    """A run column as the runs table holds it (no run key is NULL)."""
    if name == "run_key":
        return run.run_key or None
    value = getattr(run, name)
    return int(value) if name == "status" else value


_METRIC_ATTR = {"last": "last_value", "min": "min_value", "max": "max_value",
                "count": "count", "first_step": "first_step", "last_step": "last_step"}
_CASTS: dict[str, Callable[[Any], Any]] = {
    "uuid": as_uuid, "timestamp": as_time, "text": str, "int": int, "float": float,
    "status": int,
}


def _sort_types(order: list[OrderKey]) -> list[str]:
    """The type of each sort key (the casts of ``run_filter_sql``'s cursor values)."""
    out: list[str] = []
    for entry in order or [OrderKey(Field("column", "created_at"), True)]:
        f = entry.field
        if f.kind == "column":
            out.append(COLUMNS[f.name])
        elif f.kind == "metric":
            out.append("float" if f.aggregate in ("last", "min", "max") else "int")
        else:
            out += ["float", "text"]
    return [*out, "uuid"]


def position_length(order: list[OrderKey]) -> int:
    """Values in a page position for ``order``."""
    return len(_sort_types(order))


def cast_position(order: list[OrderKey], position: list[Any]) -> list[Any]:
    """Position values (JSON from a token) as the sort keys' types; a value that does
    not fit raises ``PositionError`` (PostgreSQL's cast failing)."""
    out: list[Any] = []
    for kind, value in zip(_sort_types(order), position, strict=True):
        if value is None:
            out.append(None)
            continue
        if kind in ("int", "float", "status") and not isinstance(value, int | float):
            raise PositionError()
        try:
            out.append(_CASTS[kind](value))
        except (TypeError, ValueError):
            raise PositionError() from None
    return out


def compare_keys(a: list[tuple[Any, bool]], b: list[Any]) -> int:
    """Order of a row's sort key against another's values: missing values last in
    either direction."""
    for (x, desc), y in zip(a, b, strict=True):
        if x is None or y is None:
            c = int(x is None) - int(y is None)
        else:
            c = compare(x, y) * (-1 if desc else 1)
        if c:
            return c
    return 0


class Evaluator:
    """Filter and sort keys of runs in one database."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db

    def kv(self, run: Run, f: Field) -> str | None:
        """The run's param or tag ``f``, None when absent."""
        table = self.db.params if f.kind == "param" else self.db.tags
        return table[run.run_id].get(f.name)

    def metric(self, run: Run, f: Field) -> float | int | None:
        """The summary value ``f`` of the run, None when the run has none."""
        s = self.db.summaries.get((run.run_id, f.name))
        return None if s is None else getattr(s, _METRIC_ATTR[f.aggregate])

    def matches(self, node: Node | None, run: Run) -> bool:
        """Whether ``run`` is in the result (unknown is not)."""
        return node is None or self._eval(node, run) is True

    def _eval(self, node: Node, run: Run) -> bool | None:
        if isinstance(node, And | Or):
            results = [self._eval(i, run) for i in node.items]
            decisive = isinstance(node, Or)
            if decisive in results:
                return decisive
            return None if None in results else not decisive
        if isinstance(node, Not):
            inner = self._eval(node.item, run)
            return None if inner is None else not inner
        f = node.field
        value = (column(run, f.name) if f.kind == "column" else
                 self.metric(run, f) if f.kind == "metric" else self.kv(run, f))
        if isinstance(node, IsNull):
            return (value is not None) if node.negated else (value is None)
        if value is None:
            # A NULL column makes the comparison unknown; a missing param, tag or
            # metric makes its EXISTS false (and a negated list true).
            if f.kind == "column":
                return None
            return isinstance(node, InList) and node.negated
        if isinstance(value, uuid.UUID):
            value = str(value)  # filter literals carry uuids as text
        literals = [node.value] if isinstance(node, Compare) else list(node.values)
        if f.kind in ("param", "tag") and not isinstance(literals[0], str):
            value = tracker_num(str(value))
        if value is None:
            hit = False
        elif isinstance(node, Compare):
            hit = _holds(node.op, value, literals[0])
        else:
            hit = any(compare(value, lit) == 0 for lit in literals)
        return not hit if isinstance(node, InList) and node.negated else hit

    def sort_key(self, order: list[OrderKey], run: Run) -> list[tuple[Any, bool]]:
        """(value, descending) per sort key, as ``compile_ordering`` lays them out."""
        if not order:
            order = [OrderKey(Field("column", "created_at"), True)]
        out: list[tuple[Any, bool]] = []
        for entry in order:
            f = entry.field
            if f.kind == "column":
                out.append((column(run, f.name), entry.descending))
            elif f.kind == "metric":
                out.append((self.metric(run, f), entry.descending))
            else:
                text = self.kv(run, f)
                out.append((tracker_num(text) if text is not None else None, entry.descending))
                out.append((text, entry.descending))
        out.append((run.run_id, order[0].descending))
        return out
