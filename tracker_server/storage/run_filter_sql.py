"""Compile a parsed run filter and order_by into parameterised SQL.

Every SQL fragment below is a constant of this module, chosen by a whitelist lookup;
values from the request only ever travel as query parameters (``%s``). Runs are
aliased ``r`` in the surrounding query.

Semantics: a comparison on a param, tag or metric the run does not have is false, and
``not`` negates that (so ``not params.x = "a"`` matches runs without ``x``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

_COLUMN_SQL = {name: f"r.{name}" for name in COLUMNS}
_COLUMN_CAST = {
    "uuid": "uuid",
    "text": "text",
    "status": "int2",
    "int": "int8",
    "timestamp": "timestamptz",
}
_OP_SQL = {
    "=": "=",
    "!=": "<>",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "like": "LIKE",
    "not like": "NOT LIKE",
}
_METRIC_SQL = {
    "last": ("s.last_value", "float8"),
    "min": ("s.min_value", "float8"),
    "max": ("s.max_value", "float8"),
    "count": ("s.count", "int8"),
    "first_step": ("s.first_step", "int8"),
    "last_step": ("s.last_step", "int8"),
}
_KV_TABLE = {"param": "run_params", "tag": "run_tags"}
_KEY_ID = "(SELECT key_id FROM metric_keys WHERE name = %s)"


@dataclass
class Sql:
    """A SQL fragment and its parameters, in placeholder order."""

    text: str
    params: list[Any]


def compile_filter(node: Node | None) -> Sql:
    """A boolean SQL expression over runs ``r``."""
    if node is None:
        return Sql("TRUE", [])
    return _compile(node)


def _compile(node: Node) -> Sql:
    if isinstance(node, And | Or):
        parts = [_compile(item) for item in node.items]
        word = " AND " if isinstance(node, And) else " OR "
        return Sql(
            "(" + word.join(p.text for p in parts) + ")",
            [v for p in parts for v in p.params],
        )
    if isinstance(node, Not):
        inner = _compile(node.item)
        return Sql(f"(NOT {inner.text})", inner.params)
    if isinstance(node, IsNull):
        return _is_null(node)
    if isinstance(node, InList):
        return _in_list(node)
    return _compare(node)


def _is_null(node: IsNull) -> Sql:
    f = node.field
    word = "IS NOT NULL" if node.negated else "IS NULL"
    if f.kind == "column":
        return Sql(f"({_COLUMN_SQL[f.name]} {word})", [])
    exists = "EXISTS" if node.negated else "NOT EXISTS"
    if f.kind == "metric":
        col, _ = _METRIC_SQL[f.aggregate]
        return Sql(
            f"({exists} (SELECT 1 FROM run_metric_summary s WHERE s.run_id = r.run_id "
            f"AND s.key_id = {_KEY_ID} AND {col} IS NOT NULL))",
            [f.name],
        )
    table = _KV_TABLE[f.kind]
    return Sql(
        f"({exists} (SELECT 1 FROM {table} p WHERE p.run_id = r.run_id AND p.key = %s))",
        [f.name],
    )


def _kv_exists(field: Field, condition: str, params: list[Any]) -> Sql:
    table = _KV_TABLE[field.kind]
    return Sql(
        f"EXISTS (SELECT 1 FROM {table} p WHERE p.run_id = r.run_id AND p.key = %s "
        f"AND {condition})",
        [field.name, *params],
    )


def _metric_exists(field: Field, condition: str, params: list[Any]) -> Sql:
    return Sql(
        "EXISTS (SELECT 1 FROM run_metric_summary s WHERE s.run_id = r.run_id "
        f"AND s.key_id = {_KEY_ID} AND {condition})",
        [field.name, *params],
    )


def _compare(node: Compare) -> Sql:
    f, op = node.field, _OP_SQL[node.op]
    if f.kind == "column":
        cast = _COLUMN_CAST[COLUMNS[f.name]]
        return Sql(f"({_COLUMN_SQL[f.name]} {op} %s::{cast})", [node.value])
    if f.kind == "metric":
        col, cast = _METRIC_SQL[f.aggregate]
        return _metric_exists(f, f"{col} {op} %s::{cast}", [node.value])
    if isinstance(node.value, str):
        return _kv_exists(f, f"p.value {op} %s::text", [node.value])
    return _kv_exists(f, f"tracker_num(p.value) {op} %s::float8", [node.value])


def _in_list(node: InList) -> Sql:
    f = node.field
    values = list(node.values)
    if f.kind == "column":
        cast = _COLUMN_CAST[COLUMNS[f.name]]
        sql = Sql(f"({_COLUMN_SQL[f.name]} = ANY(%s::{cast}[]))", [values])
    elif f.kind == "metric":
        col, cast = _METRIC_SQL[f.aggregate]
        sql = _metric_exists(f, f"{col} = ANY(%s::{cast}[])", [values])
    elif isinstance(values[0], str):
        sql = _kv_exists(f, "p.value = ANY(%s::text[])", [values])
    else:
        sql = _kv_exists(f, "tracker_num(p.value) = ANY(%s::float8[])", [values])
    return Sql(f"(NOT {sql.text})", sql.params) if node.negated else sql


# --- ordering and keyset pagination ---------------------------------------------------


@dataclass
class SortKey:
    """One ORDER BY expression: SQL, direction, and the cast of its cursor value."""

    expr: str
    descending: bool
    cast: str


@dataclass
class Ordering:
    """Joins needed by the sort keys, their parameters, and the keys themselves."""

    joins: str
    params: list[Any]
    keys: list[SortKey]

    def order_by(self) -> str:
        """ORDER BY clause body; missing values sort last in either direction."""
        return ", ".join(
            f"{k.expr} {'DESC' if k.descending else 'ASC'} NULLS LAST" for k in self.keys
        )

    def select_list(self) -> str:
        """The sort key values, selected as k0, k1, ... (they form the page cursor)."""
        return ", ".join(f"{k.expr} AS k{i}" for i, k in enumerate(self.keys))


def compile_ordering(order: list[OrderKey]) -> Ordering:
    """Sort keys for ``order`` (default ``created_at desc``), then run_id as tiebreak."""
    if not order:
        order = [OrderKey(Field("column", "created_at"), True)]
    joins: list[str] = []
    params: list[Any] = []
    keys: list[SortKey] = []
    for i, entry in enumerate(order):
        f, desc = entry.field, entry.descending
        alias = f"o{i}"  # from the loop index, never from input
        if f.kind == "column":
            keys.append(SortKey(_COLUMN_SQL[f.name], desc, _COLUMN_CAST[COLUMNS[f.name]]))
        elif f.kind == "metric":
            col, cast = _METRIC_SQL[f.aggregate]
            joins.append(
                f"LEFT JOIN run_metric_summary {alias} ON {alias}.run_id = r.run_id "
                f"AND {alias}.key_id = {_KEY_ID}"
            )
            params.append(f.name)
            keys.append(SortKey(col.replace("s.", f"{alias}.", 1), desc, cast))
        else:
            table = _KV_TABLE[f.kind]
            joins.append(
                f"LEFT JOIN {table} {alias} ON {alias}.run_id = r.run_id AND {alias}.key = %s"
            )
            params.append(f.name)
            # Numbers sort numerically before non-numeric text, which sorts as text.
            keys.append(SortKey(f"tracker_num({alias}.value)", desc, "float8"))
            keys.append(SortKey(f"{alias}.value", desc, "text"))
    keys.append(SortKey("r.run_id", order[0].descending, "uuid"))
    return Ordering(" ".join(joins), params, keys)


def after_cursor(keys: list[SortKey], cursor: list[Any]) -> Sql:
    """Rows strictly after ``cursor`` (the k-values of the last row of the previous
    page) in the order of ``keys``, with missing values last.

    Row i of the disjunction: keys 0..i-1 equal the cursor and key i comes after it.
    A NULL cursor value has nothing after it in its own key (NULLs sort last).
    """
    ors: list[str] = []
    params: list[Any] = []
    for i, key in enumerate(keys):
        value = cursor[i]
        if value is None:
            continue
        ands: list[str] = []
        for j in range(i):
            if cursor[j] is None:
                ands.append(f"{keys[j].expr} IS NULL")
            else:
                ands.append(f"{keys[j].expr} = %s::{keys[j].cast}")
                params.append(cursor[j])
        cmp = "<" if key.descending else ">"
        ands.append(f"({key.expr} {cmp} %s::{key.cast} OR {key.expr} IS NULL)")
        params.append(value)
        ors.append("(" + " AND ".join(ands) + ")")
    if not ors:
        return Sql("FALSE", [])
    return Sql("(" + " OR ".join(ors) + ")", params)
