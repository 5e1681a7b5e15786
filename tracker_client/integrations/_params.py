"""Turn a trainer's configuration into flat string params with dotted keys.

Trainers hand over their hyper-parameters as nested dicts, ``argparse.Namespace``,
dataclasses or config objects with ``to_dict()``; tracker params are a flat
``str -> str`` map, so ``{"optim": {"lr": 1e-3}}`` becomes ``{"optim.lr": "0.001"}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

MAX_VALUE_CHARS = 6000
"""The server's limit on one param value; longer values are cut (and marked)."""
MAX_KEY_CHARS = 250
"""The server's limit on one param key; longer keys are left out."""


def as_mapping(config: Any) -> Mapping[str, Any] | None:
    """The mapping view of a config object, None when it is a leaf value."""
    if isinstance(config, Mapping):
        return config
    if isinstance(config, argparse.Namespace):
        return vars(config)
    if isinstance(config, type):
        return None
    # transformers configs and TrainingArguments (whose to_dict() masks tokens)
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        value = to_dict()
        if isinstance(value, Mapping):
            return value
    if dataclasses.is_dataclass(config):
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return None


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"a.b": "value"}``; leaves rendered by :func:`render`."""
    return dict(_walk(config, prefix))


def _walk(config: Any, prefix: str) -> Iterator[tuple[str, str]]:
    mapping = as_mapping(config)
    if mapping is None:
        if prefix:
            yield from _leaf(prefix, config)
        return
    if not mapping and prefix:
        yield from _leaf(prefix, {})
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        yield from _walk(value, name)


def _leaf(key: str, value: Any) -> Iterator[tuple[str, str]]:
    if len(key) > MAX_KEY_CHARS:
        return
    text = render(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 3] + "..."
    yield key, text


def render(value: Any) -> str:
    """A param value as text: numbers as Python prints them, enums by value, lists
    and tuples as JSON when they hold plain values, anything else via ``str()``."""
    if isinstance(value, enum.Enum):
        return render(value.value)
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        try:
            return json.dumps(items, default=str)
        except (TypeError, ValueError):
            return str(items)
    return str(value)


def numeric(value: Any) -> float | None:
    """``float(value)`` for numbers (bools, numpy scalars, 0-d tensors included),
    None for anything that is not a single number (strings, lists, None)."""
    if value is None or isinstance(value, str | bytes):
        return None
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0:
        value = item()
    if isinstance(value, bool | int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
