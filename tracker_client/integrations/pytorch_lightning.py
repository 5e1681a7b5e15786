"""``TrackerLogger`` for the standalone ``pytorch_lightning`` package.

The same logger as :mod:`tracker_client.integrations.lightning`, built on
``pytorch_lightning.loggers.Logger`` for code that imports Lightning under that name.
"""

from __future__ import annotations

try:
    from pytorch_lightning.loggers import Logger
    from pytorch_lightning.utilities import rank_zero_only
except ImportError as exc:  # pragma: no cover - exercised without the package
    raise ImportError(
        "tracker_client.integrations.pytorch_lightning needs pytorch_lightning: "
        "pip install pytorch-lightning") from exc

from tracker_client.integrations._lightning_core import TrackerLoggerCore


def _global_rank() -> int:
    return int(getattr(rank_zero_only, "rank", 0) or 0)


class TrackerLogger(TrackerLoggerCore, Logger):
    """A ``pytorch_lightning.loggers.Logger`` writing to a tracker run (arguments as in
    :class:`tracker_client.integrations.lightning.TrackerLogger`)."""

    _global_rank = staticmethod(_global_rank)


__all__ = ["TrackerLogger"]
