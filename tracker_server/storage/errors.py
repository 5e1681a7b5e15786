"""Driver errors wrapped into domain errors at the storage edge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg_pool

from tracker_server.domain.errors import Code, TrackerError
from tracker_server.domain.paging import PositionError


@contextmanager
def db_errors() -> Iterator[None]:
    """Turn connection-level failures into retryable UNAVAILABLE errors."""
    try:
        yield
    except TrackerError:
        raise
    except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
        # Subclasses of OperationalError: a conflict to retry, not an outage.
        raise TrackerError(Code.ABORTED, f"transaction conflict, retry: {exc}") from exc
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        raise TrackerError(
            Code.UNAVAILABLE, f"database unavailable: {exc}".strip(), retry_after_s=1.0
        ) from exc


@contextmanager
def position_errors() -> Iterator[None]:
    """A page position whose values do not fit the sort key types fails inside
    PostgreSQL (a cast): report it as ``PositionError`` (INVALID_ARGUMENT)."""
    try:
        yield
    except psycopg.errors.DataError as exc:
        raise PositionError() from exc
