"""TCP proxies in front of the NATS nodes' cluster ports: cutting one node's routes.

Every node advertises its proxy and routes to the others' proxies
(`ClusterStack.route_via`), so every route connection crosses one proxy: the one in
front of the node that accepted it. A route's first line from the node that opened it
is ``CONNECT {..., "name": <its server id>}``, so each connection is known by both ends.
`isolate` closes every connection with the node at either end and refuses new ones until
`heal`: the node is cut from the cluster (connection refused, as when a node's routes are
firewalled with a reject rule) while its clients stay connected to it.

The proxies run on an event loop of their own in a thread, independent of the tests'.
"""

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class _Link:
    """One proxied connection (hashed by identity)."""

    target: int
    origin: str | None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class RouteProxies:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._servers: list[asyncio.Server] = []
        self._links: set[_Link] = set()
        self._blocked_port: int | None = None
        self._blocked_id: str | None = None
        self.refused = 0
        """Route connections refused or cut while a node was isolated."""

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def add(self, target: int) -> int:
        """A proxy in front of cluster port ``target``; returns its port."""

        async def listen() -> int:
            server = await asyncio.start_server(
                lambda r, w: self._handle(r, w, target), "127.0.0.1", 0
            )
            self._servers.append(server)
            port: int = server.sockets[0].getsockname()[1]
            return port

        return self._run(listen())

    def isolate(self, cluster_port: int, server_id: str) -> None:
        """Cut the node listening on ``cluster_port`` (server id ``server_id``) off."""

        async def cut() -> None:
            self._blocked_port, self._blocked_id = cluster_port, server_id
            for link in list(self._links):
                if self._is_blocked(link):
                    self._close(link)

        self._run(cut())

    def heal(self) -> None:
        async def lift() -> None:
            self._blocked_port = self._blocked_id = None

        self._run(lift())

    def close(self) -> None:
        async def shutdown() -> None:
            for server in self._servers:
                server.close()
            for link in list(self._links):
                self._close(link)

        with contextlib.suppress(Exception):
            self._run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)

    def _is_blocked(self, link: _Link) -> bool:
        return link.target == self._blocked_port or (
            link.origin is not None and link.origin == self._blocked_id
        )

    def _close(self, link: _Link) -> None:
        self.refused += 1
        self._links.discard(link)
        for writer in link.writers:
            writer.close()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: int
    ) -> None:
        link = _Link(target, None, [writer])
        if self._is_blocked(link):
            self.refused += 1
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        link.writers.append(up_writer)
        self._links.add(link)
        down = asyncio.create_task(self._pump(up_reader, writer))
        try:
            first = await reader.readline()
            link.origin = _route_origin(first)
            if self._is_blocked(link):
                self._close(link)
                return
            up_writer.write(first)
            await self._pump(reader, up_writer)
        finally:
            down.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await down
            if link in self._links:
                self._close(link)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        writer.close()


def _route_origin(line: bytes) -> str | None:
    """The server id in a route's ``CONNECT {...}`` line."""
    if not line.startswith(b"CONNECT "):
        return None
    with contextlib.suppress(ValueError):
        info = json.loads(line[len(b"CONNECT ") :])
        name = info.get("name") if isinstance(info, dict) else None
        return name if isinstance(name, str) else None
    return None
