"""Server assembly: database, migrations, ingest engine, gRPC services, shutdown.

``start_server(settings)`` is the seam tests use: it binds ``settings.listen``
(``127.0.0.1:0`` picks a free port) and returns a handle with the bound port. Under the
supervisor (``tracker_server.supervisor``) each worker process calls it with a
:class:`Role` that shares the port, skips what the supervisor did once (embedded
PostgreSQL, migrations) and keeps health NOT_SERVING until every worker is up.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from tracker_proto.v1 import (
    artifacts_pb2_grpc,
    experiments_pb2_grpc,
    ingest_pb2_grpc,
    query_pb2_grpc,
)
from tracker_server.config import Settings, is_loopback, listen_addresses, validate_security
from tracker_server.domain.artifact_service import ArtifactService
from tracker_server.domain.artifacts import ArtifactLimits
from tracker_server.domain.experiment_service import ExperimentService
from tracker_server.domain.ingest import EngineConfig, IngestEngine
from tracker_server.domain.ingest_service import IngestService
from tracker_server.domain.key_limit import KeyLimit
from tracker_server.domain.points import Limits
from tracker_server.domain.ports import KeyStore
from tracker_server.domain.query_service import QueryService
from tracker_server.domain.run_service import RunService
from tracker_server.domain.series_query import SeriesQuery
from tracker_server.domain.user_summaries import UserSummaries
from tracker_server.http.app import create_app
from tracker_server.http.context import RateLimits
from tracker_server.http.prometheus import Exposition, worker_peers
from tracker_server.http.serving import HttpServer, start_http
from tracker_server.storage.artifact_store import PgArtifactStore
from tracker_server.storage.compactor import Compactor
from tracker_server.storage.embedded import start_embedded
from tracker_server.storage.experiment_store import PgExperimentStore
from tracker_server.storage.flush_locks import RunLocks
from tracker_server.storage.key_store import PgKeyStore
from tracker_server.storage.metric_reader import PgMetricReader
from tracker_server.storage.metric_store import PgMetricStore
from tracker_server.storage.migrate import migrate
from tracker_server.storage.run_keys import PgRunKeyNames
from tracker_server.storage.run_search import PgRunSearch
from tracker_server.storage.run_store import PgRunStore
from tracker_server.storage.server_state import readiness, shared_secret
from tracker_server.storage.session_settings import SessionTimeouts
from tracker_server.storage.summary_repair import SummaryRepair
from tracker_server.storage.user_summary_store import PgUserSummaryStore
from tracker_server.telemetry import Telemetry, setup_telemetry
from tracker_server.transport.artifacts_servicer import ArtifactServicer
from tracker_server.transport.auth import Authenticator, KeyCache
from tracker_server.transport.call_steps import standard_steps
from tracker_server.transport.experiments_servicer import ExperimentServicer
from tracker_server.transport.ingest_servicer import IngestServicer
from tracker_server.transport.interceptors import CallInterceptor
from tracker_server.transport.query_servicer import MetricsQueryServicer
from tracker_server.transport.ratelimit import RateLimiter

log = structlog.get_logger(__name__)

SERVICE_NAMES = (
    "tracker.v1.IngestService",
    "tracker.v1.ExperimentService",
    "tracker.v1.MetricsQueryService",
    "tracker.v1.ArtifactService",
)


@dataclass(frozen=True)
class Services:
    """The domain services every front door (gRPC, HTTP) calls."""

    experiments: ExperimentService
    runs: RunService
    query: QueryService
    ingest: IngestService
    summaries: UserSummaries
    artifacts: ArtifactService


def build_services(pool: AsyncConnectionPool, engine: IngestEngine, settings: Settings,
                   key_limit: KeyLimit | None = None) -> Services:
    """The services over the PostgreSQL stores (the only place that names them)."""
    runs, search, reader = PgRunStore(pool), PgRunSearch(pool), PgMetricReader(pool)
    summaries = PgUserSummaryStore(pool)
    return Services(
        experiments=ExperimentService(PgExperimentStore(pool), search),
        runs=RunService(runs, search),
        query=QueryService(reader, runs,
                           SeriesQuery(reader, cache_bytes=settings.series_cache_bytes),
                           goals=summaries),
        ingest=IngestService(engine, limits(settings), key_limit),
        summaries=UserSummaries(summaries),
        artifacts=ArtifactService(PgArtifactStore(pool), artifact_limits(settings)),
    )


@dataclass(frozen=True)
class Role:
    """What this process does besides serving (a lone server does everything)."""

    migrate: bool = True
    """Apply migrations at start-up (the supervisor does it once for all workers)."""
    reuse_port: bool = False
    """Bind the listen port with SO_REUSEPORT, shared with the other workers."""
    serving_at_start: bool = True
    """Report SERVING once started; workers wait until the supervisor says all are up."""
    compactor: bool = True
    """Run the background compactor (one worker does; it locks replicas out anyway)."""
    worker: int | None = None
    """Worker number under the supervisor (for logs)."""


@dataclass
class RunningServer:
    """A started server and what it owns."""

    server: grpc.aio.Server
    port: int
    engine: IngestEngine
    pool: AsyncConnectionPool
    conninfo: str
    health: Any
    compactor: Compactor
    embedded: Any = None
    telemetry: Telemetry | None = None
    auth_required: bool = False
    services: Services | None = None
    flush_pool: ConnectionPool | None = None
    http: HttpServer | None = None
    repair: SummaryRepair | None = None
    metrics: Exposition | None = None

    @property
    def address(self) -> str:
        """host:port clients connect to."""
        return f"127.0.0.1:{self.port}"

    async def set_serving(self, serving: bool) -> None:
        """Health of every service: SERVING or NOT_SERVING."""
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    @property
    def http_port(self) -> int | None:
        """The bound HTTP port (None with HTTP disabled)."""
        return self.http.port if self.http is not None else None

    async def stop(self, grace_s: float = 5.0) -> None:
        """Drain and stop within ``grace_s``: no new calls; streams stop being read,
        what they sent is committed and acknowledged, then they end with UNAVAILABLE
        (clients reconnect elsewhere at once); unary calls finish; then the pools (and
        the embedded PostgreSQL) close. Returns as soon as that is done."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        await self.health.enter_graceful_shutdown()
        await self.compactor.stop()
        if self.repair is not None:
            await self.repair.stop()
        stopping = asyncio.ensure_future(self.server.stop(grace_s))
        # HTTP writes in flight wait for their commit: the engine flushes them meanwhile.
        http_stopping = asyncio.ensure_future(
            self.http.stop(grace_s) if self.http else asyncio.sleep(0))
        await self.engine.drain(grace_s)
        await asyncio.gather(stopping, http_stopping)
        if self.metrics is not None:
            await self.metrics.stop()
        await self.engine.stop(max(0.1, deadline - loop.time()))
        if self.flush_pool is not None:
            await asyncio.to_thread(self.flush_pool.close)
        await self.pool.close()
        if self.telemetry is not None:
            await asyncio.to_thread(self.telemetry.shutdown)
        if self.embedded is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.embedded.cleanup)


def engine_config(settings: Settings) -> EngineConfig:
    """Engine tuning from settings."""
    return EngineConfig(
        flush_interval_s=settings.flush_interval_ms / 1000,
        flush_bytes=settings.flush_bytes,
        memory_budget_bytes=settings.memory_budget_bytes,
        slow_down_s=settings.slow_down_ms / 1000,
        retry_max_s=settings.flush_retry_max_ms / 1000,
        max_flush_bytes=max(settings.flush_bytes, settings.max_flush_bytes),
        lanes=settings.flush_lanes,
    )


def limits(settings: Settings) -> Limits:
    """Input limits from settings."""
    return Limits(
        max_batch_points=settings.max_batch_points,
        max_key_bytes=settings.max_key_bytes,
        max_keys_per_batch=settings.max_keys_per_batch,
    )


def artifact_limits(settings: Settings) -> ArtifactLimits:
    """Artifact record bounds from settings."""
    return ArtifactLimits(max_uri_bytes=settings.max_artifact_uri_bytes,
                          max_per_call=settings.max_artifacts_per_call)


async def auth_required(settings: Settings, keys: KeyStore) -> bool:
    """Whether calls need an API key: ``TRACKER_AUTH``, and for ``auto`` the rule
    "required unless listening on loopback only with no active key in the database"."""
    if settings.auth != "auto":
        return settings.auth == "required"
    if not all(is_loopback(a) for a in listen_addresses(settings)):
        return True
    return await keys.active_count() > 0


def server_credentials(settings: Settings) -> Any:
    """TLS credentials from TRACKER_TLS_*, None for plaintext."""
    if not settings.tls_cert or not settings.tls_key:
        return None
    cert = Path(settings.tls_cert).expanduser().read_bytes()
    key = Path(settings.tls_key).expanduser().read_bytes()
    client_ca = (Path(settings.tls_client_ca).expanduser().read_bytes()
                 if settings.tls_client_ca else None)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def start_server(settings: Settings, telemetry: Telemetry | None = None,
                       role: Role = Role()) -> RunningServer:
    """Connect (or start the embedded PostgreSQL), migrate, and start serving.

    ``telemetry`` overrides ``settings.otel`` (tests pass in-memory exporters).
    """
    validate_security(settings)
    credentials = server_credentials(settings)  # fail on unreadable files before binding
    telemetry = telemetry or setup_telemetry(settings.otel,
                                             prometheus=settings.metrics == "prometheus")
    embedded = None
    conninfo: str
    if settings.database_url:
        conninfo = settings.database_url
    else:
        conninfo, embedded = await asyncio.to_thread(start_embedded, settings.data_dir)
    if role.migrate:
        applied = await asyncio.to_thread(migrate, conninfo)
        if applied:
            log.info("migrations.applied", versions=applied)
    timeouts = SessionTimeouts(settings.db_lock_timeout_ms, settings.db_statement_timeout_ms,
                               settings.db_idle_in_transaction_timeout_ms)
    # check=: a connection is tried (one empty round trip) before it is handed out, so
    # after a database restart an idle pooled connection fails there and is replaced,
    # instead of failing the first query with UNAVAILABLE.
    pool = AsyncConnectionPool(
        conninfo, min_size=2, max_size=settings.db_pool_size, open=False, name="tracker",
        configure=timeouts.configure(), check=AsyncConnectionPool.check_connection,
        timeout=settings.db_pool_timeout_ms / 1000,
    )
    # One connection per flush lane, apart from queries: a burst of reads never makes
    # a flush wait for a connection, and lanes never wait for each other.
    # (plus one for the summary repair, which shares the flush's summary code)
    flush_pool = ConnectionPool(
        conninfo, min_size=settings.flush_lanes, max_size=settings.flush_lanes + 1,
        open=False, name="tracker-flush", configure=timeouts.configure_sync(),
        check=ConnectionPool.check_connection, timeout=settings.db_pool_timeout_ms / 1000,
    )
    await pool.open(wait=True, timeout=30)
    await asyncio.to_thread(flush_pool.open, wait=True, timeout=30)
    wait_s = settings.flush_lock_wait_ms / 1000
    run_locks = RunLocks(wait_s=wait_s, stuck_s=max(10 * wait_s, 1.0),
                         reap_after_s=settings.db_idle_in_transaction_timeout_ms / 1000)
    engine = IngestEngine(PgMetricStore(pool, flush_pool, run_locks), engine_config(settings))
    if telemetry.tracing or telemetry.metrics:
        engine.flush_observer = telemetry.on_flush
        telemetry.watch_buffered_bytes(lambda: engine.buffered_bytes)
    engine.start()
    keys = PgKeyStore(pool)
    required = await auth_required(settings, keys)
    authenticator = Authenticator(KeyCache(keys, settings.key_cache_ttl_s) if required else None)
    rate_limits = RateLimits(RateLimiter(settings.rate_unary_per_s),
                             RateLimiter(settings.rate_points_per_s))
    interceptor = CallInterceptor(standard_steps(
        authenticator, rate_limits.unary, rate_limits.points, telemetry))
    compactor = Compactor(pool, settings.compact_interval_s if role.compactor else 0,
                          settings.compact_max_series)
    compactor.start()
    repair = SummaryRepair(
        flush_pool, settings.summary_repair_interval_ms / 1000 if role.compactor else 0)
    repair.start()

    server = grpc.aio.server(
        interceptors=[interceptor],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            # Workers share the port; a lone server must fail on a port in use.
            ("grpc.so_reuseport", 1 if role.reuse_port else 0),
            # Trainers keep a stream open through long steps and the client pings every
            # 30 s, also between calls; gRPC's default (2 strikes within 5 min) would
            # answer with GOAWAY "Too many pings" and force reconnects.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 100),
            ("grpc.http2.max_ping_strikes", 0),
            # Our own pings find dead clients, so their streams (and budget) are released.
            ("grpc.keepalive_time_ms", settings.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", settings.keepalive_timeout_ms),
            # A peer that stops answering while nothing flows still gets pinged (the
            # default allows two pings without data, then none: a dead peer would hold
            # its streams until TCP gives up, which takes many minutes).
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.ping_timeout_ms", settings.keepalive_timeout_ms),
        ]
    )
    # Generated registration functions carry no annotations.
    key_limit = KeyLimit(PgRunKeyNames(pool), settings.max_keys_per_run)
    ingest_servicer = IngestServicer(
        engine, limits(settings), settings.slow_down_ms / 1000, key_limit=key_limit,
        max_streams=settings.max_streams, open_timeout_s=settings.stream_open_timeout_s)
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest_servicer, server)
    services = build_services(pool, engine, settings, key_limit)
    experiments_pb2_grpc.add_ExperimentServiceServicer_to_server(
        ExperimentServicer(services.experiments, services.runs, services.summaries), server
    )
    query_pb2_grpc.add_MetricsQueryServiceServicer_to_server(
        MetricsQueryServicer(services.query, max_message_bytes=settings.max_message_bytes),
        server
    )
    artifacts_pb2_grpc.add_ArtifactServiceServicer_to_server(
        ArtifactServicer(services.artifacts), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.reflection:  # behind the interceptor: a key, like every tracker method
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if telemetry.metrics:
        telemetry.watch_ingest(
            budget_bytes=lambda: settings.memory_budget_bytes,
            streams=lambda: ingest_servicer.active_streams,
            slow_downs=lambda: ingest_servicer.slow_downs_sent)
    port = (server.add_secure_port(settings.listen, credentials) if credentials is not None
            else server.add_insecure_port(settings.listen))
    if port == 0:
        raise OSError(f"cannot bind {settings.listen}")
    http_server = None
    metrics = None
    if settings.http_listen:
        if telemetry.prometheus is not None:
            metrics = Exposition(telemetry, lambda: database_up(pool),
                                 settings.metrics_timeout_ms / 1000,
                                 worker_peers(role.worker))
        app = create_app(services, authenticator, rate_limits, settings,
                         session_secret=await session_secret(settings, pool),
                         ready=lambda: readiness(pool), telemetry=telemetry,
                         metrics=metrics)
        try:
            http_server = await start_http(app, settings, reuse_port=role.reuse_port)
            if metrics is not None:
                await metrics.start()
        except BaseException:
            if http_server is not None:
                await http_server.stop(0)
            await repair.stop()
            await compactor.stop()
            await engine.stop(0)
            await asyncio.to_thread(flush_pool.close)
            await pool.close()
            if embedded is not None:
                await asyncio.to_thread(embedded.cleanup)
            raise
    await server.start()
    running = RunningServer(
        server, port, engine, pool, conninfo, health_servicer, compactor, embedded,
        telemetry, required, services, flush_pool=flush_pool, http=http_server,
        repair=repair, metrics=metrics,
    )
    await running.set_serving(role.serving_at_start)
    log.info("server.started", listen=settings.listen, port=port, embedded=embedded is not None,
             worker=role.worker, lanes=settings.flush_lanes,
             http_listen=settings.http_listen or None,
             http_port=http_server.port if http_server else None,
             dashboard=dashboard_url(settings, http_server.port) if http_server else None,
             auth="required" if required else "off", tls=credentials is not None,
             mtls=bool(settings.tls_client_ca), otel=settings.otel)
    return running


async def database_up(pool: AsyncConnectionPool) -> bool:
    """The readiness check as one bit (``tracker_database_up``)."""
    return (await readiness(pool)).ready


async def session_secret(settings: Settings, pool: AsyncConnectionPool) -> bytes:
    """The key signing dashboard sessions: the setting, else the database's shared one."""
    if settings.http_session_secret:
        return settings.http_session_secret.encode()
    return await shared_secret(pool, "http_session")


def dashboard_url(settings: Settings, port: int) -> str:
    """The dashboard's URL for the start-up line."""
    host = settings.http_listen.rpartition(":")[0] or "0.0.0.0"
    return f"{'https' if settings.tls_cert else 'http'}://{host}:{port}/"
