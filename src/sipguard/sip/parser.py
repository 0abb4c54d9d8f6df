"""Bytes to messages: datagram parsing, stream framing and validation (RFC 3261 §7, §18.3).

Parsing is lexical first (lines, folding, names) and then validates what a proxy relies
on: the start line, Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length. Other
headers are carried opaquely. Every failure is a `ProtocolError` carrying its response
status and, once the header section could be split, the partial message so that the
edge can answer it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import NoReturn

from sipguard.errors import ProtocolError
from sipguard.sip.abnf import CALL_ID, CSEQ, NAME_ADDR, NAME_ADDR_LIST, VIA
from sipguard.sip.grammar import (
    SINGLE_HEADERS,
    canonical_name,
    is_digits,
    is_token,
    parse_uint,
    split_unquoted,
)
from sipguard.sip.message import (
    WIRE,
    Header,
    Message,
    Request,
    Response,
    Via,
    decode,
    learn_top_via,
    parse_via,
    remember,
)
from sipguard.sip.uri import parse_name_addr, parse_uri

CSEQ_MAX = 2**31 - 1  # RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31
MAX_FORWARDS_MAX = 255  # RFC 3261 §20.22 (one octet in practice; RFC 4475 §3.1.2.4)


@dataclass(frozen=True, slots=True)
class Limits:
    max_size: int = 65535
    max_headers: int = 256
    max_line: int = 8192


DEFAULT_LIMITS = Limits()


class MessageError(ProtocolError):
    """A ProtocolError raised after the headers were split: `partial` can be answered."""

    def __init__(self, error: ProtocolError, partial: Message) -> None:
        super().__init__(str(error), error.status, error.reason)
        self.partial = partial


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS, *, stream: bool = False) -> Message:
    """Parse one whole message. For datagrams, octets beyond Content-Length are discarded
    (RFC 3261 §18.3); a Content-Length beyond the datagram is an error (RFC 4475 §3.1.2.2)."""
    if len(data) > limits.max_size:
        _too_large(data, limits)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise ProtocolError("no empty line after the headers")
    message = _split(data[:end], data[end + 4 :], limits)
    try:
        return _validate(message, stream, data)
    except ProtocolError as exc:
        raise MessageError(exc, message) from None


def _too_large(data: bytes, limits: Limits) -> None:
    """Raise 513 (RFC 3261 §21.5.14), with the partial message when its headers can be read."""
    error = ProtocolError("message too large", 513)
    end = data.find(b"\r\n\r\n", 0, limits.max_size)
    if end < 0:
        raise error
    try:
        partial = _split(data[:end], b"", limits)
    except ProtocolError:
        raise error from None
    raise MessageError(error, partial)


def _split(head: bytes, body: bytes, limits: Limits) -> Message:
    lines = head.split(b"\r\n")
    crlfs = len(lines) - 1
    if head.count(b"\r") != crlfs or head.count(b"\n") != crlfs:
        # RFC 3261 §7: lines end in CRLF; a bare CR or LF is no line end and no text.
        raise ProtocolError("bare CR or LF in the header section")
    first = lines[0]
    if not first or first[:1] in b" \t":
        raise ProtocolError("leading whitespace before the start line")
    # Per-line limits only need checking when the whole section could break them.
    if len(head) > limits.max_line and max(map(len, lines)) > limits.max_line:
        raise ProtocolError("start line too long" if len(first) > limits.max_line
                            else "header line too long")
    if crlfs > limits.max_headers:  # a folded field spans lines: count the fields
        headers = _fields(lines, head)
        if len(headers) > limits.max_headers:
            raise ProtocolError("too many header fields")
    else:
        raw_names = tuple(_NAME_BEFORE_COLON.findall(head))
        shape = _SHAPES.get(raw_names) if len(raw_names) == crlfs else None
        if shape is None:
            headers = _fields(lines, head)
            if len(headers) == crlfs:  # unfolded: every line is a field, so learn the shape
                remember(_SHAPES, raw_names, (tuple(h.name for h in headers),
                                               tuple(h.colon for h in headers)))
        else:
            # Seen before: build the fields in C, no per-line Python.
            fields = zip(shape[0], lines[1:], shape[1], strict=False)  # equal lengths
            headers = tuple(map(_new_header, repeat(Header), fields))
    status = _STATUS_LINES.get(first)
    if status is not None:
        return Response(headers, body, *status)
    text = decode(first)
    if text.startswith("SIP/"):
        status = _status_line(text)
        remember(_STATUS_LINES, first, status)
        return Response(headers, body, *status)
    return _request_line(text, headers, body)


def _fields(lines: list[bytes], head: bytes) -> tuple[Header, ...]:
    """The header fields line by line: names validated, folded lines joined."""
    headers: list[Header] = []
    folded = b"\r\n " in head or b"\r\n\t" in head  # rare: skip the per-line test
    for line in lines[1:]:
        if folded and line[:1] in (b" ", b"\t"):
            if not headers:
                raise ProtocolError("continuation line before any header")
            prev = headers[-1]
            headers[-1] = Header(prev.name, prev.raw + b"\r\n" + line, prev.colon)
            continue
        colon = line.find(b":")
        if colon <= 0:
            raise ProtocolError("header line without a name and colon")
        raw_name = line[:colon]
        name = _NAMES.get(raw_name) or _header_name(raw_name)
        headers.append(_new_header(Header, (name, line, colon)))
    return tuple(headers)


# A message's header names, in order, up to each line's first colon. A peer sends the same
# few sequences again and again; each one seen whole and valid maps to its canonical names
# and colon offsets. A line without a colon or a folded line makes the count differ from the
# line count, or yields a name that is no token and so never learnt: the line-by-line path.
_NAME_BEFORE_COLON = re.compile(rb"\r\n([^:\r\n]*):")
_SHAPES: dict[tuple[bytes, ...], tuple[tuple[str, ...], tuple[int, ...]]] = {}
# NamedTuple's generated __new__ is a Python-level lambda; build the tuple directly (one per
# header line of every message).
_new_header = tuple.__new__
_NAMES: dict[bytes, str] = {}  # raw header name -> canonical name, for names seen before
GOOD_LINES = 32768  # bounded as message.remember's tables are


def _header_name(raw: bytes) -> str:
    """Validate and canonicalise a header name (HCOLON allows LWS before ':')."""
    name = decode(raw.rstrip(b" \t"))
    if not is_token(name):
        raise ProtocolError(f"bad header name {name!r}")
    canonical = canonical_name(name)
    remember(_NAMES, raw, canonical)
    return canonical


def _request_line(text: str, headers: tuple[Header, ...], body: bytes) -> Request:
    """Request-Line = Method SP Request-URI SP SIP-Version CRLF  (RFC 3261 §7.1, §25.1)."""
    parts = text.split(" ")
    if len(parts) != 3 or not parts[1]:
        raise ProtocolError("malformed request line")
    method, uri, version = parts
    if not is_token(method):
        raise ProtocolError(f"bad method {method!r}")
    req = Request(headers, body, method, uri)
    if version != "SIP/2.0":
        raise MessageError(ProtocolError(f"unsupported version {version!r}", 505), req)
    return req


def _status_line(text: str) -> tuple[int, str]:
    """Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF  (RFC 3261 §7.2)."""
    version, _, rest = text.partition(" ")
    code, _, reason = rest.partition(" ")
    if version != "SIP/2.0" or len(code) != 3 or not is_digits(code) or not 100 <= int(code) <= 699:
        raise ProtocolError("malformed status line")
    return int(code), reason


_STATUS_LINES: dict[bytes, tuple[int, str]] = {}  # a peer's few status lines, parsed


def _validate(message: Message, stream: bool, data: bytes) -> Message:
    headers = message.headers
    names = tuple(map(_name_of, headers))
    shape = _CHECKED.get(names) or _check_shape(names)
    lines = shape.lines(headers)
    if not all(map(_GOOD.__contains__, map(_raw_of, lines))):
        for h in lines:
            if h.raw not in _GOOD:
                _CHECKS[h.name](h.value)
                remember(_GOOD, h.raw, None, GOOD_LINES)
    framed = _frame_body(message, shape.length, stream)
    if framed is message and shape.length >= 0:
        message.memo[WIRE] = data  # what serialize() would build, byte for byte
    message = framed
    message.top_via  # noqa: B018  (parsed and remembered: every message is routed by it)
    if isinstance(message, Request):
        parse_uri(message.uri, "Request-URI")
        # §8.1.1.5: the CSeq method MUST match the request's (ACK and CANCEL included).
        if message.cseq[1] != message.method:
            raise ProtocolError("CSeq method does not match the request method")
    return message


_name_of = itemgetter(0)
_raw_of = itemgetter(1)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What validation needs to know about one sequence of header names."""

    lines: Callable[[tuple[Header, ...]], tuple[Header, ...]]  # the fields to check
    length: int  # index of Content-Length, or -1


def _check_shape(names: tuple[str, ...]) -> _Shape:
    """Check which fields occur and how often; learn the sequence when it passes."""
    for name in SINGLE_HEADERS:
        if names.count(name) > 1:
            raise ProtocolError(f"more than one {name} header")
    for name in ("via", "from", "to", "call-id", "cseq"):
        if name not in names:
            raise ProtocolError(f"missing {name} header")
    checked = [i for i, name in enumerate(names) if name in _CHECKS]  # five at least
    length = names.index("content-length") if "content-length" in names else -1
    shape = _Shape(itemgetter(*checked), length)
    remember(_CHECKED, names, shape)
    return shape


_CHECKED: dict[tuple[str, ...], _Shape] = {}
# Field lines that passed their check: the same From, To, Call-ID and Via lines come back in
# every message of a call. A line's bytes decide its check (name, colon and value are all in
# it), and a line that fails is never remembered.
_GOOD: dict[bytes, None] = {}


def trust_via(header: Header, via: Via) -> None:
    """A Via line sipguard wrote, with its value as parsed: responses bring the line back,
    and it is valid by construction."""
    remember(_GOOD, header.raw, None, GOOD_LINES)
    learn_top_via(header, via)


def _check_via(value: str) -> None:
    if VIA.fullmatch(value) is None:
        _explain(value, "Via")


def _check_from_to(value: str, label: str) -> None:
    match = NAME_ADDR.fullmatch(value)
    if match is None:
        _explain(value, label)
    uri = match["uri"] or match["bare"]
    if uri[:4].lower() in ("sip:", "sips"):
        parse_uri(uri, label)


def _check_contact(value: str) -> None:
    if value != "*" and NAME_ADDR_LIST.fullmatch(value) is None:
        _explain(value, "Contact")


def _check_call_id(value: str) -> None:
    """callid = word [ "@" word ]  (RFC 3261 §25.1)."""
    if CALL_ID.fullmatch(value) is None:
        raise ProtocolError("bad Call-ID")


def _check_cseq(value: str) -> None:
    """CSeq = 1*DIGIT LWS Method  (RFC 3261 §20.16)."""
    cseq = CSEQ.fullmatch(value)
    if cseq is None:
        raise ProtocolError("malformed CSeq")
    parse_uint(cseq["num"], "CSeq", CSEQ_MAX)


def _check_uint(value: str, label: str, maximum: int) -> None:
    parse_uint(value, label, maximum)


# The fields a proxy relies on, each against its RFC 3261 §25.1 rule (one match per field).
_CHECKS: dict[str, Callable[[str], None]] = {
    "via": _check_via,
    "from": lambda value: _check_from_to(value, "From"),
    "to": lambda value: _check_from_to(value, "To"),
    "contact": _check_contact,
    "call-id": _check_call_id,
    "cseq": _check_cseq,
    "max-forwards": lambda value: _check_uint(value, "Max-Forwards", MAX_FORWARDS_MAX),
}


def _explain(value: str, label: str) -> NoReturn:
    """A field failed its one-match check: re-read it slowly to say exactly what is wrong."""
    parts = split_unquoted(value, ",") if label in ("Via", "Contact") else [value]
    for part in parts:
        if label == "Via":
            parse_via(part)
        else:
            parse_name_addr(part, label)
    raise ProtocolError(f"malformed {label}")


def _frame_body(message: Message, index: int, stream: bool) -> Message:
    """The body as Content-Length (the field at `index`, -1 when absent) frames it."""
    if index < 0:
        if stream:
            raise ProtocolError("missing Content-Length on a stream transport")
        return message
    line = message.headers[index].raw
    length = _LENGTHS.get(line)
    if length is None:
        length = parse_uint(message.headers[index].value, "Content-Length", 2**31)
        remember(_LENGTHS, line, length)
    if length > len(message.body):
        raise ProtocolError("Content-Length larger than the message")
    if length == len(message.body):
        return message
    body = message.body[:length]
    if isinstance(message, Request):
        return Request(message.headers, body, message.method, message.uri)
    assert isinstance(message, Response)
    return Response(message.headers, body, message.status, message.reason)


_LENGTHS: dict[bytes, int] = {}  # Content-Length field lines, parsed


class StreamFramer:
    """Splits a TCP byte stream into messages by Content-Length (RFC 3261 §18.3).

    `feed(data)` then `next_message()` until it returns None (h11's receive_data /
    next_event). CRLF keep-alives between messages (RFC 5626 §3.5.1) are counted in
    `pings` so that the edge can answer each with a single CRLF.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buffer = bytearray()
        self.pings = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_message(self) -> bytes | None:
        """The next whole message's bytes, or None until more data arrives.

        Raises ProtocolError when the stream cannot be framed any more (the connection
        must then be closed).
        """
        buf = self._buffer
        while buf.startswith(b"\r\n"):
            if buf.startswith(b"\r\n\r\n"):
                self.pings += 1
                del buf[:4]
            elif len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                return None  # perhaps the first half of a ping
            else:
                del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self.limits.max_size:
                raise ProtocolError("message too large", 513)
            return None
        length = self._content_length(bytes(buf[:end]))
        total = end + 4 + length
        if total > self.limits.max_size:
            raise ProtocolError("message too large", 513)
        if len(buf) < total:
            return None
        data = bytes(buf[:total])
        del buf[:total]
        return data

    @staticmethod
    def _content_length(head: bytes) -> int:
        found: int | None = None
        # Unfold first (RFC 3261 §7.3.1): "Content-Length:\r\n 5" is one field.
        for line in head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ").split(b"\r\n")[1:]:
            colon = line.find(b":")
            if colon > 0 and canonical_name(decode(line[:colon].strip())) == "content-length":
                if found is not None:
                    raise ProtocolError("more than one Content-Length")
                found = parse_uint(decode(line[colon + 1 :]), "Content-Length", 2**31)
        if found is None:
            raise ProtocolError("missing Content-Length on a stream transport")
        return found
