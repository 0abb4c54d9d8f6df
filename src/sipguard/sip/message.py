"""SIP messages as immutable values (RFC 3261 §7).

A header keeps the exact bytes it arrived with; values are decoded only when read, so
headers the proxy never touches leave byte-for-byte as they came. Changes produce new
messages (`with_headers`), never edit one in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from sipguard.errors import ProtocolError
from sipguard.sip.grammar import LIST_HEADERS, canonical_name, param, parse_params, split_unquoted
from sipguard.sip.uri import Params, parse_host

# The memo key of a message's exact wire bytes, when they are known: a parsed message whose
# serialisation would give back the datagram it came in (Content-Length present, nothing
# beyond the body), and the same minus a removed Via line (relaying a response).
WIRE = " wire"

# Names as sipguard writes them (RFC 3261 §20 spelling).
DISPLAY_NAMES = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "max-forwards": "Max-Forwards",
    "record-route": "Record-Route",
    "content-length": "Content-Length",
}


def display_name(name: str) -> str:
    return DISPLAY_NAMES.get(name) or "-".join(p.capitalize() for p in name.split("-"))


def decode(raw: bytes) -> str:
    """Header bytes to text: UTF-8 (RFC 3261 §7.3.1), undecodable octets kept for re-encoding."""
    return raw.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class Header(NamedTuple):
    """One header field: canonical name, the raw line (folding kept, no CRLF), colon offset."""

    name: str
    raw: bytes
    colon: int

    @property
    def value(self) -> str:
        """The field value with folding replaced by one SP (RFC 3261 §7.3.1)."""
        raw = self.raw[self.colon + 1 :]
        if b"\n" in raw:
            raw = b" ".join(part.strip(b" \t") for part in raw.replace(b"\r\n", b"\n").split(b"\n"))
        return raw.strip(b" \t").decode("utf-8", "surrogateescape")  # as decode(), inlined

    @classmethod
    def make(cls, name: str, value: str) -> Header:
        found = _LABELS.get(name)
        if found is None:
            canonical = canonical_name(name)
            found = _LABELS[name] = (canonical, display_name(canonical) if name.islower() else name)
        canonical, label = found
        return tuple.__new__(cls, (canonical, encode(f"{label}: {value}"), len(label)))


# name as the code writes it -> (canonical name, label on the wire); a few dozen entries
_LABELS: dict[str, tuple[str, str]] = {}


@dataclass(frozen=True, slots=True)
class Via:
    """via-parm = sent-protocol LWS sent-by *( SEMI via-params )  (RFC 3261 §20.42, §25.1)."""

    transport: str  # upper case as in sent-protocol, e.g. "UDP"
    host: str
    port: int | None
    params: Params
    # Read for every message routed (transaction keys): worked out once.
    branch: str = field(init=False, compare=False, repr=False)

    # Written out, here and in the other value types made per message: the compiled build
    # (setup.py) runs a dataclass's generated __init__ as interpreted code, six times slower
    # than this one compiled. tests/test_compiled_build.py holds each to its fields.
    def __init__(self, transport: str, host: str, port: int | None, params: Params) -> None:
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "branch", param(params, "branch") or "")

    def param(self, name: str) -> str | None:
        return param(self.params, name)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)
        return f"SIP/2.0/{self.transport} {host}{port}{params}"

    def with_param(self, name: str, value: str | None) -> Via:
        kept = tuple((k, v) for k, v in self.params if k.lower() != name.lower())
        return Via(self.transport, self.host, self.port, (*kept, (name, value)))


@lru_cache(maxsize=8192)
def parse_via(text: str) -> Via:
    # Cached: a response carries the Vias its request had, and a call's messages repeat them.
    # Still, each new request brings a new branch: the form nearly every UA writes is read
    # with one match; anything else (LWS, quotes, IPv6 ...) the long way.
    plain = _PLAIN_VIA.fullmatch(text)
    if plain is None:
        return _parse_via_fully(text)
    transport, host, port, ptext = plain.groups()
    host_port = parse_host(f"{host}:{port}" if port else host, "Via")
    params = tuple((name, value or None) for name, value in _PLAIN_PARAM.findall(ptext))
    return Via(transport.upper(), host_port[0], host_port[1], params)


# "SIP/2.0/UDP host[:port]" then ";name[=value]" parameters, no spaces, quotes or brackets
# in them: the common case of RFC 3261 §25.1's via-parm. `_parse_via_fully` gives the same
# Via for every text this matches (tests/sip/test_parser_properties.py holds them to it).
_PLAIN_VIA = re.compile(
    r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9.\-]+)(?::([0-9]+))?"
    r"((?:;[A-Za-z0-9\-.!%*_+`'~]+(?:=[A-Za-z0-9\-.!%*_+`'~:]+)?)*)"
)
_PLAIN_PARAM = re.compile(r";([^;=]+)(?:=([^;]+))?")


def _parse_via_fully(text: str) -> Via:
    proto, _, rest = text.strip().partition("/")
    version, _, rest = rest.partition("/")
    transport, _, rest = rest.lstrip().replace("\t", " ").partition(" ")  # LWS: SP or HTAB
    if proto.strip().upper() != "SIP" or version.strip() != "2.0" or not transport:
        # sent-protocol may carry LWS around '/', which the partitions above tolerate.
        raise ProtocolError(f"bad Via sent-protocol: {text!r}")
    rest = rest.strip()
    sent_by, semi, ptext = rest.partition(";")
    host, port = parse_host("".join(sent_by.split()), "Via")
    params = parse_params(ptext, "Via") if semi else ()
    return Via(transport.strip().upper(), host, port, params)


@dataclass(frozen=True, slots=True)
class Message:
    """Fields shared by requests and responses."""

    headers: tuple[Header, ...]
    body: bytes
    # Values already read off this message: a proxy reads the same few headers several
    # times per message, and the message never changes (changes make a new one).
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False, kw_only=True)

    def __init__(self, headers: tuple[Header, ...], body: bytes,
                 *, memo: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "memo", {} if memo is None else memo)

    def get(self, name: str) -> str | None:
        """The first value of a header (the whole field for single-valued headers)."""
        memo = self.memo
        if name in memo:
            return memo[name]  # type: ignore[no-any-return]
        value = None
        for h in self.headers:
            if h.name == name:
                value = h.value
                if name in LIST_HEADERS and ("," in value):
                    value = split_unquoted(value, ",")[0]
                break
        memo[name] = value
        return value

    def values(self, name: str) -> list[str]:
        """Every value of a header, comma lists split (RFC 3261 §7.3.1)."""
        out: list[str] = []
        for h in self.headers:
            if h.name == name:
                out.extend(split_unquoted(h.value, ",") if name in LIST_HEADERS else [h.value])
        return out

    def has(self, name: str) -> bool:
        # A plain loop, not any(genexpr): this runs for every message serialised.
        for h in self.headers:  # noqa: SIM110
            if h.name == name:
                return True
        return False

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    def _first(self, name: str) -> Header | None:
        for h in self.headers:
            if h.name == name:
                return h
        return None

    @property
    def cseq(self) -> tuple[int, str]:
        h = self._first("cseq")
        found = _CSEQS.get(h.raw) if h is not None else None
        if found is None:
            # CSeq = 1*DIGIT LWS Method (§20.16): LWS may be a tab, which the parser accepts.
            num, _, method = (self.get("cseq") or "").strip().replace("\t", " ").partition(" ")
            found = (int(num), method.strip())
            if h is not None:
                remember(_CSEQS, h.raw, found)
        return found

    @property
    def top_via(self) -> Via:
        h = self._first("via")
        via = _TOP_VIAS.get(h.raw) if h is not None else None
        if via is None:
            via = parse_via(self.get("via") or "")
            if h is not None:
                remember(_TOP_VIAS, h.raw, via)
        return via

    def tag(self, which: str) -> str | None:
        """The tag parameter of From or To, read without a full name-addr parse."""
        h = self._first(which)
        if h is None:
            return None
        raw = h.raw
        if raw in _TAGS:
            return _TAGS[raw]
        value = h.value
        found = None
        for part in value[value.rfind(">") + 1 :].split(";")[1:]:
            name, _, tag = part.partition("=")
            if name.strip().lower() == "tag":
                found = tag.strip()
                break
        remember(_TAGS, raw, found)
        return found

    def _head(self) -> bytes:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """Wire bytes; Content-Length is written when absent (stream transports need it)."""
        wire: bytes | None = self.memo.get(WIRE)
        if wire is not None:
            return wire
        lines = [self._head()]
        lines += [h.raw for h in self.headers]
        if not self.has("content-length"):
            lines.append(b"Content-Length: %d" % len(self.body))
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


# Values read off a field line, by the line's bytes: a proxy makes several copies of a
# message (each change is a new one) and a call's messages repeat the same lines, so each
# line is read once. Bounded: a full table starts again from empty.
CACHE_ENTRIES = 4096
_K = TypeVar("_K")
_V = TypeVar("_V")
_TOP_VIAS: dict[bytes, Via] = {}  # first Via line -> its first value
_CSEQS: dict[bytes, tuple[int, str]] = {}
_TAGS: dict[bytes, str | None] = {}  # From / To line -> tag


def remember(table: dict[_K, _V], key: _K, value: _V, limit: int = CACHE_ENTRIES) -> None:
    if len(table) >= limit:
        table.clear()
    table[key] = value


def learn_top_via(header: Header, via: Via) -> None:
    """Record `via` as the parsed first value of a Via line (one sipguard wrote itself)."""
    remember(_TOP_VIAS, header.raw, via)


def strip_top_value(headers: tuple[Header, ...], name: str) -> tuple[Header, ...]:
    """Remove the first value of a list header, keeping the rest of that field intact."""
    out = list(headers)
    for i, h in enumerate(out):
        if h.name == name:
            rest = split_unquoted(h.value, ",")[1:] if b"," in h.raw else None
            if rest:
                label = decode(h.raw[: h.colon]).strip()
                out[i] = Header(name, encode(f"{label}: {', '.join(rest)}"), len(label))
            else:
                del out[i]
            break
    return tuple(out)


def replace_top_value(headers: tuple[Header, ...], name: str, value: str) -> tuple[Header, ...]:
    """Replace the first value of a list header (e.g. the top Via gaining received/rport)."""
    out = list(headers)
    for i, h in enumerate(out):
        if h.name == name:
            rest = split_unquoted(h.value, ",")[1:]
            label = decode(h.raw[: h.colon]).strip()
            out[i] = Header(name, encode(f"{label}: {', '.join([value, *rest])}"), len(label))
            break
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Request(Message):
    method: str
    uri: str

    def __init__(self, headers: tuple[Header, ...], body: bytes, method: str, uri: str,
                 *, memo: dict[str, Any] | None = None) -> None:
        Message.__init__(self, headers, body, memo=memo)  # no super(): slots=True copies classes
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "uri", uri)

    def _head(self) -> bytes:
        return encode(f"{self.method} {self.uri} SIP/2.0")

    def with_headers(self, headers: tuple[Header, ...], uri: str | None = None) -> Request:
        return Request(headers, self.body, self.method, self.uri if uri is None else uri)


@dataclass(frozen=True, slots=True)
class Response(Message):
    status: int
    reason: str

    def __init__(self, headers: tuple[Header, ...], body: bytes, status: int, reason: str,
                 *, memo: dict[str, Any] | None = None) -> None:
        Message.__init__(self, headers, body, memo=memo)  # no super(): slots=True copies classes
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "reason", reason)

    def _head(self) -> bytes:
        return encode(f"SIP/2.0 {self.status} {self.reason}")

    def with_headers(self, headers: tuple[Header, ...]) -> Response:
        return Response(headers, self.body, self.status, self.reason)


REASON_PHRASES = {  # RFC 3261 §21 (+ 608 from RFC 8688)
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable", 608: "Rejected",
}


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    extra: tuple[Header, ...] = (),
    to_tag: str | None = None,
) -> Response:
    """A response to `request` built as RFC 3261 §8.2.6.2 says: Via, From, To, Call-ID, CSeq copied.

    `to_tag` is added to To when the request's To has none (needed for final responses
    to out-of-dialog requests).
    """
    copied: list[Header] = [h for h in request.headers if h.name == "via"]
    for h in request.headers:
        if h.name in ("from", "call-id", "cseq"):
            copied.append(h)
        elif h.name == "to":
            if to_tag and request.tag("to") is None and status > 100:
                copied.append(Header.make("to", f"{h.value};tag={to_tag}"))
            else:
                copied.append(h)
    if status == 100:
        copied.extend(h for h in request.headers if h.name == "timestamp")  # §8.2.6.1
    copied.extend(extra)
    copied.append(_NO_BODY)
    return Response(tuple(copied), b"", status, reason or REASON_PHRASES.get(status, "Unknown"))


_NO_BODY = Header.make("content-length", "0")

