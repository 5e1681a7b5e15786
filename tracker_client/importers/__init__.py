"""Importers: bring runs from other trackers into tracker, idempotently.

- :mod:`tracker_client.importers.mlflow` — experiments, runs, params, tags, status and
  metric histories from an MLflow tracking server (``tracker import mlflow``).
- :mod:`tracker_client.importers.tensorboard` — scalars from TensorBoard event files,
  one run per event-file directory (``tracker import tensorboard``).

Both write through :class:`~tracker_client.importers._sink.Sink`: deterministic run keys
and writer ids, so importing again sends nothing twice (see docs/client.md, "Importers").
"""

from tracker_client.importers._sink import ImportFailed, Points, RunOutcome, Sink, SourceRun

__all__ = ["ImportFailed", "Points", "RunOutcome", "Sink", "SourceRun"]
