"""One TensorBoard-style training script, run with either SummaryWriter, and a reader
of the event files torch writes (TensorBoard's own EventAccumulator)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

WALL0 = 1_700_000_000.0
STEPS = 50

SCRIPT = """
import math

import numpy as np
{import_line}

writer = SummaryWriter(LOG_DIR)
for step in range(STEPS):
    wall = WALL0 + step * 0.25
    writer.add_scalar("loss", math.exp(-step / 10), global_step=step, walltime=wall)
    if step % 10 == 0:
        writer.add_scalars("lr", {{"a": 0.1 / (step + 1), "b": 0.2}}, global_step=step,
                           walltime=wall)
writer.add_scalar("no_step", 7.0, walltime=WALL0)
writer.add_histogram("weights", np.array([1.0, 2.0, 3.0]), global_step=0)
writer.add_hparams({{"lr": 0.1, "optim": "adam"}}, {{"hparam/acc": 0.9}})
writer.flush()
writer.close()
"""

TORCH_IMPORT = "from torch.utils.tensorboard import SummaryWriter"
TRACKER_IMPORT = "from tracker_client.integrations.tensorboard import SummaryWriter"


def run_script(import_line: str, log_dir: Path) -> None:
    """Run the script in this process with one of the two imports."""
    code = SCRIPT.format(import_line=import_line)
    exec(compile(code, f"<tensorboard script: {import_line}>", "exec"),
         {"LOG_DIR": str(log_dir), "STEPS": STEPS, "WALL0": WALL0, "__name__": "script"})


def expected_loss(step: int) -> float:
    """The loss the script logs at ``step``."""
    return math.exp(-step / 10)


def event_scalars(log_dir: Path) -> dict[str, list[tuple[int, float, float]]]:
    """Tracker key -> [(step, value, wall time)] of what torch wrote under ``log_dir``:
    main-run tags as they are, ``add_scalars`` sub-runs ``<main>_<tag>`` as ``<main>/<tag>``,
    the hparams sub-run's metric tags as they are."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float, float]]] = {}
    dirs = sorted({p.parent for p in log_dir.rglob("*tfevents*")})
    for directory in dirs:
        acc: Any = EventAccumulator(str(directory), size_guidance={"scalars": 0})
        acc.Reload()
        rel = directory.relative_to(log_dir).as_posix()
        for tag in acc.Tags()["scalars"]:
            key = tag
            if rel != "." and rel.startswith(f"{tag}_"):
                key = f"{tag}/{rel[len(tag) + 1:]}"
            out[key] = [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)]
    return out
