"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966) and name-addr values.

URIs are parsed only as far as the proxy reads them; the original text is kept and
re-emitted untouched.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from sipguard.errors import ConfigError, ProtocolError
from sipguard.sip.grammar import (
    find_unquoted,
    is_digits,
    is_display_name,
    param,
    parse_params,
    unquote,
)

IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
Params = tuple[tuple[str, str | None], ...]
Transport = Literal["udp", "tcp"]


@dataclass(frozen=True, slots=True)
class SipUri:
    """SIP-URI / SIPS-URI = "sip(s):" [ userinfo ] hostport uri-parameters [ headers ]."""

    scheme: str
    user: str | None
    host: str  # IPv6 references without brackets
    port: int | None
    params: Params
    text: str

    def __init__(self, scheme: str, user: str | None, host: str, port: int | None,
                 params: Params, text: str) -> None:
        # Written out: see message.Via (the compiled build runs a generated one interpreted).
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "text", text)

    def param(self, name: str) -> str | None:
        return param(self.params, name)

    @property
    def transport(self) -> Transport:
        value = (self.param("transport") or "").lower()
        if value == "tcp" or self.scheme == "sips":
            return "tcp"
        return "udp"

    def hostport(self) -> tuple[str, int]:
        return self.host, self.port or (5061 if self.scheme == "sips" else 5060)


@dataclass(frozen=True, slots=True)
class TelUri:
    """telephone-uri = "tel:" telephone-subscriber  (RFC 3966 §3)."""

    number: str
    params: Params
    text: str

    def param(self, name: str) -> str | None:
        return param(self.params, name)


@dataclass(frozen=True, slots=True)
class OtherUri:
    """absoluteURI of any other scheme (RFC 3261 §25.1): carried, never routed on."""

    scheme: str
    text: str


Uri = SipUri | TelUri | OtherUri

SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+-.")
_SCHEME_STR = "".join(sorted(SCHEME_CHARS))  # for str.strip: the same test in C
_NOT_IN_URI = re.compile(r"[ \t\r\n<>]")


def parse_host(text: str, what: str) -> tuple[str, int | None]:
    """hostport = host [ ":" port ]; host = hostname / IPv4address / IPv6reference."""
    try:
        return _parse_host(text)
    except ProtocolError as exc:
        raise ProtocolError(f"{exc} in {what}") from None


@lru_cache(maxsize=4096)
def _parse_host(text: str) -> tuple[str, int | None]:
    # Cached: the same few peers' addresses appear in almost every message.
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ProtocolError("unclosed IPv6 reference")
        host, rest = text[1:end], text[end + 1 :]
        # RFC 5118 §4.10: tolerate the three-colon form RFC 3261's ABNF allowed.
        if not host or any(c not in IPV6_CHARS for c in host) or host.count(":") < 2:
            raise ProtocolError("bad IPv6 reference")
    else:
        host, _, port_part = text.partition(":")
        rest = ":" + port_part if _ else ""
        if not host or any(c in host for c in " \t<>\"[]"):
            raise ProtocolError("bad host")
        if host.count(".") == 3 and host.replace(".", "").isdigit():
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ProtocolError("bad IPv4 address") from None
    if not rest:
        return host, None
    if not rest.startswith(":") or not is_digits(rest[1:]) or not 0 < int(rest[1:]) < 65536:
        raise ProtocolError("bad port")
    return host, int(rest[1:])


@lru_cache(maxsize=8192)
def parse_uri(text: str, what: str = "URI") -> Uri:
    """Parse a sip:, sips: or tel: URI; other schemes are only checked as absoluteURI.

    Cached: the same URIs come back in every message of a dialog (values are immutable).
    """
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if (
        not colon
        or not scheme[:1].isalpha()
        or scheme.strip(_SCHEME_STR)  # a character outside SCHEME_CHARS
        or _NOT_IN_URI.search(text)
    ):
        raise ProtocolError(f"malformed {what}: {text!r}")
    if scheme == "tel":
        number, _, ptext = rest.partition(";")
        if not number:
            raise ProtocolError(f"empty tel number in {what}")
        return TelUri(number, parse_params(ptext, what) if _ else (), text)
    if scheme not in ("sip", "sips"):
        return OtherUri(scheme, text)
    at = rest.rfind("@")
    user: str | None = None
    if at >= 0:
        user = rest[:at].partition(":")[0]
        rest = rest[at + 1 :]
    rest, question, _headers = rest.partition("?")
    if question and what == "Request-URI":
        raise ProtocolError("headers in the Request-URI (RFC 3261 §19.1.5)")
    hostport, semi, ptext = rest.partition(";")
    host, port = parse_host(hostport, what)
    return SipUri(scheme, user, host, port, parse_params(ptext, what) if semi else (), text)


def parse_trunk_uri(key: str, text: str) -> SipUri:
    """A configured trunk URI; errors name the config key."""
    try:
        uri = parse_uri(text, "trunk URI")
    except ProtocolError as exc:
        raise ConfigError(key, str(exc)) from None
    if not isinstance(uri, SipUri):
        raise ConfigError(key, "must be a sip: or sips: URI")
    transport = (uri.param("transport") or "udp").lower()
    if transport not in ("udp", "tcp"):
        raise ConfigError(key, f"transport {transport!r} is not supported (udp or tcp)")
    return uri


@dataclass(frozen=True, slots=True)
class NameAddr:
    """( name-addr / addr-spec ) *( SEMI generic-param ): From, To, Contact, Route values."""

    display: str | None
    uri: str
    params: Params

    def param(self, name: str) -> str | None:
        return param(self.params, name)


def parse_name_addr(text: str, what: str) -> NameAddr:
    """name-addr = [ display-name ] LAQUOT addr-spec RAQUOT; addr-spec params follow ';'."""
    text = text.strip()
    lt = find_unquoted(text, "<")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise ProtocolError(f"unclosed '<' in {what}")
        display = text[:lt].strip() or None
        if display is not None:
            if not is_display_name(display):
                raise ProtocolError(f"display name must be tokens or quoted in {what}")
            display = unquote(display)
        uri = text[lt + 1 : gt]
        if uri != uri.strip():
            raise ProtocolError(f"whitespace inside <...> in {what} (RFC 4475 §3.1.2.14)")
        rest = text[gt + 1 :].strip()
        if rest and not rest.startswith(";"):
            raise ProtocolError(f"junk after '>' in {what}")
        params = parse_params(rest[1:], what) if rest else ()
    else:
        # addr-spec form: the URI cannot carry parameters, so every ';' starts a header param.
        uri, semi, ptext = text.partition(";")
        display = None
        params = parse_params(ptext, what) if semi else ()
        uri = uri.strip()
        if any(c in uri for c in " ,?"):
            raise ProtocolError(f"an addr-spec with ' ', ',' or '?' must be in <...> in {what}")
    if not uri or ":" not in uri:
        raise ProtocolError(f"missing URI in {what}")
    return NameAddr(display, uri, params)
