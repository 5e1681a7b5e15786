"""``GET /metrics`` for the whole server, not for the one worker a scrape lands on.

Each server process keeps its OpenTelemetry metrics in a ``prometheus_client`` registry
of its own (``telemetry.prometheus_reader``). A lone server renders that registry. Under
the supervisor (``tracker-server --workers N``) the HTTP port is shared by every worker
(SO_REUSEPORT), so a scrape reaches one of them at random; that worker asks every other
worker for its metrics over a Unix socket in a directory the supervisor made for this
server (``PEERS_ENV``), and answers with the union, each series labelled
``worker="<n>"``.

Why labels and not sums (prometheus_client's multiprocess mode sums): the metrics are
OpenTelemetry's, which multiprocess mode cannot read (it only knows prometheus_client's
own metric classes, kept in mmap files); and a worker that restarts starts its counters
from zero, which Prometheus' ``rate()`` handles per series but would misread as a reset
of a sum. Dashboards and alerts ``sum()`` over ``worker`` (and over pods) anyway.

A peer that does not answer within ``TRACKER_METRICS_TIMEOUT_MS`` (restarting, stuck) is
left out of that scrape and counted in ``tracker_metrics_workers_missing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from tracker_server.telemetry import Telemetry

PEERS_ENV = "TRACKER_WORKER_METRICS"
"""Set by the supervisor for a worker: ``<worker count>:<directory of the sockets>``."""

_MAX_PEER_BYTES = 16 * 1024 * 1024
"""Most bytes read from one peer (its metrics are a few tens of KB)."""

log = structlog.get_logger(__name__)


def peers_value(directory: Path, workers: int) -> str:
    """The value of :data:`PEERS_ENV` for ``workers`` workers sharing ``directory``."""
    return f"{workers}:{directory}"


@dataclass(frozen=True)
class Peers:
    """Where this worker and its siblings answer with their metrics."""

    directory: Path
    count: int
    index: int

    def socket(self, index: int) -> Path:
        """The socket of worker ``index``."""
        return self.directory / f"worker-{index}.sock"


def worker_peers(worker: int | None, environ: dict[str, str] | None = None) -> Peers | None:
    """The peers of worker ``worker`` from :data:`PEERS_ENV` (None: a lone server)."""
    raw = (os.environ if environ is None else environ).get(PEERS_ENV)
    if worker is None or not raw:
        return None
    count, _, directory = raw.partition(":")
    return Peers(Path(directory), int(count), worker)


class _Families:
    """A collector over fixed metric families (to render them with prometheus_client)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def render(families: Iterable[Metric]) -> bytes:
    """Prometheus text exposition (format 0.0.4) of ``families``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def parse(text: bytes) -> list[Metric]:
    """Metric families from their text exposition."""
    return list(text_string_to_metric_families(text.decode()))


def with_worker(families: Iterable[Metric], worker: int) -> list[Metric]:
    """``families`` with ``worker="<n>"`` added to every sample."""
    out = []
    for family in families:
        labelled = Metric(family.name, family.documentation, family.type, family.unit)
        for s in family.samples:
            labelled.add_sample(s.name, {**s.labels, "worker": str(worker)}, s.value,
                                s.timestamp, s.exemplar)
        out.append(labelled)
    return out


def merge(groups: Iterable[Iterable[Metric]]) -> list[Metric]:
    """One family per name, with the samples of every group, in first-seen order."""
    merged: dict[str, Metric] = {}
    for group in groups:
        for family in group:
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation,
                                                    family.type, family.unit)
            into.samples.extend(family.samples)
    return list(merged.values())


def _worker_gauges(workers: int, missing: int) -> list[Metric]:
    """How many workers the scrape covers (also for a lone server, so that dashboards
    and alerts find the same names everywhere)."""
    return [
        GaugeMetricFamily("tracker_metrics_workers",
                          "Server processes of this server (tracker-server --workers)",
                          value=workers),
        GaugeMetricFamily("tracker_metrics_workers_missing",
                          "Workers whose metrics this scrape could not read (restarting, "
                          "or not answering within TRACKER_METRICS_TIMEOUT_MS)",
                          value=missing),
    ]


class Exposition:
    """The metrics of one server process, and of its sibling workers."""

    def __init__(self, telemetry: Telemetry, probe: Callable[[], Awaitable[bool]],
                 timeout_s: float, peers: Peers | None = None) -> None:
        """``probe``: whether the database is up (run once per scrape, bounded by
        ``timeout_s``, reported as ``tracker_database_up``)."""
        if telemetry.prometheus is None:
            raise ValueError("the server's telemetry keeps no Prometheus registry")
        self._telemetry = telemetry
        self._registry = telemetry.prometheus
        self._probe = probe
        self._timeout_s = timeout_s
        self.peers = peers
        self._listener: asyncio.AbstractServer | None = None

    # -- this process ------------------------------------------------------------------

    async def local(self) -> list[Metric]:
        """This process's metrics, after a fresh database probe."""
        try:
            up = await asyncio.wait_for(self._probe(), self._timeout_s)
        except Exception:  # a timeout or any failure of the probe means "down"
            up = False
        self._telemetry.database_up = up
        return list(self._registry.collect())

    # -- the whole server --------------------------------------------------------------

    async def scrape(self) -> bytes:
        """The text of ``GET /metrics``."""
        if self.peers is None:
            return render([*await self.local(), *_worker_gauges(1, 0)])
        peers = self.peers
        others = [i for i in range(peers.count) if i != peers.index]
        own = asyncio.ensure_future(self.local())
        fetched = await asyncio.gather(*(self._fetch(i) for i in others))
        # Through the text form, as the peers' came: the collector's own families name
        # some types differently from the parser (``target`` of type info against
        # ``target_info``), and merging goes by name.
        groups = [with_worker(parse(render(await own)), peers.index)]
        missing = 0
        for index, families in zip(others, fetched, strict=True):
            if families is None:
                missing += 1
            else:
                groups.append(with_worker(families, index))
        return render([*merge(groups), *_worker_gauges(peers.count, missing)])

    async def _fetch(self, index: int) -> list[Metric] | None:
        """Worker ``index``'s metrics, None if it does not answer in time."""
        assert self.peers is not None
        path = self.peers.socket(index)
        try:
            async with asyncio.timeout(self._timeout_s):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    # read(n) returns what has arrived so far: read up to EOF.
                    parts: list[bytes] = []
                    size = 0
                    while chunk := await reader.read(1 << 16):
                        size += len(chunk)
                        if size > _MAX_PEER_BYTES:
                            raise ValueError("answer over the size limit")
                        parts.append(chunk)
                    text = b"".join(parts)
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
            if not text:
                raise ValueError("empty answer")  # it closed without its metrics
            return parse(text)
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning("metrics.worker_missing", worker=index, error=type(exc).__name__)
            return None

    # -- answering siblings ------------------------------------------------------------

    async def start(self) -> None:
        """Answer sibling workers on this worker's socket (no-op for a lone server)."""
        if self.peers is None:
            return
        path = self.peers.socket(self.peers.index)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by this worker's previous life (it was restarted)
        self._listener = await asyncio.start_unix_server(self._answer, str(path))
        os.chmod(path, 0o600)

    async def _answer(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(render(await self.local()))
            await writer.drain()
        except OSError:
            pass  # the asking worker gave up (its timeout); nothing to clean up
        except Exception:  # the asking worker counts this one missing; say why here
            log.exception("metrics.answer_failed", worker=self.peers and self.peers.index)
        finally:
            writer.close()

    async def stop(self) -> None:
        """Stop answering siblings."""
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()
            self._listener = None
