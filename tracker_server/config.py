"""Server settings: one frozen dataclass, read from the environment in one place.

Every setting has a ``TRACKER_*`` variable (``DATABASE_URL`` for the database) and
may be overridden by a command-line flag of ``tracker-server``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Configuration of one tracker server process."""

    listen: str = "127.0.0.1:50051"
    """gRPC listen address, host:port. Port 0 picks a free port (tests)."""

    database_url: str | None = None
    """PostgreSQL conninfo. None starts the embedded PostgreSQL in ``data_dir``."""

    data_dir: Path = Path.home() / ".local" / "share" / "tracker"
    """Directory of the embedded PostgreSQL cluster (``<data_dir>/pg``)."""

    flush_interval_ms: int = 0
    """How long the first waiting point of a flush lane may linger for more before its
    flush starts. 0 (group commit): a lane flushes as soon as its previous flush is done
    whenever data waits, so acks follow the commit time at low load and flushes grow by
    themselves under load; the compactor merges the small chunks of quiet periods."""

    flush_bytes: int = 8 * MiB
    """With ``flush_interval_ms`` > 0: a flush starts without lingering once this many
    bytes of points wait in its lane."""

    flush_lanes: int = 1
    """Flush lanes per server process: transactions that COPY and commit at the same
    time, each on its own connection, each owning the writers that hash to it (so
    writer-offset locks never conflict and each writer's acks keep their order). With
    one worker per core the workers already commit side by side; more lanes per worker
    mean more, smaller transactions at moderate load (``docs/performance.md``)."""

    workers: int = 0
    """Server processes sharing the listen port (SO_REUSEPORT) under one supervisor;
    0 means one per CPU core available to the process. 1 runs a single process."""

    max_flush_bytes: int = 16 * MiB
    """Most buffered bytes one flush transaction takes; bounds the flush's transient
    memory (numpy copies and the COPY payload are a few times the points' size)."""

    memory_budget_bytes: int = 256 * MiB
    """Global budget for buffered, uncommitted points (all workers together: each gets
    its share). Over it the server stops reading streams (HTTP/2 flow control pushes
    back on clients) and sends SlowDown."""

    max_message_bytes: int = 16 * MiB
    """Largest gRPC message accepted; a bigger batch is refused with RESOURCE_EXHAUSTED
    by gRPC itself. Clients split batches well below it."""

    max_batch_points: int = 1_000_000
    """Most points in one batch (INVALID_ARGUMENT beyond)."""

    max_key_bytes: int = 250
    """Longest metric name, in UTF-8 bytes."""

    max_keys_per_batch: int = 10_000
    """Largest key table in one batch."""

    max_artifact_uri_bytes: int = 2048
    """Longest artifact URI, in UTF-8 bytes (INVALID_ARGUMENT beyond)."""

    max_artifacts_per_call: int = 100
    """Most artifacts in one LogArtifacts call (INVALID_ARGUMENT beyond)."""

    slow_down_ms: int = 200
    """retry_after sent with SlowDown while the budget is exhausted."""

    db_pool_size: int = 8
    """Connections in the PostgreSQL pool of queries, key lookups and stream opens, per
    process; the flush lanes have their own (one connection each)."""

    db_pool_timeout_ms: int = 3_000
    """Longest a call waits for a pooled connection (all busy, or the database not
    reachable: a pooled connection is checked before use) before it fails with a
    retryable UNAVAILABLE."""

    db_lock_timeout_ms: int = 5_000
    """``lock_timeout`` of the pool's sessions: the longest a statement waits for a row
    lock (e.g. held by a frozen peer) before it fails with a retryable error."""

    db_statement_timeout_ms: int = 60_000
    """``statement_timeout`` of the pool's sessions: no statement runs longer."""

    db_idle_in_transaction_timeout_ms: int = 10_000
    """``idle_in_transaction_session_timeout`` of the pool's sessions: PostgreSQL ends a
    session that sits inside a transaction this long (a server frozen mid-flush), so
    the locks it holds are released and other servers go on."""

    flush_lock_wait_ms: int = 1_000
    """How long a flush waits for a run another flush holds (server replicas writing one
    run take turns); past it the run's writers wait for a later flush, and for ten times
    this long the run is only tried, not waited for, so a stuck peer delays the writers
    of its own runs only."""

    flush_retry_max_ms: int = 5_000
    """Longest back-off between retries of a failed flush (database unavailable)."""

    series_cache_bytes: int = 256 * 1024 * 1024
    """Memory of the series read cache, per server process (fully resolved series kept for
    repeated reads; least recently used evicted; 0 disables it). With ``--workers N`` the
    server holds up to N times this once reads have filled it."""

    compact_interval_s: float = 60.0
    """Seconds between compaction rounds merging small chunks (0 disables)."""

    summary_repair_interval_ms: int = 1_000
    """Period of the background pass that recomputes summaries marked stale by flushes
    that rewrote steps (0 disables it)."""

    compact_max_series: int = 2000
    """Most series (run, key, rank, attempt) one compaction round merges."""

    keepalive_time_ms: int = 60_000
    """Interval of the server's HTTP/2 pings on a connection; a peer that does not
    answer within ``keepalive_timeout_ms`` is dropped and its streams released."""

    keepalive_timeout_ms: int = 20_000
    """How long a ping may go unanswered."""

    max_streams: int = 2_000
    """Most ingest streams open at once in this process; beyond it a new stream ends with
    RESOURCE_EXHAUSTED and a retry delay (clients back off and reconnect)."""

    stream_open_timeout_s: float = 30.0
    """A stream must send its Open within this long, else it ends with
    DEADLINE_EXCEEDED (a connection that opens streams and never writes holds no slot)."""

    max_keys_per_run: int = 20_000
    """Most distinct metric keys in one run; a batch that would go beyond is rejected
    with RESOURCE_EXHAUSTED (checked per server against what the database held when it
    first saw the run plus what it accepted since, so replicas together may overshoot by
    what they accept concurrently)."""

    shutdown_grace_s: float = 10.0
    """On SIGTERM, time given to open streams and the last flush before exit."""

    log_level: str = "info"
    """structlog level: ``debug``, ``info``, ``warning`` or ``error``."""

    auth: str = "auto"
    """API key authentication: ``required``, ``off`` or ``auto`` (required unless the
    server listens only on loopback and the database holds no active key; decided at
    start-up)."""

    allow_open_network: bool = False
    """Allow ``auth=off`` on a non-loopback listen address (otherwise start-up fails)."""

    key_cache_ttl_s: float = 10.0
    """How long a looked-up API key is trusted; revocation takes effect within it."""

    tls_cert: str | None = None
    """PEM certificate chain of the server; with ``tls_key`` the port serves TLS only."""

    tls_key: str | None = None
    """PEM private key of ``tls_cert``."""

    tls_client_ca: str | None = None
    """PEM CA bundle: when set, clients must present a certificate it signed (mTLS)."""

    rate_unary_per_s: float = 0.0
    """Unary requests per second per API key (per peer address without auth); 0 = no limit.
    Bursts of one second's worth are allowed."""

    rate_points_per_s: float = 0.0
    """Ingested points per second per API key (per peer without auth); 0 = no limit."""

    otel: str = "off"
    """OpenTelemetry traces and metrics: ``off``, ``console`` (stdout) or ``otlp`` (needs
    the ``[otel]`` extra; endpoint from the standard ``OTEL_EXPORTER_OTLP_*`` variables)."""

    metrics: str = "prometheus"
    """``GET /metrics`` on the HTTP port: ``prometheus`` (the server's OpenTelemetry
    metrics in Prometheus' text format, for every worker process) or ``off``."""

    metrics_require_key: bool = False
    """``GET /metrics`` needs an API key (any role; ``Authorization: Bearer``) whenever
    the server requires keys. Off by default: the metrics carry counts, method names and
    route templates, no experiment, run or key names."""

    metrics_timeout_ms: int = 2_000
    """Bound on what one scrape waits for: the database probe (``tracker_database_up``)
    and each other worker's metrics (a worker that does not answer in time is left out
    of that scrape and counted in ``tracker_metrics_workers_missing``)."""

    reflection: bool = True
    """gRPC server reflection (``grpc.reflection.v1alpha``, which grpcurl falls back to),
    so grpcurl-style tools can list and describe the API; it needs a key (any role) like
    any other method."""

    http_listen: str = "127.0.0.1:8080"
    """HTTP listen address of the dashboard and the REST API (``/api/v1``), host:port, in
    the same process as gRPC; empty disables HTTP. Port 0 picks a free port (tests)."""

    http_max_body_bytes: int = 0
    """Largest HTTP request body (413 beyond, before it is parsed); 0 means the same as
    ``max_message_bytes``."""

    http_cors_origins: str = ""
    """Comma-separated origins (``https://host:port``) whose pages may call the API with
    credentials; empty allows the same origin only. ``*`` is refused."""

    http_session_secret: str | None = None
    """Secret signing dashboard session cookies and CSRF tokens (at least 32 characters).
    Unset: a random secret created once and kept in the database, so every server
    process on that database accepts the others' sessions."""

    http_session_ttl_s: float = 43_200.0
    """Lifetime of a dashboard session (login); the key is still re-checked on every
    request, so a revoked key ends its sessions within ``key_cache_ttl_s``."""


_ENV = {
    "listen": "TRACKER_LISTEN",
    "database_url": "DATABASE_URL",
    "data_dir": "TRACKER_DATA_DIR",
    "flush_interval_ms": "TRACKER_FLUSH_INTERVAL_MS",
    "flush_bytes": "TRACKER_FLUSH_BYTES",
    "flush_lanes": "TRACKER_FLUSH_LANES",
    "workers": "TRACKER_WORKERS",
    "max_flush_bytes": "TRACKER_MAX_FLUSH_BYTES",
    "memory_budget_bytes": "TRACKER_MEMORY_BUDGET_BYTES",
    "max_message_bytes": "TRACKER_MAX_MESSAGE_BYTES",
    "max_batch_points": "TRACKER_MAX_BATCH_POINTS",
    "max_key_bytes": "TRACKER_MAX_KEY_BYTES",
    "max_keys_per_batch": "TRACKER_MAX_KEYS_PER_BATCH",
    "max_artifact_uri_bytes": "TRACKER_MAX_ARTIFACT_URI_BYTES",
    "max_artifacts_per_call": "TRACKER_MAX_ARTIFACTS_PER_CALL",
    "slow_down_ms": "TRACKER_SLOW_DOWN_MS",
    "db_pool_size": "TRACKER_DB_POOL_SIZE",
    "db_pool_timeout_ms": "TRACKER_DB_POOL_TIMEOUT_MS",
    "db_lock_timeout_ms": "TRACKER_DB_LOCK_TIMEOUT_MS",
    "db_statement_timeout_ms": "TRACKER_DB_STATEMENT_TIMEOUT_MS",
    "db_idle_in_transaction_timeout_ms": "TRACKER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
    "flush_lock_wait_ms": "TRACKER_FLUSH_LOCK_WAIT_MS",
    "keepalive_time_ms": "TRACKER_KEEPALIVE_TIME_MS",
    "keepalive_timeout_ms": "TRACKER_KEEPALIVE_TIMEOUT_MS",
    "max_streams": "TRACKER_MAX_STREAMS",
    "stream_open_timeout_s": "TRACKER_STREAM_OPEN_TIMEOUT_S",
    "max_keys_per_run": "TRACKER_MAX_KEYS_PER_RUN",
    "flush_retry_max_ms": "TRACKER_FLUSH_RETRY_MAX_MS",
    "series_cache_bytes": "TRACKER_SERIES_CACHE_BYTES",
    "compact_interval_s": "TRACKER_COMPACT_INTERVAL_S",
    "compact_max_series": "TRACKER_COMPACT_MAX_SERIES",
    "summary_repair_interval_ms": "TRACKER_SUMMARY_REPAIR_INTERVAL_MS",
    "shutdown_grace_s": "TRACKER_SHUTDOWN_GRACE_S",
    "log_level": "TRACKER_LOG_LEVEL",
    "auth": "TRACKER_AUTH",
    "allow_open_network": "TRACKER_ALLOW_OPEN_NETWORK",
    "key_cache_ttl_s": "TRACKER_KEY_CACHE_TTL_S",
    "tls_cert": "TRACKER_TLS_CERT",
    "tls_key": "TRACKER_TLS_KEY",
    "tls_client_ca": "TRACKER_TLS_CLIENT_CA",
    "rate_unary_per_s": "TRACKER_RATE_UNARY_PER_S",
    "rate_points_per_s": "TRACKER_RATE_POINTS_PER_S",
    "otel": "TRACKER_OTEL",
    "metrics": "TRACKER_METRICS",
    "metrics_require_key": "TRACKER_METRICS_REQUIRE_KEY",
    "metrics_timeout_ms": "TRACKER_METRICS_TIMEOUT_MS",
    "reflection": "TRACKER_REFLECTION",
    "http_listen": "TRACKER_HTTP_LISTEN",
    "http_max_body_bytes": "TRACKER_HTTP_MAX_BODY_BYTES",
    "http_cors_origins": "TRACKER_HTTP_CORS_ORIGINS",
    "http_session_secret": "TRACKER_HTTP_SESSION_SECRET",
    "http_session_ttl_s": "TRACKER_HTTP_SESSION_TTL_S",
}
# Settings where an empty value means something (HTTP off), not "use the default".
_EMPTY_MEANS_EMPTY = frozenset({"http_listen"})
_ORIGIN_RE = re.compile(r"^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")

AUTH_MODES = ("auto", "required", "off")
OTEL_MODES = ("off", "console", "otlp")
METRICS_MODES = ("prometheus", "off")
LOG_LEVELS = ("debug", "info", "warning", "error")

CHOICES: dict[str, tuple[str, ...]] = {
    "auth": AUTH_MODES,
    "otel": OTEL_MODES,
    "metrics": METRICS_MODES,
    "log_level": LOG_LEVELS,
}
"""The settings that take one of a few words, and those words."""

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def env_var(field_name: str) -> str:
    """Name of the environment variable of a setting."""
    return _ENV[field_name]


def parse_bool(raw: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is an error, so
    a typo never turns a safety switch silently off."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"expected a boolean: one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")


def _convert(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        return parse_bool(raw)
    if name in CHOICES:
        return raw.strip().lower()
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, Path) or name == "data_dir":
        return Path(raw).expanduser()
    return raw


def load_settings(
    env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Settings from ``env`` (default: os.environ), then explicit overrides (flags)."""
    env = os.environ if env is None else env
    base = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(_ENV[f.name])
        if raw == "" and f.name in _EMPTY_MEANS_EMPTY:
            values[f.name] = ""
        elif raw is not None and raw != "":
            try:
                values[f.name] = _convert(f.name, raw, getattr(base, f.name))
            except ValueError as exc:
                raise ValueError(f"{_ENV[f.name]}={raw!r}: {exc}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = replace(base, **values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Reject settings that cannot work, with the variable name in the message."""
    positive = (
        "flush_bytes", "flush_lanes", "max_flush_bytes", "memory_budget_bytes",
        "max_message_bytes", "max_batch_points", "max_key_bytes", "max_keys_per_batch",
        "db_pool_size", "db_pool_timeout_ms", "db_lock_timeout_ms", "db_statement_timeout_ms",
        "db_idle_in_transaction_timeout_ms", "keepalive_time_ms", "keepalive_timeout_ms",
        "max_streams", "stream_open_timeout_s", "max_keys_per_run", "metrics_timeout_ms",
        "max_artifact_uri_bytes", "max_artifacts_per_call",
    )
    for name in positive:
        if getattr(settings, name) <= 0:
            raise ValueError(f"{_ENV[name]} must be > 0, got {getattr(settings, name)}")
    for name in ("flush_interval_ms", "workers"):
        if getattr(settings, name) < 0:
            raise ValueError(f"{_ENV[name]} must be >= 0, got {getattr(settings, name)}")
    if settings.series_cache_bytes < 0:
        raise ValueError("TRACKER_SERIES_CACHE_BYTES must be >= 0, got "
                         f"{settings.series_cache_bytes}")
    if settings.summary_repair_interval_ms < 0:
        raise ValueError("TRACKER_SUMMARY_REPAIR_INTERVAL_MS must be >= 0, got "
                         f"{settings.summary_repair_interval_ms}")
    if settings.flush_lock_wait_ms < 0:
        raise ValueError(
            f"TRACKER_FLUSH_LOCK_WAIT_MS must be >= 0, got {settings.flush_lock_wait_ms}")
    if settings.flush_bytes > settings.memory_budget_bytes:
        raise ValueError(
            "TRACKER_FLUSH_BYTES must not exceed TRACKER_MEMORY_BUDGET_BYTES"
        )
    validate_security(settings)


def worker_count(settings: Settings, cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")
                 ) -> int:
    """Server processes to run: ``workers``, or one per CPU core this process may use
    (its CPU affinity, and in a container its cgroup CPU limit, rounded up)."""
    if settings.workers:
        return settings.workers
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit to honour
    return max(1, cores)


def http_body_limit(settings: Settings) -> int:
    """Largest HTTP request body in bytes."""
    return settings.http_max_body_bytes or settings.max_message_bytes


def cors_origins(settings: Settings) -> tuple[str, ...]:
    """The origins of ``http_cors_origins``, without trailing slashes."""
    return tuple(o.strip().rstrip("/") for o in settings.http_cors_origins.split(",")
                 if o.strip())


def listen_addresses(settings: Settings) -> tuple[str, ...]:
    """Every address the server binds (gRPC, and HTTP when enabled)."""
    return (settings.listen, settings.http_listen) if settings.http_listen else (
        settings.listen,)


def is_loopback(listen: str) -> bool:
    """True when ``host:port`` binds only loopback (127.0.0.0/8, ::1, localhost)."""
    host = listen.rsplit(":", 1)[0].strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or an empty host (all interfaces)


def validate_security(settings: Settings) -> None:
    """Settings that take one of a few words, and auth, TLS, rate-limit and telemetry
    settings that cannot work or are unsafe (also checked by ``start_server``)."""
    for name, allowed in CHOICES.items():
        value = getattr(settings, name)
        if value not in allowed:
            raise ValueError(
                f"{_ENV[name]} must be one of {', '.join(allowed)}; got {value!r}")
    public = [a for a in listen_addresses(settings) if not is_loopback(a)]
    if settings.auth == "off" and public and not settings.allow_open_network:
        raise ValueError(
            f"TRACKER_AUTH=off on a non-loopback address ({public[0]}) lets anyone "
            "on the network write and read; set TRACKER_ALLOW_OPEN_NETWORK=1 to force it"
        )
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ValueError("TRACKER_TLS_CERT and TRACKER_TLS_KEY must be set together")
    if settings.tls_client_ca and not settings.tls_cert:
        raise ValueError("TRACKER_TLS_CLIENT_CA needs TRACKER_TLS_CERT and TRACKER_TLS_KEY")
    for name in ("rate_unary_per_s", "rate_points_per_s"):
        if getattr(settings, name) < 0:
            raise ValueError(f"{_ENV[name]} must be >= 0, got {getattr(settings, name)}")
    if settings.key_cache_ttl_s <= 0:
        raise ValueError(f"TRACKER_KEY_CACHE_TTL_S must be > 0, got {settings.key_cache_ttl_s}")
    validate_http(settings)


def validate_http(settings: Settings) -> None:
    """HTTP settings that cannot work or are unsafe."""
    if settings.http_listen and ":" not in settings.http_listen:
        raise ValueError(f"TRACKER_HTTP_LISTEN must be host:port, got {settings.http_listen!r}")
    if settings.http_max_body_bytes < 0:
        raise ValueError("TRACKER_HTTP_MAX_BODY_BYTES must be >= 0 (0: TRACKER_MAX_MESSAGE_BYTES)")
    if settings.http_session_ttl_s <= 0:
        raise ValueError("TRACKER_HTTP_SESSION_TTL_S must be > 0")
    secret = settings.http_session_secret
    if secret is not None and len(secret) < 32:
        raise ValueError("TRACKER_HTTP_SESSION_SECRET must be at least 32 characters")
    for origin in cors_origins(settings):
        if not _ORIGIN_RE.match(origin):
            raise ValueError(
                f"TRACKER_HTTP_CORS_ORIGINS: {origin!r} is not an origin like "
                "https://host:port (a wildcard is never allowed with credentials)")
