"""Experiments and runs: domain records and input rules."""

from __future__ import annotations

import enum
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tracker_server.domain.errors import failed_precondition, invalid

MAX_NAME_CHARS = 200
MAX_PARAM_KEY_CHARS = 250
MAX_PARAM_VALUE_CHARS = 6000
MAX_PARAMS_PER_CALL = 1000
MAX_METADATA_DEPTH = 32
MAX_METRIC_KEY_CHARS = 1024
"""Longest metric name a read may ask for (ingest bounds names in UTF-8 bytes,
``TRACKER_MAX_KEY_BYTES``; a read only finds names that exist, so this is generous)."""


class ExperimentStatus(enum.IntEnum):
    """Mirrors tracker.v1.ExperimentStatus."""

    CREATED = 1
    ACTIVE = 2
    ARCHIVED = 3


class RunStatus(enum.IntEnum):
    """Mirrors tracker.v1.RunStatus."""

    RUNNING = 1
    FINISHED = 2
    FAILED = 3
    KILLED = 4


@dataclass(frozen=True)
class Experiment:
    """An experiment row."""

    experiment_id: uuid.UUID
    name: str
    owner: str
    description: str
    status: ExperimentStatus
    created_at: datetime


@dataclass(frozen=True)
class Run:
    """A run row with its params and tags."""

    run_id: uuid.UUID
    experiment_id: uuid.UUID
    name: str
    run_key: str
    status: RunStatus
    attempt: int
    seed: int | None
    slurm_job_id: str
    metadata: dict[str, Any]
    created_at: datetime
    ended_at: datetime | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    """User summary values (``SetSummary``), beside the summaries kept from points."""
    metric_goals: dict[str, str] = field(default_factory=dict)
    """``min``/``max`` per key (``DefineMetrics``)."""


@dataclass(frozen=True)
class NewRun:
    """What CreateRun asks for."""

    experiment_id: uuid.UUID
    name: str
    run_key: str
    seed: int | None
    slurm_job_id: str
    metadata: dict[str, Any]
    params: dict[str, str]
    tags: dict[str, str]
    resume: bool
    resume_token: str = ""


def parse_uuid(value: str, what: str) -> uuid.UUID:
    """A UUID from the wire, or INVALID_ARGUMENT naming the field."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise invalid(f"{what} is not a UUID: {value[:80]!r}", [(what, "not a UUID")]) from None


def check_name(value: str, what: str, *, required: bool = True) -> str:
    """Strip and bound a name."""
    value = value.strip()
    if required and not value:
        raise invalid(f"{what} must not be empty", [(what, "empty")])
    if len(value) > MAX_NAME_CHARS:
        raise invalid(f"{what} is longer than {MAX_NAME_CHARS} characters", [(what, "too long")])
    if "\x00" in value:
        raise invalid(f"{what} contains NUL", [(what, "NUL character")])
    return value


def check_metric_key(value: str, what: str) -> str:
    """A metric name to look up, exactly as given (names are stored unstripped):
    non-empty, bounded, without NUL."""
    if not value:
        raise invalid(f"{what} must not be empty", [(what, "empty")])
    if len(value) > MAX_METRIC_KEY_CHARS:
        raise invalid(f"{what} is longer than {MAX_METRIC_KEY_CHARS} characters",
                      [(what, "too long")])
    return check_text(value, what)


def check_text(value: str, what: str) -> str:
    """Free text PostgreSQL can store: INVALID_ARGUMENT naming the field for a NUL
    character (``text`` and ``jsonb`` refuse it)."""
    if "\x00" in value:
        raise invalid(f"{what} contains a NUL character", [(what, "NUL character")])
    return value


def check_metadata(value: Any, what: str = "metadata", depth: int = 0) -> Any:
    """JSON-like run metadata (dicts, lists, strings, numbers, booleans, None) that
    ``jsonb`` can hold losslessly: NaN and infinities (JSON has no spelling for them)
    and NUL characters are refused, naming the path of the offending value."""
    if depth > MAX_METADATA_DEPTH:
        raise invalid(f"{what}: nested deeper than {MAX_METADATA_DEPTH} levels",
                      [(what, "too deep")])
    if isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key), f"{what} key {str(key)[:40]!r}")
            check_metadata(item, f"{what}.{str(key)[:40]}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_metadata(item, f"{what}[{i}]", depth + 1)
    elif isinstance(value, str):
        check_text(value, what)
    elif isinstance(value, float) and not math.isfinite(value):
        raise invalid(
            f"{what} is {value}: metadata is JSON, which has no NaN or infinity "
            "(send it as a string)",
            [(what, "not a finite number")],
        )
    elif value is not None and not isinstance(value, bool | int | float):
        raise invalid(f"{what}: unsupported type {type(value).__name__}",
                      [(what, "unsupported type")])
    return value


def check_kv(values: dict[str, str], what: str) -> dict[str, str]:
    """Bound a params/tags map."""
    if len(values) > MAX_PARAMS_PER_CALL:
        raise invalid(f"more than {MAX_PARAMS_PER_CALL} {what} in one call")
    for key, value in values.items():
        if not key or len(key) > MAX_PARAM_KEY_CHARS or "\x00" in key:
            raise invalid(
                f"{what} key {key[:80]!r} must be 1..{MAX_PARAM_KEY_CHARS} characters without NUL",
                [(f"{what}[{key[:80]}]", "bad key")],
            )
        if len(value) > MAX_PARAM_VALUE_CHARS or "\x00" in value:
            raise invalid(
                f"{what} value of {key!r} must be at most {MAX_PARAM_VALUE_CHARS} characters "
                "without NUL",
                [(f"{what}[{key[:80]}]", "bad value")],
            )
    return values


TERMINAL_STATUSES = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED})


def check_finish_status(value: int) -> RunStatus:
    """The target status of FinishRun: FINISHED, FAILED or KILLED."""
    try:
        status = RunStatus(value)
    except ValueError:
        status = None
    if status not in TERMINAL_STATUSES:
        raise invalid(
            "status must be FINISHED, FAILED or KILLED", [("status", "not a terminal status")]
        )
    assert status is not None
    return status


def check_transition(current: RunStatus, target: RunStatus) -> bool:
    """Whether ``current -> target`` changes the run; False for a repeat of the same
    terminal status (a no-op, so retried FinishRun calls succeed). FAILED_PRECONDITION
    for any other transition out of a terminal status."""
    if current == target:
        return False
    if current != RunStatus.RUNNING:
        raise failed_precondition(
            f"run is already {current.name.lower()}; cannot become {target.name.lower()}"
        )
    return True


def check_experiment_status(value: int) -> ExperimentStatus:
    """A settable experiment status (UNSPECIFIED and unknown numbers are refused)."""
    try:
        return ExperimentStatus(value)
    except ValueError:
        raise invalid(
            f"status {value} is not CREATED, ACTIVE or ARCHIVED",
            [("status", "not a valid experiment status")],
        ) from None


def check_id_list(values: list[str], what: str, most: int) -> list[uuid.UUID]:
    """1..``most`` UUIDs, order kept, duplicates dropped."""
    if not values:
        raise invalid(f"{what} must not be empty", [(what, "empty")])
    if len(values) > most:
        raise invalid(f"at most {most} {what}", [(what, "too many")])
    return list(dict.fromkeys(parse_uuid(v, what) for v in values))
