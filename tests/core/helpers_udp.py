"""Reading what reached a test's own UDP socket, without waiting for more."""

from __future__ import annotations

import socket

from sipguard.sip.message import Response
from sipguard.sip.parser import parse_message


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


def responses(sock: socket.socket) -> list[Response]:
    """The responses already queued on `sock`, parsed (anything else fails the test)."""
    found = []
    for data in drain(sock):
        msg = parse_message(data)
        assert isinstance(msg, Response), data[:80]
        found.append(msg)
    return found
