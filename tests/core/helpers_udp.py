"""Reading what reached a test's own UDP socket, without waiting for more."""

from __future__ import annotations

import socket


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued on `sock`."""
    sock.setblocking(False)
    received = []
    try:
        while data := sock.recv(65535):
            received.append(data)
    except BlockingIOError:
        pass
    return received
