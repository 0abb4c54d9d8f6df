"""Where a message came from or goes to."""

from __future__ import annotations

from typing import Literal, NamedTuple

Transport = Literal["udp", "tcp"]


class Peer(NamedTuple):
    """A transport and a socket address. For TCP, the transport edge maps it to a connection."""

    transport: Transport
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"
