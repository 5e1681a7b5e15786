"""What the client reads from the environment: server, key, rank, run key, spool, mode.

A variable that takes one of a few words (``TRACKER_MODE``, ``TRACKER_TLS``) refuses
anything else with a ValueError naming the variable and the words it takes, so a typo
never silently changes what the client does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from tracker_client._meta import Mode

DEFAULT_SERVER = "127.0.0.1:50051"
MODES: tuple[Mode, ...] = get_args(Mode)
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def flag(var: str) -> bool:
    """A boolean variable: ``1/true/yes/on`` or ``0/false/no/off`` (any case); unset or
    empty is false."""
    raw = os.environ.get(var, "")
    word = raw.strip().lower()
    if not word or word in FALSE_WORDS:
        return False
    if word in TRUE_WORDS:
        return True
    raise ValueError(f"{var}={raw!r}: expected one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")


def server_address(explicit: str | None) -> str:
    """TRACKER_SERVER, else the local default."""
    return explicit or os.environ.get("TRACKER_SERVER") or DEFAULT_SERVER


def api_key(explicit: str | None) -> str | None:
    """TRACKER_API_KEY when not given."""
    return explicit or os.environ.get("TRACKER_API_KEY") or None


TlsOption = bool | str | None
"""``init(tls=...)``: None = from the environment, False = plaintext, True = TLS with the
system's root certificates, a string = path of a PEM CA bundle to trust."""


@dataclass(frozen=True)
class TlsConfig:
    """Client TLS material (PEM bytes); None fields use gRPC's defaults."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None


def tls_config(explicit: TlsOption = None) -> TlsConfig | None:
    """TLS settings of the channel, None for plaintext.

    ``explicit`` wins; otherwise ``TRACKER_TLS_CA`` (a PEM CA bundle) or ``TRACKER_TLS=1``
    (system roots) turn TLS on. ``TRACKER_TLS_CLIENT_CERT`` / ``TRACKER_TLS_CLIENT_KEY``
    add a client certificate for servers that require mutual TLS.
    """
    if explicit is False:
        return None
    ca_path = explicit if isinstance(explicit, str) else os.environ.get("TRACKER_TLS_CA")
    wanted = bool(explicit) or bool(ca_path) or flag("TRACKER_TLS")
    if not wanted:
        return None
    cert = os.environ.get("TRACKER_TLS_CLIENT_CERT")
    key = os.environ.get("TRACKER_TLS_CLIENT_KEY")
    return TlsConfig(
        root_certificates=_read(ca_path),
        certificate_chain=_read(cert),
        private_key=_read(key),
    )


def _read(path: str | None) -> bytes | None:
    return Path(path).expanduser().read_bytes() if path else None


def experiment_name(explicit: str | None) -> str:
    """TRACKER_EXPERIMENT, else "default"."""
    return explicit or os.environ.get("TRACKER_EXPERIMENT") or "default"


def rank() -> int:
    """Distributed rank from RANK, SLURM_PROCID or LOCAL_RANK (0 when single-process)."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 0


def local_rank() -> int:
    """Rank within the node from LOCAL_RANK or SLURM_LOCALID (0 when neither is set).

    Node-wide samplers (system and GPU metrics) run on local rank 0 only, so a node
    with 8 GPUs reports its GPUs once, not 8 times."""
    for var in ("LOCAL_RANK", "SLURM_LOCALID"):
        value = os.environ.get(var, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def run_key(explicit: str | None) -> str | None:
    """``explicit``, else TRACKER_RUN_KEY (a launcher's choice), else the job's key."""
    return explicit or os.environ.get("TRACKER_RUN_KEY", "").strip() or default_run_key()


def run_name(explicit: str | None) -> str:
    """``explicit``, else TRACKER_RUN_NAME, else "" (the server picks)."""
    return explicit or os.environ.get("TRACKER_RUN_NAME", "").strip()


def resume(explicit: bool | None) -> bool:
    """``explicit`` when given, else TRACKER_RESUME (a boolean word)."""
    return flag("TRACKER_RESUME") if explicit is None else explicit


def tags(explicit: Mapping[str, Any] | None) -> dict[str, str]:
    """TRACKER_TAGS (``k=v,k2=v2``) with the ``explicit`` tags over it, key by key.

    A launcher tags every job (``cluster=a100,queue=long``) and the script adds its own;
    a key both set keeps the script's value. An item without ``=`` or with an empty key
    is refused (ValueError naming the variable), since a typo would otherwise lose a tag.
    """
    raw = os.environ.get("TRACKER_TAGS", "")
    out: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"TRACKER_TAGS={raw!r}: expected key=value pairs separated "
                             f"by commas, got {item!r}")
        out[key.strip()] = value.strip()
    out.update({str(k): str(v) for k, v in (explicit or {}).items()})
    return out


def system_metrics(interval_s: float | None) -> float | None:
    """The system-metrics period: ``interval_s`` unless TRACKER_SYSTEM_METRICS is false."""
    raw = os.environ.get("TRACKER_SYSTEM_METRICS", "")
    if raw.strip() and not flag("TRACKER_SYSTEM_METRICS"):
        return None
    return interval_s


def sender(configured: str) -> str:
    """Where log() is batched and sent: TRACKER_SENDER (``thread``, ``process`` or
    ``auto``) when set, else ``configured`` (``Options.sender``)."""
    raw = os.environ.get("TRACKER_SENDER", "").strip().lower()
    if not raw:
        return configured
    if raw not in ("thread", "process", "auto"):
        raise ValueError(f"TRACKER_SENDER must be thread, process or auto, got {raw!r}")
    return raw


def default_run_key() -> str | None:
    """A key every rank of one job derives alike, so all ranks attach to one run."""
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return f"torchelastic-{os.environ['TORCHELASTIC_RUN_ID']}"
    if os.environ.get("SLURM_JOB_ID"):
        step = os.environ.get("SLURM_STEP_ID", "")
        return f"slurm-{os.environ['SLURM_JOB_ID']}" + (f".{step}" if step else "")
    return None


def job_resume_token() -> str | None:
    """A token every rank of one (re)start of a job derives alike (see
    CreateRunRequest.resume_token): the attempt goes up once per restart, not per rank."""
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        restarts = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        return f"torchelastic-{os.environ['TORCHELASTIC_RUN_ID']}-{restarts}"
    if os.environ.get("SLURM_JOB_ID"):
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        return f"slurm-{os.environ['SLURM_JOB_ID']}-{restarts}"
    return None


def world_size() -> int | None:
    """Number of ranks from WORLD_SIZE or SLURM_NTASKS, None when unknown."""
    for var in ("WORLD_SIZE", "SLURM_NTASKS"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return None


def mode() -> Mode:
    """TRACKER_MODE (``online`` or ``offline``, any case), default online."""
    raw = os.environ.get("TRACKER_MODE", "")
    word = raw.strip().lower() or "online"
    for m in MODES:
        if word == m:
            return m
    raise ValueError(f"TRACKER_MODE={raw!r}: expected one of {', '.join(MODES)}")


def exit_timeout_s(default: float) -> float:
    """TRACKER_EXIT_TIMEOUT_S (seconds, >= 0), else ``default``."""
    raw = os.environ.get("TRACKER_EXIT_TIMEOUT_S", "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"TRACKER_EXIT_TIMEOUT_S={raw!r}: expected seconds >= 0")
    return value


def spool_dir() -> Path:
    """Root of the on-disk spools: TRACKER_SPOOL_DIR, else ~/.cache/tracker/spool."""
    explicit = os.environ.get("TRACKER_SPOOL_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "tracker" / "spool"
