"""``TrackerLogger``: a Lightning logger (``lightning.pytorch``) writing to tracker.

>>> from lightning.pytorch import Trainer
>>> from tracker_client.integrations.lightning import TrackerLogger
>>> trainer = Trainer(logger=TrackerLogger(experiment="mnist"), max_epochs=2)

Every rank of a DDP job attaches to one run (see :func:`shared_run_key`) and, unlike
Lightning's ``rank_zero_only`` loggers, logs its own metrics, stored with its rank
(``all_ranks=False`` keeps only rank 0's). Hyper-parameters, checkpoint tags and the
final status come from rank 0. See docs/client.md, "Lightning".
"""

from __future__ import annotations

try:
    from lightning.pytorch.loggers import Logger
    from lightning.pytorch.utilities import rank_zero_only
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "tracker_client.integrations.lightning needs Lightning: "
        "pip install 'tracker[lightning]'") from exc

from tracker_client.integrations._lightning_core import (
    RUN_KEY_ENV,
    TrackerLoggerCore,
    shared_run_key,
)


def _global_rank() -> int:
    return int(getattr(rank_zero_only, "rank", 0) or 0)


class TrackerLogger(TrackerLoggerCore, Logger):
    """A ``lightning.pytorch.loggers.Logger`` writing to a tracker run.

    Arguments: ``experiment`` (default ``$TRACKER_EXPERIMENT``), ``name`` (run name),
    ``run_key`` (default: shared by the job's ranks), ``tags``, ``resume`` (start a new
    attempt of the run, for a job resumed from a checkpoint), ``all_ranks`` (False: only
    rank 0 logs metrics), ``prefix`` (prepended to metric keys), ``log_checkpoints``
    (record every checkpoint Lightning saves as an artifact at its step; default True),
    ``hash_checkpoints`` (with their SHA-256, computed off the training thread); other
    keyword arguments go to :func:`tracker_client.init` (``server``, ``api_key``,
    ``options``, ...).
    """

    _global_rank = staticmethod(_global_rank)


__all__ = ["RUN_KEY_ENV", "TrackerLogger", "shared_run_key"]
