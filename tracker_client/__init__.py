"""tracker client: log metrics from training jobs without slowing them down.

>>> import tracker_client
>>> with tracker_client.init(experiment="mnist", config={"lr": 3e-4}) as run:
...     for step in range(100):
...         run.log({"loss": 1 / (step + 1)}, step=step)

``log()`` never blocks; points go through an on-disk spool and are delivered exactly
once, surviving server restarts, network loss and killed trainers. See docs/client.md.
"""

from tracker_client._aio_api import AsyncApi, AsyncApiRun, AsyncRuns
from tracker_client._api import Api, ApiRun, Runs
from tracker_client._api_types import (
    Comparison,
    Experiment,
    MetricSummary,
    RankedRun,
    Ranking,
)
from tracker_client._artifact_types import Artifact
from tracker_client._history import HistoryArrays
from tracker_client._options import Options
from tracker_client._recover import SyncResult
from tracker_client._run import DeliveryReport, Run, TrackerError, init
from tracker_client._stats import RunStats
from tracker_client._summary import RunSummary

__all__ = ["Api", "ApiRun", "Artifact", "AsyncApi", "AsyncApiRun", "AsyncRuns", "Comparison",
           "DeliveryReport", "Experiment", "HistoryArrays", "MetricSummary",
           "Options", "RankedRun", "Ranking", "Run", "RunStats", "RunSummary", "Runs", "SyncResult",
           "TrackerError", "init"]
__version__ = "0.1.0"
