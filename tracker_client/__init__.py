"""tracker client: log metrics from training jobs without slowing them down.

>>> import tracker_client
>>> with tracker_client.init(experiment="mnist", config={"lr": 3e-4}) as run:
...     for step in range(100):
...         run.log({"loss": 1 / (step + 1)}, step=step)
"""

from tracker_client._run import DeliveryReport, Run, init
from tracker_client._sender import DeliveryStats, SenderOptions

__all__ = ["DeliveryReport", "DeliveryStats", "Run", "SenderOptions", "init"]
__version__ = "0.1.0"
