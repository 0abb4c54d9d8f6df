"""The TCP edge: listening sockets, and a pool of connections keyed by remote address.

Connections to a trunk are opened on first use and reused for every later request
(RFC 3261 §18.1.1); responses go back on the connection the request came in on (§18.2.2).
"""

from __future__ import annotations

import asyncio
import socket

from sipguard.errors import ProtocolError
from sipguard.sip.parser import Limits, StreamFramer
from sipguard.sip.peer import Peer
from sipguard.sip.proxy import Problem
from sipguard.transport.driver import CoreDriver


class TcpConnection(asyncio.Protocol):
    def __init__(self, pool: TcpPool) -> None:
        self.pool = pool
        self.framer = StreamFramer(pool.limits)
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Peer("tcp", str(host), int(port))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pool.connections[self.peer] = self

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.transport is not None
        self.framer.feed(data)
        try:
            while (message := self.framer.next_message()) is not None:
                self.pool.driver.receive(message, self.peer)
        except ProtocolError as exc:
            # The stream can no longer be framed: nothing after this point can be trusted.
            self.pool.driver.on_event(Problem("malformed", f"TCP framing: {exc}", self.peer))
            self.transport.close()
            return
        if self.framer.pings:
            self.transport.write(b"\r\n" * self.framer.pings)  # RFC 5626 §4.4.1 pong
            self.framer.pings = 0

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.pool.connections.get(self.peer) is self:
            del self.pool.connections[self.peer]

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)


class TcpPool:
    def __init__(self, driver: CoreDriver, limits: Limits, connect_timeout: float) -> None:
        self.driver = driver
        self.limits = limits
        self.connect_timeout = connect_timeout
        self.connections: dict[Peer, TcpConnection] = {}
        self._pending: dict[Peer, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, peer: Peer, data: bytes) -> None:
        conn = self.connections.get(peer)
        if conn is not None:
            conn.write(data)
        elif peer in self._pending:
            self._pending[peer].append(data)
        else:
            self._pending[peer] = [data]
            task = asyncio.get_running_loop().create_task(self._connect(peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect(self, peer: Peer) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: TcpConnection(self), peer.host, peer.port
                )
        except (OSError, TimeoutError):
            self._pending.pop(peer, None)
            self.driver.transport_error(peer)
            return
        # Register under the name the core used, which may differ in form from peername.
        self.connections[peer] = conn
        for data in self._pending.pop(peer, []):
            conn.write(data)

    async def listen(self, host: str, port: int) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(lambda: TcpConnection(self), host, port,
                                        reuse_address=True)

    def close(self) -> None:
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for task in self._tasks:
            task.cancel()
