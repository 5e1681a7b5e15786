"""Flattening trainer configs into params (pure unit tests, no server)."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import math

import numpy as np

from tracker_client.integrations._params import MAX_VALUE_CHARS, flatten, numeric, render


class Mode(enum.Enum):
    FAST = "fast"


@dataclasses.dataclass
class Inner:
    lr: float = 1e-3
    mode: Mode = Mode.FAST


class WithToDict:
    def to_dict(self) -> dict[str, object]:
        return {"hidden": 16, "token": "<MASKED>"}


def test_nested_mappings_namespaces_dataclasses_and_to_dict() -> None:
    config = {"optim": {"lr": 1e-3, "betas": (0.9, 0.999)}, "ns": argparse.Namespace(a=1),
              "inner": Inner(), "model": WithToDict(), "tags": {"b", "a"}, "none": None,
              "empty": {}}
    assert flatten(config) == {
        "optim.lr": "0.001", "optim.betas": "[0.9, 0.999]", "ns.a": "1", "inner.lr": "0.001",
        "inner.mode": "fast", "model.hidden": "16", "model.token": "<MASKED>",
        "tags": '["a", "b"]', "none": "None", "empty": "{}",
    }
    assert flatten(Inner(), "cfg") == {"cfg.lr": "0.001", "cfg.mode": "fast"}


def test_values_are_bounded_and_rendered() -> None:
    assert len(flatten({"long": "x" * 10_000})["long"]) == MAX_VALUE_CHARS
    assert flatten({"k" * 300: 1}) == {}  # longer than the server's key limit
    assert render(math.inf) == "inf" and render([object]) .startswith('["')


def test_numeric_accepts_numbers_only() -> None:
    assert numeric(1) == 1.0 and numeric(True) == 1.0 and numeric(np.float32(0.5)) == 0.5
    assert numeric(np.array(2.5)) == 2.5
    assert numeric("1.0") is None and numeric(None) is None and numeric([1.0]) is None
    assert math.isnan(numeric(float("nan")) or 0.0)
