"""Scalars from TensorBoard event files: one tracker run per event-file directory.

Each directory under LOGDIR holding ``*tfevents*`` files becomes a run keyed
``tensorboard:<path relative to LOGDIR>`` in one experiment (LOGDIR's name unless
given), with every scalar tag as a metric key at its step and wall time. Both kinds of
scalar TensorBoard writes are read: ``simple_value`` (``SummaryWriter.add_scalar``) and
single-value tensors of the scalars plugin (``new_style=True``). Points keep file order
(event files sorted by name, which starts with their creation time, then record
order), so a directory that gained events since the last import sends only those.
Images, histograms, text and hparams are not imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tracker_client.importers._sink import Points, SourceRun

try:
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.util import tensor_util
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("importing TensorBoard event files needs tensorboard: "
                      "pip install 'tracker[tensorboard]'") from exc

SCALARS_PLUGIN = "scalars"


def event_files(directory: Path) -> list[Path]:
    """The event files directly in ``directory``, in creation (name) order."""
    return sorted(p for p in directory.iterdir() if p.is_file() and "tfevents" in p.name)


def run_directories(logdir: Path) -> list[Path]:
    """Every directory under (and including) ``logdir`` that holds event files."""
    if not logdir.is_dir():
        raise FileNotFoundError(f"{logdir} is not a directory")
    found = {p.parent for p in logdir.rglob("*tfevents*") if p.is_file()}
    return sorted(found)


def read_scalars(directory: Path) -> Points:
    """Every scalar of the event files of one directory, in file order."""
    keys: dict[str, int] = {}
    index: list[int] = []
    steps: list[int] = []
    values: list[float] = []
    wall: list[float] = []
    for path in event_files(directory):
        plugins: dict[str, str] = {}
        for event in LegacyEventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.HasField("metadata") and value.metadata.plugin_data.plugin_name:
                    plugins[value.tag] = value.metadata.plugin_data.plugin_name
                number = _scalar(value, plugins.get(value.tag, ""))
                if number is None:
                    continue
                index.append(keys.setdefault(value.tag, len(keys)))
                steps.append(event.step)
                values.append(number)
                wall.append(event.wall_time)
    return Points(
        keys=list(keys), key_index=np.array(index, dtype=np.uint32),
        steps=np.array(steps, dtype=np.int64), values=np.array(values, dtype=np.float64),
        # Whole microseconds, as the client stamps them (tracker_client._clock).
        wall_ns=np.round(np.array(wall, dtype=np.float64) * 1e6).astype(np.int64) * 1000,
    )


def _scalar(value: Any, plugin: str) -> float | None:
    """The number of a ``Summary.Value``, None when it holds something else."""
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if plugin == SCALARS_PLUGIN and value.HasField("tensor"):
        array = tensor_util.make_ndarray(value.tensor)
        if array.size == 1:
            return float(array.reshape(()))
    return None


def read_logdir(logdir: str | Path, experiment: str | None = None) -> Iterator[SourceRun]:
    """One :class:`SourceRun` per event-file directory of ``logdir``, read lazily."""
    root = Path(logdir).expanduser().resolve()
    name = experiment or root.name or "tensorboard"
    for directory in run_directories(root):
        rel = directory.relative_to(root).as_posix()
        yield SourceRun(
            experiment=name, run_key=f"tensorboard:{rel}"[:200],
            name=rel if rel != "." else root.name,
            tags={"tensorboard.log_dir": str(directory)}, metadata={"source": "tensorboard"},
            status="finished", points=read_scalars(directory),
        )
