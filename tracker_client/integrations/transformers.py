"""``TrackerCallback``: log a Hugging Face ``Trainer`` to tracker.

>>> from transformers import Trainer, TrainingArguments
>>> from tracker_client.integrations.transformers import TrackerCallback
>>> trainer = Trainer(model, TrainingArguments("out", report_to=[]), train_dataset=data,
...                   callbacks=[TrackerCallback(experiment="bert")])
>>> trainer.train()

At train begin the run gets the ``TrainingArguments`` as params and the model config as
``model.*`` params; every ``on_log`` and ``on_evaluate`` logs the numeric values at
``state.global_step``; every ``on_save`` records the checkpoint folder as an artifact;
train end finishes the run. An exception out of ``train()``
marks it failed (``killed`` for Ctrl-C). Like the Trainer's own integrations, only the
world's process zero logs. See docs/client.md, "Hugging Face Transformers".
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

try:
    from transformers import Trainer, TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("tracker_client.integrations.transformers needs transformers: "
                      "pip install 'tracker[transformers]'") from exc

import tracker_client
from tracker_client.integrations._params import flatten, numeric

_TRAINER_FRAMES = 6
"""How far up the stack ``on_init_end`` looks for the Trainer that calls it."""


class TrackerCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` writing to a tracker run.

    Arguments: ``experiment`` (default ``$TRACKER_EXPERIMENT``), ``name`` (default: the
    arguments' ``run_name``), ``run_key`` (default: the job's, as ``init()``; without one
    each ``train()`` starts a new run), ``tags``, ``resume``, ``model_config`` (False:
    leave the model config out of the params), ``log_checkpoints`` (record each
    ``checkpoint-<step>`` folder the Trainer saves as an artifact; default True),
    ``hash_checkpoints`` (with a SHA-256 over its files, computed off the training
    thread); other keyword arguments go to :func:`tracker_client.init`.
    """

    def __init__(self, experiment: str | None = None, name: str | None = None,
                 run_key: str | None = None, tags: Mapping[str, str] | None = None,
                 resume: bool = False, model_config: bool = True,
                 log_checkpoints: bool = True, hash_checkpoints: bool = False,
                 **init_kwargs: Any) -> None:
        self._experiment = experiment
        self._name = name
        self._run_key = run_key
        self._tags = dict(tags or {})
        self._resume = resume
        self._model_config = model_config
        self._log_checkpoints = log_checkpoints
        self._hash_checkpoints = hash_checkpoints
        self._init_kwargs = init_kwargs
        self._run: tracker_client.Run | None = None
        self._last: dict[str, tuple[int, float]] = {}

    @property
    def run(self) -> tracker_client.Run | None:
        """The run being written (None outside ``train()`` and on other processes)."""
        return self._run

    # -- events ------------------------------------------------------------------------

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Wrap the Trainer's ``train()`` so that an exception fails the run."""
        trainer = _calling_trainer(sys._getframe(1))
        if trainer is not None and not getattr(trainer.train, "_tracker_wrapped", False):
            trainer.train = self._guard(trainer.train)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        """Attach to the run and record the params."""
        if not state.is_world_process_zero:
            return
        if self._run is not None:  # a train() that ended without on_train_end
            self._finish("failed")
        run = tracker_client.init(
            experiment=self._experiment, name=self._name or getattr(args, "run_name", None),
            run_key=self._run_key, tags=self._tags, resume=self._resume,
            seed=getattr(args, "seed", None), **self._init_kwargs)
        self._run, self._last = run, {}
        params = flatten(args)
        config = getattr(model, "config", None)
        if self._model_config and config is not None:
            params.update(flatten(config, "model"))
        if params:
            run.log_params(params)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        """Log the numeric entries of ``logs`` at the global step."""
        self._log(state, logs)

    def on_evaluate(self, args: Any, state: Any, control: Any,
                    metrics: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Log the evaluation metrics at the global step."""
        self._log(state, metrics)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Record the checkpoint folder just saved (``<output_dir>/checkpoint-<step>``,
        the Trainer's naming) as an artifact at the global step."""
        run = self._run
        if run is None or not self._log_checkpoints:
            return
        step = int(state.global_step)
        folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}")
        metadata = {"source": "transformers"}
        best = getattr(state, "best_model_checkpoint", None)
        if best:
            metadata["best"] = str(os.path.abspath(best) == os.path.abspath(folder)).lower()
        run.log_artifact(folder, kind="checkpoint", step=step,
                         compute_hash=self._hash_checkpoints, metadata=metadata)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Finish the run."""
        self._finish("finished")

    # -- internals ---------------------------------------------------------------------

    def _log(self, state: Any, values: Mapping[str, Any] | None) -> None:
        run = self._run
        if run is None or not values:
            return
        step = int(state.global_step)
        out = {}
        for key, value in values.items():
            number = numeric(value)
            # The Trainer reports evaluation metrics through on_log and on_evaluate:
            # log each (key, step, value) once.
            if number is not None and self._last.get(key) != (step, number):
                out[key] = number
                self._last[key] = (step, number)
        if out:
            run.log(out, step=step)

    def _finish(self, status: str) -> None:
        run, self._run = self._run, None
        if run is not None:
            run.finish(status)

    def _guard(self, train: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(train)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return train(*args, **kwargs)
            except BaseException as exc:
                self._finish("killed" if isinstance(exc, KeyboardInterrupt) else "failed")
                raise

        guarded._tracker_wrapped = True  # type: ignore[attr-defined]  # marker attribute
        return guarded


def _calling_trainer(frame: FrameType | None) -> Any:
    """The ``Trainer`` whose ``__init__`` is up the stack (it calls ``on_init_end``)."""
    for _ in range(_TRAINER_FRAMES):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer):
            return candidate
        frame = frame.f_back
    return None


__all__ = ["TrackerCallback"]
