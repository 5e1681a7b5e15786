"""A drop-in for ``torch.utils.tensorboard.SummaryWriter`` that writes scalars to tracker.

Change the import and keep the script::

    # from torch.utils.tensorboard import SummaryWriter
    from tracker_client.integrations.tensorboard import SummaryWriter

    writer = SummaryWriter("runs/exp1")          # one tracker run, named "exp1"
    writer.add_scalar("loss", 0.3, global_step=10)
    writer.close()                               # finishes the run

``add_scalar``, ``add_scalars``, ``add_hparams``, ``flush`` and ``close`` are kept, with
``global_step`` (0 when omitted, as in TensorBoard) and ``walltime`` (the point's wall
time) honoured. Other ``add_*`` methods (images, histograms, graphs, ...) warn once
each and do nothing. No event files are written.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import tracker_client
from tracker_client.integrations._params import flatten, numeric


def default_log_dir(comment: str = "") -> str:
    """TensorBoard's default: ``runs/<Mon DD_HH-MM-SS>_<host><comment>``."""
    stamp = datetime.now().strftime("%b%d_%H-%M-%S")
    return os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")


class SummaryWriter:
    """Scalars of a ``torch.utils.tensorboard.SummaryWriter`` script, into one tracker run.

    ``log_dir`` names the run (its last path component; TensorBoard's default when
    omitted). ``comment``, ``purge_step``, ``max_queue``, ``flush_secs`` and
    ``filename_suffix`` are accepted for compatibility and have no effect. Keyword-only
    ``experiment``, ``name``, ``run_key``, ``tags`` and any other argument of
    :func:`tracker_client.init` choose the run.
    """

    def __init__(self, log_dir: str | os.PathLike[str] | None = None, comment: str = "",
                 purge_step: int | None = None, max_queue: int = 10, flush_secs: int = 120,
                 filename_suffix: str = "", *, experiment: str | None = None,
                 name: str | None = None, run_key: str | None = None,
                 tags: Mapping[str, str] | None = None, **init_kwargs: Any) -> None:
        self.log_dir = str(log_dir) if log_dir is not None else default_log_dir(comment)
        run_name = name or Path(self.log_dir).name or self.log_dir
        self._run = tracker_client.init(
            experiment=experiment, name=run_name, run_key=run_key,
            tags={"tensorboard.log_dir": self.log_dir, **(tags or {})}, **init_kwargs)
        self._warned: set[str] = set()
        self._closed = False

    @property
    def run(self) -> tracker_client.Run:
        """The tracker run written to."""
        return self._run

    def get_logdir(self) -> str:
        """The log directory the run is named after."""
        return self.log_dir

    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None,
                   walltime: float | None = None, new_style: bool = False,
                   double_precision: bool = False) -> None:
        """Log one value of ``tag`` (a number, numpy scalar or 0-d tensor)."""
        value = numeric(scalar_value)
        if value is None:
            raise TypeError(f"add_scalar({tag!r}): {type(scalar_value).__name__} is not a number")
        self._run.log({tag: value}, step=_step(global_step), wall_time=walltime)

    def add_scalars(self, main_tag: str, tag_scalar_dict: Mapping[str, Any],
                    global_step: int | None = None, walltime: float | None = None) -> None:
        """Log several values under ``main_tag``: key ``<main_tag>/<tag>`` each
        (TensorBoard writes them as runs ``<log_dir>/<main_tag>_<tag>``)."""
        values = {}
        for tag, raw in tag_scalar_dict.items():
            value = numeric(raw)
            if value is None:
                raise TypeError(f"add_scalars({main_tag!r}): {tag!r} is not a number")
            values[f"{main_tag}/{tag}"] = value
        self._run.log(values, step=_step(global_step), wall_time=walltime)

    def add_hparams(self, hparam_dict: Mapping[str, Any], metric_dict: Mapping[str, Any],
                    hparam_domain_discrete: Mapping[str, list[Any]] | None = None,
                    run_name: str | None = None, global_step: int | None = None) -> None:
        """Hyper-parameters become the run's params (nested keys dotted), the metrics are
        logged at ``global_step`` (TensorBoard writes both to a sub-run; here they belong
        to this run)."""
        if not isinstance(hparam_dict, Mapping) or not isinstance(metric_dict, Mapping):
            raise TypeError("hparam_dict and metric_dict should be dictionaries")
        params = flatten(hparam_dict)
        if params:
            self._run.log_params(params)
        values = {k: v for k, v in ((k, numeric(v)) for k, v in metric_dict.items())
                  if v is not None}
        if values:
            self._run.log(values, step=_step(global_step))

    def flush(self) -> None:
        """Wait (up to 30 s) until everything logged so far is stored."""
        if not self._closed:
            self._run.flush()

    def close(self) -> None:
        """Finish the run (status ``finished``)."""
        self._finish("finished")

    def _finish(self, status: str) -> None:
        if not self._closed:
            self._closed = True
            self._run.finish(status)

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self._finish("finished")
        else:
            self._finish("killed" if issubclass(exc_type, KeyboardInterrupt) else "failed")

    def __getattr__(self, name: str) -> Callable[..., None]:
        if not name.startswith("add_"):
            raise AttributeError(name)

        def unsupported(*args: Any, **kwargs: Any) -> None:
            if name not in self._warned:
                self._warned.add(name)
                warnings.warn(f"tracker SummaryWriter.{name}() is not supported and does "
                              "nothing; only scalars and hparams are recorded",
                              stacklevel=2)

        return unsupported


def _step(global_step: int | None) -> int:
    return 0 if global_step is None else int(global_step)


__all__ = ["SummaryWriter", "default_log_dir"]
