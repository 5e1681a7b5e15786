"""Optional system metrics (``sys/...`` keys): CPU, memory, GPU, on their own thread."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("tracker_client")


class SystemMetrics:
    """Samples every ``interval_s`` and hands a dict to ``emit(metrics, step)``.

    The step is whole seconds since start, so the series lines up across ranks and
    never collides with the user's own step counter.
    """

    def __init__(self, interval_s: float, emit: Callable[[dict[str, float], int], None],
                 rank: int = 0) -> None:
        self._interval = interval_s
        self._emit = emit
        self._rank = rank
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._nvml: Any = None
        self._thread = threading.Thread(target=self._loop, name="tracker-sysmetrics",
                                        daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop sampling and wait up to ``timeout`` s for a sample being taken: the run's
        final flush must come after its last point, or that point stays undelivered."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        import psutil  # type: ignore[import-untyped]  # no stubs in the dependency set

        proc = psutil.Process()
        psutil.cpu_percent(None)  # the first call only primes the counter
        self._init_gpu()
        while not self._stop.wait(self._interval):
            try:
                vm = psutil.virtual_memory()
                sample = {
                    "sys/cpu_percent": float(psutil.cpu_percent(None)),
                    "sys/memory_percent": float(vm.percent),
                    "sys/memory_used_bytes": float(vm.used),
                    "sys/process_rss_bytes": float(proc.memory_info().rss),
                }
                sample.update(self._gpu_sample())
                if self._stop.is_set():  # stopped while sampling: the run is closing
                    break
                self._emit(sample, int(time.monotonic() - self._start))
            except Exception:  # never let sampling break the run
                log.debug("tracker_client: system metrics sample failed", exc_info=True)
        self._shutdown_gpu()

    def _init_gpu(self) -> None:
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception:  # no package or no driver: CPU-only metrics
            self._nvml = None

    def _gpu_sample(self) -> dict[str, float]:
        nv = self._nvml
        if nv is None:
            return {}
        out: dict[str, float] = {}
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            util = nv.nvmlDeviceGetUtilizationRates(h)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            out[f"sys/gpu{i}/utilization_percent"] = float(util.gpu)
            out[f"sys/gpu{i}/memory_used_bytes"] = float(mem.used)
            out[f"sys/gpu{i}/memory_percent"] = 100.0 * float(mem.used) / max(1.0, mem.total)
        return out

    def _shutdown_gpu(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
