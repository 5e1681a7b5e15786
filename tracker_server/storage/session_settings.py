"""Timeouts every pooled PostgreSQL session gets, so no stuck peer or statement can hold
a server up for ever.

- ``lock_timeout``: a statement waiting that long for a lock fails (retryable).
- ``statement_timeout``: no statement runs longer.
- ``idle_in_transaction_session_timeout``: PostgreSQL ends a session that sits inside
  an open transaction that long — a server frozen (SIGSTOP, a stalled VM) in the middle
  of its flush — and so releases its locks; the frozen server's transaction rolls back
  and its batches, never acknowledged, are resent by their clients.

They are set per session when the pool opens a connection (not in the conninfo, which
may carry options of its own); a pooler in transaction mode would lose them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, Connection

_SET_SQL = """
SELECT set_config('lock_timeout', %s, false),
       set_config('statement_timeout', %s, false),
       set_config('idle_in_transaction_session_timeout', %s, false)
"""


@dataclass(frozen=True)
class SessionTimeouts:
    """The three timeouts, in milliseconds (0 disables one)."""

    lock_ms: int
    statement_ms: int
    idle_in_transaction_ms: int

    def configure(self) -> Callable[[AsyncConnection[Any]], Awaitable[None]]:
        """A psycopg_pool ``configure`` callback applying them to a new connection."""

        async def configure(conn: AsyncConnection[Any]) -> None:
            # In its own committed transaction, so the pool gets the connection back idle.
            async with conn.transaction():
                await conn.execute(_SET_SQL, (f"{self.lock_ms}ms", f"{self.statement_ms}ms",
                                              f"{self.idle_in_transaction_ms}ms"))

        return configure

    def configure_sync(self) -> Callable[[Connection[Any]], None]:
        """The same for a blocking pool (the flush lanes')."""

        def configure(conn: Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(_SET_SQL, (f"{self.lock_ms}ms", f"{self.statement_ms}ms",
                                        f"{self.idle_in_transaction_ms}ms"))

        return configure
