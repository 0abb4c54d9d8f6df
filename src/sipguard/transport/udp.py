"""The UDP edge: one socket per `udp:` listen address, used for receiving and sending."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from sipguard.sip.peer import Peer
from sipguard.transport.driver import CoreDriver

MAX_DATAGRAM = 65535
_new_peer = tuple.__new__


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, driver: CoreDriver) -> None:
        self.driver = driver
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None  # for the backlog probe (transport/backlog.py)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's UDPTransport
        # The default loop reads each datagram into a fresh 256 KiB buffer; SIP needs 64 KiB
        # (BENCH-NOTES: this alone halves the per-call CPU on the default loop).
        if hasattr(transport, "max_size"):
            transport.max_size = MAX_DATAGRAM

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # The loop gives (host str, port int): the tuple is built directly, not through
        # NamedTuple's Python-level __new__ (this runs for every datagram).
        self.driver.receive(data, _new_peer(Peer, ("udp", addr[0], addr[1])))

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier send: nothing names the destination reliably here;
        # the client transaction's timers (and failover_timeout) cover the loss.
        pass

    def send(self, peer: Peer, data: bytes) -> None:
        if self.transport is not None:
            try:
                self.transport.sendto(data, (peer.host, peer.port))
            except OSError:
                self.driver.transport_error(peer)


async def open_udp(
    driver: CoreDriver, host: str, port: int, buffer_bytes: int
) -> tuple[asyncio.DatagramTransport, UdpEndpoint]:
    """A UDP socket bound to host:port feeding `driver`; an OSError (the port in use, the
    address not on this machine) leaves no socket open."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # A burst of thousands of calls per second overflows the default 208 KiB buffer
        # (BENCH-NOTES): ask for more; the kernel caps it at net.core.rmem_max.
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, buffer_bytes)
        sock.bind((host, port))
        sock.setblocking(False)
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: UdpEndpoint(driver), sock=sock
        )
    except BaseException:
        sock.close()
        raise
    protocol.sock = sock
    return transport, protocol
