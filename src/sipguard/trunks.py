"""The configured trunks as the proxy core routes to them: in the order they are tried, their
names resolved.

Names are resolved once, by `serve` at start (so that the hot path never waits on DNS) and
by `config check` (which runs where `serve` will: a name that does not resolve there is
found before a restart refuses it). Both call `resolve_trunks`, one rule in one place.
"""

from __future__ import annotations

import socket

from sipguard.config import Config
from sipguard.errors import ConfigError
from sipguard.sip.peer import Peer
from sipguard.sip.routing import Trunk
from sipguard.sip.uri import parse_trunk_uri


def resolve_trunks(config: Config) -> tuple[Trunk, ...]:
    """Trunks by priority, then file order; a name that does not resolve is a ConfigError
    naming its `trunks[N].uri`."""
    ordered = sorted(enumerate(config.trunks), key=lambda item: (item[1].priority, item[0]))
    trunks = []
    for index, trunk in ordered:
        key = f"trunks[{index}].uri"
        uri = parse_trunk_uri(key, trunk.uri)
        host, port = uri.hostport()
        peer = Peer(uri.transport, resolve(key, host, port), port)
        trunks.append(Trunk(trunk.name or f"{host}:{port}", peer, uri,
                            rewrite_uri=trunk.request_uri == "trunk"))
    return tuple(trunks)


def resolve(key: str, host: str, port: int) -> str:
    """The first address `host` resolves to (an IP literal is its own)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a label IDNA cannot encode
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(key, f"cannot resolve {host!r}: {why}") from None
    return str(infos[0][4][0])
