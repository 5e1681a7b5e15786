"""A TCP fault proxy: pass, blackhole (drop every byte, close nothing), reset (RST),
and fail over between targets like a small L4 balancer."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    opened: float = field(default_factory=time.monotonic)
    upstream_closed: float | None = None
    """When the server closed its side (EOF or reset), monotonic."""
    target: int = 0
    """The port it was connected to."""


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target_port``: ``passing`` forwards,
    ``blackhole()`` drops every byte in both directions while keeping connections open
    (and holds new ones unconnected), ``reset()`` closes every connection with RST.

    With ``fallbacks`` it is also a small L4 balancer: a new connection goes to the
    preferred target, or to the next one that accepts; ``prefer()`` moves the
    preference (what a balancer does when a health check fails) and resets the
    connections to the others, so their clients reconnect to the preferred one."""

    def __init__(self, target_port: int, fallbacks: tuple[int, ...] = ()) -> None:
        self.targets = [target_port, *fallbacks]
        self.preferred = 0
        self.passing = True
        self.links: list[_Link] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", 0), self.loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.address = f"127.0.0.1:{self.port}"

    async def _pump(self, link: _Link, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    from_upstream: bool) -> None:
        try:
            while data := await src.read(65536):
                if self.passing:
                    dst.write(data)
                    await dst.drain()
        except (ConnectionError, OSError):
            pass
        if from_upstream and link.upstream_closed is None:
            link.upstream_closed = time.monotonic()
        if self.passing:
            with contextlib.suppress(Exception):
                dst.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        self.links.append(link)
        while not self.passing:  # a partitioned network: the connection goes nowhere
            await asyncio.sleep(0.05)
            if writer.is_closing():
                return
        order = self.targets[self.preferred:] + self.targets[:self.preferred]
        for port in order:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            writer.close()
            return
        link.upstream = up_writer
        link.target = port
        await asyncio.gather(self._pump(link, reader, up_writer, False),
                             self._pump(link, up_reader, writer, True))

    def blackhole(self) -> None:
        """Stop forwarding (no FIN, no RST)."""
        self.passing = False

    def restore(self) -> None:
        """Forward again (connections blackholed meanwhile have lost bytes: reset them)."""
        self.passing = True

    def prefer(self, port: int) -> int:
        """Send new connections to ``port`` first; reset those to other targets."""
        self.preferred = self.targets.index(port)
        return self.reset(lambda link: link.target != port)

    def target_of_links(self) -> set[int]:
        """Targets of the open connections."""
        return {link.target for link in self.links if link.upstream is not None
                and link.upstream_closed is None}

    def reset(self, which: Callable[[_Link], bool] | None = None) -> int:
        """Close every connection (or those ``which`` picks) with RST; returns how many
        were open."""
        async def reset_all() -> int:
            n = 0
            chosen = [link for link in self.links if which is None or which(link)]
            self.links = [link for link in self.links if link not in chosen]
            for link in chosen:
                for w in (link.client, link.upstream):
                    if w is None or w.is_closing():
                        continue
                    sock = w.get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    w.close()
                    n += 1
            return n
        return asyncio.run_coroutine_threadsafe(reset_all(), self.loop).result(10)

    def close(self) -> None:
        """Stop the proxy."""
        self.reset()
        self._server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


