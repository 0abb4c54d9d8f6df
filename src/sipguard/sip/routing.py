"""Where requests go: sipguard's own identity, Route / Record-Route, branches (RFC 3261 §16).

sipguard is never an open relay: requests toward the trunk side only ever go to a
configured trunk, requests toward the dialer side only to an allowed dialer address,
whatever the Request-URI or Route headers say.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sipguard.sip.grammar import is_token, param
from sipguard.sip.message import (
    Header,
    Message,
    Request,
    Via,
    encode,
    parse_via,
    remember,
    replace_top_value,
    strip_top_value,
)
from sipguard.sip.parser import trust_via
from sipguard.sip.peer import Peer, Transport
from sipguard.sip.uri import Params, SipUri, TelUri, Uri, parse_host, parse_name_addr, parse_uri

MAGIC = "z9hG4bK"  # RFC 3261 §8.1.1.7
OWN_BRANCH = MAGIC + "sg"  # every branch sipguard creates starts with this


@dataclass(frozen=True, slots=True)
class Trunk:
    name: str
    peer: Peer  # resolved address the trunk is reached at
    uri: SipUri
    rewrite_uri: bool = False  # put the trunk's host:port in initial Request-URIs

    def request_uri(self, uri: str) -> str:
        """The Request-URI of an initial request sent to this trunk."""
        return retarget(uri, self.uri) if self.rewrite_uri else uri


def retarget(text: str, trunk: SipUri) -> str:
    """`text` with the trunk's host and port: sip:USER@HOST:PORT;params keeps USER and params;
    a tel: URI becomes sip:NUMBER@trunk;user=phone (RFC 3261 §19.1.6)."""
    host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
    hostport = f"{host}:{trunk.port}" if trunk.port else host
    uri = parse_uri(text, "Request-URI")
    if isinstance(uri, TelUri):  # the telephone-subscriber, params included, is the user part
        return f"sip:{text[4:]}@{hostport};user=phone"
    if not isinstance(uri, SipUri):
        return text
    scheme, _, rest = text.partition(":")
    user, at, after = rest.rpartition("@")
    end = min((i for i in (after.find(";"), after.find("?")) if i >= 0), default=len(after))
    return f"{scheme}:{user}{at}{hostport}{after[end:]}"


@dataclass(frozen=True, slots=True)
class Identity:
    """The addresses that name sipguard itself, per transport."""

    host: str  # advertised host (Via, Record-Route)
    ports: dict[Transport, int]
    hosts: frozenset[str]  # every host string that means "us" (advertised + listen IPs)

    def sent_by(self, transport: Transport) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.ports.get(transport) or next(iter(self.ports.values()))}"

    def is_me(self, host: str, port: int | None) -> bool:
        return host.lower() in self.hosts and (port is None or port in self.ports.values())

    def uri_is_me(self, uri: SipUri) -> bool:
        return self.is_me(uri.host, uri.port)


def branch_base(request: Request) -> str:
    """A stable id for the incoming transaction: the same for its retransmissions and its
    CANCEL, so that derived branches are deterministic (RFC 3261 §16.6 step 8)."""
    via = request.top_via
    branch = via.branch
    if branch.startswith(MAGIC) and len(branch) > len(MAGIC):
        seed = f"{branch}|{via.host}:{via.port}"
    else:  # RFC 2543 peers: no usable branch (RFC 3261 §17.2.3 fallback fields)
        num, _ = request.cseq
        seed = f"{request.call_id}|{request.tag('from')}|{num}|{via.host}:{via.port}"
    return hashlib.blake2b(encode(seed), digest_size=8).hexdigest()


def own_branch(base: str, attempt: int) -> str:
    return f"{OWN_BRANCH}{base}.{attempt}"


def own_via(me: Identity, transport: Transport, branch: str, *, answered: bool) -> Header:
    """sipguard's Via for a request it sends (RFC 3261 §16.6 step 8, RFC 3581 rport).

    `answered`: responses will come back with this line, so it is handed to the parser as
    already parsed (built here from its parts, not parsed again on every response)."""
    sent_by = me.sent_by(transport)
    name = transport.upper()
    header = Header.make("via", f"SIP/2.0/{name} {sent_by};branch={branch};rport")
    if answered:
        host, port = parse_host(sent_by, "Via")
        trust_via(header, Via(name, host, port, (("branch", branch), ("rport", None))))
    return header


LOCAL_TAG_PREFIX = "sg"


def local_tag(base: str) -> str:
    """To-tag for responses sipguard itself generates (deterministic per transaction)."""
    return LOCAL_TAG_PREFIX + base[:10]


def pop_own_routes(
    request: Request, me: Identity
) -> tuple[Request, tuple[tuple[str, str | None], ...] | None]:
    """Remove the top Route values that name sipguard (RFC 3261 §16.4, RFC 5658 double RR).

    Returns the request without them and the parameters of the first one removed (our
    Record-Route parameters: ftag, trunk), or None when the top Route was not ours.
    """
    params: tuple[tuple[str, str | None], ...] | None = None
    while True:
        top = request.get("route")
        if top is None:
            return request, params
        uri = route_uri(top)
        if not isinstance(uri, SipUri) or not me.uri_is_me(uri):
            return request, params
        if params is None:
            params = uri.params
        request = request.with_headers(strip_top_value(request.headers, "route"))


def route_uri(value: str) -> Uri:
    """The URI of one Route value. Remembered: a dialog's requests carry the same route
    set, and sipguard's own Record-Route values are handed over as parsed when written."""
    uri = _ROUTE_URIS.get(value)
    if uri is None:
        uri = parse_uri(parse_name_addr(value, "Route").uri, "Route")
        remember(_ROUTE_URIS, value, uri)
    return uri


_ROUTE_URIS: dict[str, Uri] = {}


def next_hop_uri(request: Request) -> SipUri | None:
    """The URI a loose router sends to: the top Route, else the Request-URI (§16.12)."""
    top = request.get("route")
    uri = route_uri(top) if top is not None else parse_uri(request.uri, "Request-URI")
    return uri if isinstance(uri, SipUri) else None


def dialer_target(request: Request, allowed: Callable[[str], bool]) -> Peer | None:
    """Where an in-dialog request from the trunk goes: the next hop, if it is an allowed dialer."""
    uri = next_hop_uri(request)
    if uri is None:
        return None
    try:
        ipaddress.ip_address(uri.host)
    except ValueError:
        return None  # sipguard does not resolve names toward dialers
    if not allowed(uri.host):
        return None
    host, port = uri.hostport()
    return Peer(uri.transport, host, port)


def trunk_for_dialog(
    request: Request, trunks: Sequence[Trunk], rr_params: tuple[tuple[str, str | None], ...] | None
) -> Trunk:
    """The trunk an in-dialog request from a dialer goes to: the one recorded in our
    Record-Route, else the one its next hop names, else the first."""
    if rr_params is not None:
        index = param(rr_params, "sgt")
        if index is not None and index.isdigit() and int(index) < len(trunks):
            return trunks[int(index)]
    uri = next_hop_uri(request)
    if uri is not None:
        for trunk in trunks:
            if (uri.host, uri.port or 5060) == (trunk.peer.host, trunk.peer.port) or (
                uri.host == trunk.uri.host and (uri.port or 5060) == trunk.peer.port
            ):
                return trunk
    return trunks[0]


def record_route(
    me: Identity, inbound: Transport, outbound: Transport, from_tag: str | None, trunk: int
) -> tuple[Header, ...]:
    """Our Record-Route value(s): one, or two when the call changes transport (RFC 5658)."""

    def value(transport: Transport) -> str:
        tparam = ";transport=tcp" if transport == "tcp" else ""
        ftag = f";ftag={from_tag}" if from_tag else ""
        sent_by = me.sent_by(transport)
        text = f"sip:{sent_by}{tparam};lr{ftag};sgt={trunk}"
        if not from_tag or is_token(from_tag):  # then parse_params reads it back as written
            params: Params = (*((("transport", "tcp"),) if tparam else ()), ("lr", None),
                              *((("ftag", from_tag),) if from_tag else ()), ("sgt", str(trunk)))
            remember(_ROUTE_URIS, f"<{text}>", SipUri("sip", None, *parse_host(sent_by, "Route"),
                                                     params, text))
        return f"<{text}>"

    if inbound == outbound:
        return (Header.make("record-route", value(outbound)),)
    return (Header.make("record-route", f"{value(outbound)}, {value(inbound)}"),)


def has_own_via(message: Message, me: Identity) -> bool:
    """A request already carrying a Via of ours has looped back (sipguard never spirals:
    it only forwards to trunks and dialers, never to itself)."""
    for text in message.values("via"):
        via = parse_via(text)
        if via.branch.startswith(OWN_BRANCH) and me.is_me(via.host, via.port):
            return True
    return False


def stamp_received(request: Request, source: Peer) -> Request:
    """Record in the top Via where the request really came from: `received` when the
    sent-by host is not the source address (RFC 3261 §18.2.1), and the `rport` value when
    the sender asked for it (RFC 3581 §4). Responses then find their way back through NAT."""
    via = request.top_via
    rport = via.param("rport")
    if via.host == source.host and rport is None:
        return request
    stamped = via.with_param("received", source.host)
    if rport is not None:
        stamped = stamped.with_param("rport", str(source.port))
    return request.with_headers(replace_top_value(request.headers, "via", str(stamped)))


def response_target(via_text: str) -> Peer:
    """Where a response goes per its (next) Via: received / rport, else sent-by (§18.2.2,
    RFC 3581)."""
    via = parse_via(via_text)
    transport: Transport = "tcp" if via.transport in ("TCP", "TLS") else "udp"
    host = via.param("received") or via.host
    rport = via.param("rport")
    port = int(rport) if rport and rport.isdigit() else via.port or 5060
    return Peer(transport, host, port)

