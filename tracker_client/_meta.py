"""A spool's ``meta.json``: who wrote the spool, which run it belongs to, how far it got.

The spool, the live run, orphan recovery, ``tracker sync`` and the control ops all read
it, so it is one frozen dataclass with one reader and one writer. On disk it stays a
flat JSON object; the reader ignores keys it does not know and defaults the ones that
are missing, so spools written by any version of the client stay readable.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

META_FILE = "meta.json"
META_VERSION = 1

Mode = Literal["online", "offline"]


@dataclass(frozen=True)
class SpoolMeta:
    """Identity and delivery progress of one writer's spool."""

    version: int = META_VERSION
    """Layout version of the spool directory."""
    mode: Mode = "online"
    """``offline`` spools wait for ``tracker sync``; online ones are recovered at init."""
    server: str = ""
    """``host:port`` the writer was started against."""
    experiment: str = ""
    """Experiment name (created when missing)."""
    owner: str = ""
    """Owner of the experiment when it is created."""
    name: str = ""
    """Requested run name ("" lets the server choose)."""
    run_key: str = ""
    """Idempotency key every rank of one job shares."""
    writer_id: str = ""
    """Identity of this writer; its seqs are exactly-once per writer id."""
    rank: int = 0
    """Distributed rank of the writer."""
    params: dict[str, str] = field(default_factory=dict)
    """Hyper-parameters given to ``init()``."""
    tags: dict[str, str] = field(default_factory=dict)
    """Tags given to ``init()``."""
    resume: bool = False
    """This writer starts a new attempt of the run."""
    resume_token: str = ""
    """Makes a retried resume count once (see ``CreateRunRequest.resume_token``)."""
    seed: int | None = None
    """Random seed of the job, when given."""
    slurm_job_id: str = ""
    """``SLURM_JOB_ID`` of the job, "" outside SLURM."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Reproducibility metadata recorded at init (host, git, packages, GPUs, ...)."""
    created_ns: int = 0
    """When the spool was created, ns since the epoch."""
    attach_run_id: str = ""
    """``init(run_id=...)``: attach to this existing run instead of creating one by key."""
    run_id: str = ""
    """Server id of the run, "" until the run was created or attached."""
    experiment_id: str = ""
    """Server id of the experiment, "" until attached."""
    attempt: int = 0
    """Attempt of the run this writer logs under, 0 until attached."""
    run_name: str = ""
    """Name the server gave the run, "" until attached."""
    acked_seq: int = 0
    """Highest seq known to be durable on the server."""
    last_seq: int = 0
    """Highest seq written (so seqs stay unique when segments are gone)."""
    ops_done: int = 0
    """Lines of ``ops.jsonl`` already delivered (or failed for good)."""
    closed: bool = False
    """The writer closed the spool without delivering everything."""


_HINTS = typing.get_type_hints(SpoolMeta)
_FIELDS = {f.name: f for f in dataclasses.fields(SpoolMeta)}


def _coerce(name: str, value: Any) -> Any:
    hint = _HINTS[name]
    if typing.get_origin(hint) is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if hint is int or hint == (int | None):
        try:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError
            return int(value)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if hint is str:
        return str(value)
    if typing.get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be an object, got {value!r}")
        if typing.get_args(hint)[1] is str:
            return {str(k): str(v) for k, v in value.items()}
        return dict(value)
    raise AssertionError(f"no reader for SpoolMeta.{name}: {hint!r}")


def parse_meta(data: Any) -> SpoolMeta:
    """A ``SpoolMeta`` from decoded JSON; unknown keys are ignored, missing (or null)
    ones take their defaults. Raises ValueError on a value of the wrong type."""
    if not isinstance(data, dict):
        raise ValueError(f"{META_FILE} must hold a JSON object")
    values = {name: _coerce(name, value) for name, value in data.items()
              if name in _FIELDS and value is not None}
    return SpoolMeta(**values)


def read_meta(directory: Path) -> SpoolMeta:
    """The meta of the spool in ``directory``.

    Raises FileNotFoundError when there is none and ValueError when it is unreadable.
    """
    text = (directory / META_FILE).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{META_FILE} is not JSON: {exc}") from None
    return parse_meta(data)


def write_meta(directory: Path, meta: SpoolMeta) -> None:
    """Replace the meta of the spool in ``directory`` atomically."""
    tmp = directory / (META_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(meta), f, indent=1, sort_keys=True, default=str)
    os.replace(tmp, directory / META_FILE)
