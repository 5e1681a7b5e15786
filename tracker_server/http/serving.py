"""uvicorn on the gRPC server's event loop: same process, one command.

The socket is bound here (so ``127.0.0.1:0`` gives its real port before anything is
served, and a busy port fails start-up with a clear error), then handed to
``uvicorn.Server.serve``, running as a task. uvicorn would install its own SIGINT and
SIGTERM handlers; the process already has them (``tracker-server`` stops gRPC and HTTP
together), so :class:`EmbeddedServer` leaves signals alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from tracker_server.config import Settings

_STARTUP_TIMEOUT_S = 10.0


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that does not touch signal handlers and stops when told (not at
    its next 0.1 s poll)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The host process owns SIGINT/SIGTERM."""
        yield

    async def main_loop(self) -> None:
        """Tick once a second (uvicorn refreshes its Date header on ticks divisible by
        10) until :meth:`request_exit`."""
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    def request_exit(self) -> None:
        """Begin the graceful shutdown now."""
        self.should_exit = True
        self._wake.set()


@dataclass
class HttpServer:
    """A running HTTP server."""

    server: EmbeddedServer
    task: asyncio.Task[None]
    port: int

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, let requests in flight finish within ``grace_s``."""
        self.server.config.timeout_graceful_shutdown = max(1, int(grace_s))
        self.server.request_exit()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), grace_s + 2)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def bind(listen: str, reuse_port: bool = False) -> socket.socket:
    """A listening-ready TCP socket for ``host:port`` (an empty host: every interface);
    ``reuse_port`` shares the port with the other worker processes (SO_REUSEPORT)."""
    name, _, port = listen.rpartition(":")
    host = name.strip("[]") or None
    infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind TRACKER_HTTP_LISTEN={listen}: {exc.strerror}") from exc
    sock.setblocking(False)
    return sock


def uvicorn_config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn settings: TLS from TRACKER_TLS_*, our own log lines (no access log)."""
    tls: dict[str, Any] = {}
    if settings.tls_cert and settings.tls_key:
        tls = {"ssl_certfile": settings.tls_cert, "ssl_keyfile": settings.tls_key}
        if settings.tls_client_ca:
            tls.update(ssl_ca_certs=settings.tls_client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return uvicorn.Config(
        app, lifespan="off", log_config=None, log_level="warning", access_log=False,
        http="h11", ws="none", server_header=False, proxy_headers=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s), **tls,
    )


async def start_http(app: Any, settings: Settings, reuse_port: bool = False) -> HttpServer:
    """Bind ``settings.http_listen`` and serve ``app`` until :meth:`HttpServer.stop`."""
    sock = bind(settings.http_listen, reuse_port)
    port = int(sock.getsockname()[1])
    server = EmbeddedServer(uvicorn_config(app, settings))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]),
                                                  name="tracker-http")
    deadline = asyncio.get_running_loop().time() + _STARTUP_TIMEOUT_S
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # raises what stopped it
            raise RuntimeError("the HTTP server stopped during start-up")
        if asyncio.get_running_loop().time() > deadline:
            task.cancel()
            sock.close()
            raise TimeoutError("the HTTP server did not start")
        await asyncio.sleep(0.01)
    return HttpServer(server, task, port)
