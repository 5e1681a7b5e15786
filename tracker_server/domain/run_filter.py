"""The run filter language: a hand-written lexer and recursive-descent parser.

Input such as ``params.lr < 0.01 and metrics.val_acc.max > 0.9 and status = "finished"``
becomes a small typed AST. Fields are checked against a whitelist here, and literals
are converted to the field's type, so the SQL compiler (``storage/run_filter_sql.py``)
only ever emits fixed SQL fragments and passes every value as a query parameter.

Grammar (keywords are case-insensitive)::

    expr     := and_expr ("or" and_expr)*
    and_expr := unary ("and" unary)*
    unary    := "not" unary | "(" expr ")" | predicate
    predicate:= field op literal
              | field ["not"] "in" "(" literal ("," literal)* ")"
              | field ["not"] "like" string
              | field "is" ["not"] "null"
    op       := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    field    := column | "params." name | "tags." name | "metrics." name ["." aggregate]
    name     := segment ("." segment)*       (segment: identifier, `quoted` or "quoted")
    literal  := string | number

Errors carry the 0-based character offset of the offending token.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from tracker_server.domain.errors import TrackerError, invalid
from tracker_server.domain.runs import RunStatus

MAX_FILTER_CHARS = 10_000
MAX_DEPTH = 40
MAX_PREDICATES = 200
MAX_IN_VALUES = 1_000

ColumnType = Literal["text", "status", "timestamp", "int", "uuid"]

#: Run columns a filter or an order_by may name, with their types.
COLUMNS: dict[str, ColumnType] = {
    "run_id": "uuid",
    "experiment_id": "uuid",
    "name": "text",
    "run_key": "text",
    "slurm_job_id": "text",
    "status": "status",
    "attempt": "int",
    "seed": "int",
    "created_at": "timestamp",
    "ended_at": "timestamp",
}

#: Summary values a ``metrics.<key>.<aggregate>`` field may name ("last" by default).
METRIC_AGGREGATES = ("last", "min", "max", "count", "first_step", "last_step")

Kind = Literal["column", "param", "tag", "metric"]
Value = str | float | int | datetime


class FilterSyntaxError(TrackerError):
    """INVALID_ARGUMENT with the position of the problem in the expression."""

    def __init__(self, message: str, position: int, what: str = "filter") -> None:
        base = invalid(
            f"{what}: {message} at position {position}",
            [(what, f"{message} at position {position}")],
        )
        super().__init__(base.code, base.message, field_violations=base.field_violations)
        self.position = position


@dataclass(frozen=True)
class Field:
    """A field reference: a run column, a param, a tag, or a metric summary value."""

    kind: Kind
    name: str
    aggregate: str = ""
    position: int = 0

    @property
    def label(self) -> str:
        """The field as a user would write it."""
        if self.kind == "column":
            return self.name
        prefix = {"param": "params", "tag": "tags", "metric": "metrics"}[self.kind]
        suffix = f".{self.aggregate}" if self.kind == "metric" else ""
        return f"{prefix}.{self.name}{suffix}"


@dataclass(frozen=True)
class Compare:
    """``field op value``; ``op`` is one of = != < <= > >= like, "not like"."""

    field: Field
    op: str
    value: Value


@dataclass(frozen=True)
class InList:
    """``field [not] in (v1, v2, ...)``."""

    field: Field
    values: tuple[Value, ...]
    negated: bool


@dataclass(frozen=True)
class IsNull:
    """``field is [not] null``: whether a param, tag, metric or nullable column is absent."""

    field: Field
    negated: bool


@dataclass(frozen=True)
class And:
    """All of ``items``."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """Any of ``items``."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """Negation."""

    item: Node


Node = Compare | InList | IsNull | And | Or | Not


@dataclass(frozen=True)
class OrderKey:
    """One ``order_by`` entry."""

    field: Field
    descending: bool


# --- lexer -------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_\-/:]*)
  | (?P<bquote>`(?:[^`]|``)*`)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|<>|<=|>=|<|>|=)
  | (?P<punct>[(),.])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "like", "asc", "desc"}


@dataclass(frozen=True)
class Token:
    """One lexical token: kind, decoded text, offset."""

    kind: str  # number, ident, keyword, name (quoted identifier), string, op, punct, end
    text: str
    position: int


def _unescape(body: str, position: int, what: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]  # the lexer guarantees a character follows a backslash
            if nxt not in _ESCAPES:
                raise FilterSyntaxError(f"unknown escape \\{nxt}", position + i + 1, what)
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def tokenize(text: str, what: str = "filter") -> list[Token]:
    """Split ``text`` into tokens, ending with an ``end`` token."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in "\"'`":
                raise FilterSyntaxError("unterminated quoted string", pos, what)
            raise FilterSyntaxError(f"unexpected character {ch!r}", pos, what)
        kind = m.lastgroup
        raw = m.group()
        assert kind is not None
        if kind == "ident" and raw.lower() in _KEYWORDS:
            tokens.append(Token("keyword", raw.lower(), pos))
        elif kind == "string":
            tokens.append(Token("string", _unescape(raw[1:-1], pos + 1, what), pos))
        elif kind == "bquote":
            tokens.append(Token("name", raw[1:-1].replace("``", "`"), pos))
        elif kind != "ws":
            tokens.append(Token(kind, raw, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# --- parser ------------------------------------------------------------------------

_OPS = {"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        if len(text) > MAX_FILTER_CHARS:
            raise FilterSyntaxError(f"longer than {MAX_FILTER_CHARS} characters", 0, what)
        if "\x00" in text:
            # PostgreSQL text cannot hold NUL: refuse it here, with its position, rather
            # than let the query fail inside the database.
            raise FilterSyntaxError("NUL character", text.index("\x00"), what)
        self.what = what
        self.tokens = tokenize(text, what)
        self.i = 0
        self.depth = 0
        self.predicates = 0

    # helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, token: Token | None = None) -> FilterSyntaxError:
        return FilterSyntaxError(message, (token or self.tok).position, self.what)

    def describe(self, token: Token) -> str:
        return "end of input" if token.kind == "end" else repr(token.text)

    def at_keyword(self, *words: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.text in words

    def take(self) -> Token:
        tok = self.tok
        self.i += 1
        return tok

    def expect_punct(self, ch: str) -> Token:
        if self.tok.kind != "punct" or self.tok.text != ch:
            raise self.error(f"expected {ch!r}, found {self.describe(self.tok)}")
        return self.take()

    def expect_end(self) -> None:
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.describe(self.tok)}")

    # grammar
    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH} levels")
        items = [self.and_expr()]
        while self.at_keyword("or"):
            self.take()
            items.append(self.and_expr())
        self.depth -= 1
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.at_keyword("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Node:
        if self.at_keyword("not"):
            self.take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"nested deeper than {MAX_DEPTH} levels")
            inner = self.unary()
            self.depth -= 1
            return Not(inner)
        if self.tok.kind == "punct" and self.tok.text == "(":
            self.take()
            node = self.expr()
            self.expect_punct(")")
            return node
        return self.predicate()

    def predicate(self) -> Node:
        self.predicates += 1
        if self.predicates > MAX_PREDICATES:
            raise self.error(f"more than {MAX_PREDICATES} comparisons")
        field = self.field()
        tok = self.tok
        if tok.kind == "op":
            self.take()
            return _typed_compare(field, _OPS[tok.text], self.literal(), self)
        if self.at_keyword("is"):
            self.take()
            negated = self.at_keyword("not")
            if negated:
                self.take()
            if not self.at_keyword("null"):
                raise self.error(f"expected 'null', found {self.describe(self.tok)}")
            self.take()
            return _typed_is_null(field, negated, tok, self)
        negated = False
        if self.at_keyword("not"):
            self.take()
            negated = True
        if self.at_keyword("in"):
            self.take()
            return self.in_list(field, negated)
        if self.at_keyword("like"):
            self.take()
            pattern = self.literal()
            return _typed_compare(field, "not like" if negated else "like", pattern, self)
        expected = "'in' or 'like'" if negated else "a comparison operator, 'in', 'like' or 'is'"
        raise self.error(f"expected {expected}, found {self.describe(self.tok)}")

    def in_list(self, field: Field, negated: bool) -> Node:
        self.expect_punct("(")
        values = [self.literal()]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.take()
            values.append(self.literal())
            if len(values) > MAX_IN_VALUES:
                raise self.error(f"more than {MAX_IN_VALUES} values in a list")
        self.expect_punct(")")
        return _typed_in(field, values, negated, self)

    def literal(self) -> tuple[Token, str | float]:
        tok = self.tok
        if tok.kind == "string":
            self.take()
            return tok, tok.text
        if tok.kind == "number":
            self.take()
            value = float(tok.text)
            if not math.isfinite(value):
                raise self.error("number out of range", tok)
            return tok, value
        raise self.error(f"expected a string or a number, found {self.describe(tok)}")

    def segment(self) -> Token:
        tok = self.tok
        # Keywords are fine as path segments after a dot (params.in, metrics.loss.max).
        if tok.kind in ("ident", "name", "string", "keyword") and tok.text:
            return self.take()
        raise self.error(f"expected a name, found {self.describe(tok)}")

    def field(self) -> Field:
        first = self.tok
        if first.kind not in ("ident", "name"):
            raise self.error(f"expected a field name, found {self.describe(first)}")
        self.take()
        segments: list[Token] = []
        while self.tok.kind == "punct" and self.tok.text == ".":
            self.take()
            segments.append(self.segment())
        head = first.text.lower() if first.kind == "ident" else first.text
        if not segments:
            if head in COLUMNS:
                return Field("column", head, position=first.position)
            raise self.error(f"unknown field {first.text!r}", first)
        kinds: dict[str, Kind] = {"params": "param", "tags": "tag", "metrics": "metric"}
        if head not in kinds:
            raise self.error(f"unknown field {first.text!r}", first)
        kind = kinds[head]
        aggregate = ""
        if kind == "metric":
            aggregate = "last"
            last = segments[-1]
            if len(segments) > 1 and last.kind == "ident" and last.text in METRIC_AGGREGATES:
                aggregate = last.text
                segments = segments[:-1]
        name = ".".join(t.text for t in segments)
        return Field(kind, name, aggregate, first.position)


# --- typing of literals ----------------------------------------------------------------

_STATUS_NAMES = {s.name.lower(): s for s in RunStatus}


def _convert(field: Field, lit: tuple[Token, str | float], p: _Parser) -> Value:
    tok, value = lit
    if field.kind in ("param", "tag"):
        return value
    if field.kind == "metric":
        if not isinstance(value, float):
            raise p.error(f"{field.label} is numeric; compare it with a number", tok)
        if field.aggregate in ("count", "first_step", "last_step"):
            return _as_int(value, tok, p)
        return value
    ctype = COLUMNS[field.name]
    if ctype == "status":
        if not isinstance(value, str) or value.lower() not in _STATUS_NAMES:
            names = ", ".join(f'"{n}"' for n in _STATUS_NAMES)
            raise p.error(f"status must be one of {names}", tok)
        return int(_STATUS_NAMES[value.lower()])
    if ctype == "int":
        if not isinstance(value, float):
            raise p.error(f"{field.name} is a number", tok)
        return _as_int(value, tok, p)
    if ctype == "timestamp":
        if not isinstance(value, str):
            raise p.error(f"{field.name} takes an ISO 8601 time string", tok)
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            raise p.error(f"{field.name}: not an ISO 8601 time: {value!r}", tok) from None
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    if ctype == "uuid":
        import uuid

        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise p.error(f"{field.name}: not a UUID", tok) from None
    if not isinstance(value, str):
        raise p.error(f"{field.name} is text; quote the value", tok)
    return value


def _as_int(value: float, tok: Token, p: _Parser) -> int:
    if value != int(value) or abs(value) > 2**63 - 1:
        raise p.error("expected an integer", tok)
    return int(value)


def _typed_compare(field: Field, op: str, lit: tuple[Token, str | float], p: _Parser) -> Compare:
    value = _convert(field, lit, p)
    ctype = COLUMNS.get(field.name) if field.kind == "column" else None
    if op in ("like", "not like"):
        if not isinstance(lit[1], str) or field.kind == "metric" or ctype not in (None, "text"):
            raise p.error(f"'like' needs a text field and a string pattern ({field.label})", lit[0])
    elif ctype == "status" and op not in ("=", "!="):
        raise p.error(f"{field.name} supports only =, != and in", lit[0])
    # UUIDs also order (PostgreSQL compares their bytes, which is their hex text order),
    # so an id prefix is a range: how `tracker` finds a run by the first characters.
    return Compare(field, op, value)


def _typed_in(
    field: Field, lits: list[tuple[Token, str | float]], negated: bool, p: _Parser
) -> InList:
    values = tuple(_convert(field, lit, p) for lit in lits)
    if field.kind in ("param", "tag") and len({type(v) for v in values}) > 1:
        raise p.error("a list must hold only strings or only numbers", lits[0][0])
    return InList(field, values, negated)


def _typed_is_null(field: Field, negated: bool, tok: Token, p: _Parser) -> IsNull:
    if field.kind == "column" and field.name not in ("ended_at", "seed", "run_key"):
        raise p.error(f"{field.name} is never null", tok)
    return IsNull(field, negated)


# --- entry points ----------------------------------------------------------------------


def parse_filter(text: str) -> Node | None:
    """Parse a filter expression; None for an empty one. INVALID_ARGUMENT with the
    position on any error."""
    if not text.strip():
        return None
    p = _Parser(text, "filter")
    node = p.expr()
    p.expect_end()
    return node


def parse_order_by(entries: list[str]) -> list[OrderKey]:
    """Parse ``order_by`` entries (``field [asc|desc]``)."""
    if len(entries) > 3:
        raise invalid("at most 3 order_by entries", [("order_by", "too many")])
    keys: list[OrderKey] = []
    for i, entry in enumerate(entries):
        p = _Parser(entry, f"order_by[{i}]")
        field = p.field()
        descending = False
        if p.at_keyword("asc", "desc"):
            descending = p.take().text == "desc"
        p.expect_end()
        keys.append(OrderKey(field, descending))
    return keys


def format_node(node: Node) -> str:
    """Canonical text of a parsed filter (round-trips through ``parse_filter``)."""
    if isinstance(node, And | Or):
        word = " and " if isinstance(node, And) else " or "
        return "(" + word.join(format_node(i) for i in node.items) + ")"
    if isinstance(node, Not):
        return f"not {format_node(node.item)}"
    label = _quote_field(node.field)
    if isinstance(node, IsNull):
        return f"{label} is {'not ' if node.negated else ''}null"
    if isinstance(node, InList):
        values = ", ".join(_format_value(node.field, v) for v in node.values)
        return f"{label} {'not ' if node.negated else ''}in ({values})"
    return f"{label} {node.op} {_format_value(node.field, node.value)}"


def _quote_field(field: Field) -> str:
    if field.kind == "column":
        return field.name
    quoted = "`" + field.name.replace("`", "``") + "`"
    prefix = {"param": "params", "tag": "tags", "metric": "metrics"}[field.kind]
    suffix = f".{field.aggregate}" if field.kind == "metric" else ""
    return f"{prefix}.{quoted}{suffix}"


def _format_value(field: Field, value: Value) -> str:
    if field.kind == "column" and COLUMNS[field.name] == "status":
        return f'"{RunStatus(int(value)).name.lower()}"'  # type: ignore[arg-type]
    if isinstance(value, datetime):
        return f'"{value.isoformat()}"'
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(float(value)) if isinstance(value, float) else str(value)
