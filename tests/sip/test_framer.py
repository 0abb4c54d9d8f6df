"""StreamFramer (RFC 3261 §18.3 framing on TCP) tested three ways, h11-style: the whole
stream at once, byte at a time, and with trailing data / several messages per chunk; plus
CRLF keep-alives (RFC 5626 §3.5.1) and a size limit on incomplete input."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from sipguard.errors import ProtocolError
from sipguard.sip.message import Request, Response
from sipguard.sip.parser import Limits, StreamFramer, parse_message

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"


def request(n: int, body: bytes = b"", cl_line: bytes | None = None) -> bytes:
    head = (
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK%d\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: <sip:bob@example.com>\r\n"
        b"From: <sip:alice@example.com>;tag=%d\r\n"
        b"Call-ID: call-%d@example.com\r\n"
        b"CSeq: %d INVITE\r\n" % (n, n, n, n)
    )
    cl = cl_line if cl_line is not None else b"Content-Length: %d" % len(body)
    return head + cl + b"\r\n\r\n" + body


def response(n: int) -> bytes:
    return (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK%d\r\n"
        b"To: <sip:bob@example.com>;tag=t\r\n"
        b"From: <sip:alice@example.com>;tag=%d\r\n"
        b"Call-ID: call-%d@example.com\r\n"
        b"CSeq: %d INVITE\r\n"
        b"l: 0\r\n\r\n" % (n, n, n, n)
    )


STREAM_MESSAGES = [
    request(1, SDP),
    response(1),
    request(2, b"\r\n\r\nbody that looks like a header end\r\n\r\n"),
    request(3, b"", b"Content-Length:\r\n 0"),  # folded Content-Length
    request(4, SDP, b"l:%d" % len(SDP)),
    request(5, b"\x00\xff" * 100),
]
PINGS = 2
STREAM = b"\r\n\r\n" + b"".join(STREAM_MESSAGES[:3]) + b"\r\n\r\n" + b"".join(STREAM_MESSAGES[3:])


def drain(framer: StreamFramer) -> list[bytes]:
    out: list[bytes] = []
    while (data := framer.next_message()) is not None:
        out.append(data)
    return out


def run(chunks: Iterable[bytes], limits: Limits | None = None) -> tuple[list[bytes], int]:
    framer = StreamFramer(limits) if limits else StreamFramer()
    out: list[bytes] = []
    for chunk in chunks:
        framer.feed(chunk)
        out.extend(drain(framer))
    return out, framer.pings


def test_whole_stream_at_once() -> None:
    frames, pings = run([STREAM])
    assert frames == STREAM_MESSAGES
    assert pings == PINGS


def test_byte_at_a_time() -> None:
    frames, pings = run(STREAM[i : i + 1] for i in range(len(STREAM)))
    assert frames == STREAM_MESSAGES
    assert pings == PINGS


@pytest.mark.parametrize("size", [2, 3, 7, 64, 333])
def test_odd_chunk_sizes(size: int) -> None:
    frames, pings = run(STREAM[i : i + size] for i in range(0, len(STREAM), size))
    assert frames == STREAM_MESSAGES
    assert pings == PINGS


def test_trailing_partial_message_waits() -> None:
    tail = request(9, SDP)
    framer = StreamFramer()
    framer.feed(STREAM + tail[:-5])
    assert drain(framer) == STREAM_MESSAGES
    assert framer.next_message() is None
    framer.feed(tail[-5:])
    assert drain(framer) == [tail]


def test_every_frame_parses_as_a_stream_message() -> None:
    frames, _ = run([STREAM])
    parsed = [parse_message(f, stream=True) for f in frames]
    assert [type(m) for m in parsed] == [Request, Response, Request, Request, Request, Request]
    assert [m.body for m in parsed] == [
        SDP, b"", b"\r\n\r\nbody that looks like a header end\r\n\r\n", b"", SDP, b"\x00\xff" * 100,
    ]
    assert [m.serialize() for m in parsed] == frames


def test_pings_alone_and_split() -> None:
    framer = StreamFramer()
    for byte in b"\r\n\r\n\r\n\r\n\r\n":
        framer.feed(bytes([byte]))
        assert framer.next_message() is None
    assert framer.pings == 2
    framer.feed(b"\r\n" + request(1))  # completes the third ping, then a message
    assert drain(framer) == [request(1)]
    assert framer.pings == 3


def test_lone_crlf_before_a_message_is_skipped() -> None:
    # RFC 3261 §7.5: CRLFs before the start line are ignored on streams.
    frames, pings = run([b"\r\n" + request(1) + b"\r\n" + request(2)])
    assert frames == [request(1), request(2)]
    assert pings == 0


def test_missing_content_length_is_a_framing_error() -> None:
    framer = StreamFramer()
    framer.feed(request(1, b"", b"X-No-Length: 1"))
    with pytest.raises(ProtocolError):
        framer.next_message()


@pytest.mark.parametrize("cl", [b"Content-Length: -5", b"Content-Length: x",
                                b"Content-Length: 5\r\nl: 5"])
def test_bad_content_length_is_a_framing_error(cl: bytes) -> None:
    framer = StreamFramer()
    framer.feed(request(1, b"hello", cl))
    with pytest.raises(ProtocolError) as info:
        framer.next_message()
    assert info.value.status == 400


def test_clerr_waits_for_more_data_on_a_stream() -> None:
    # RFC 4475 §3.1.2.2: over TCP a too-large Content-Length means "wait for more".
    framer = StreamFramer()
    framer.feed(request(1, b"short", b"Content-Length: 9999"))
    assert framer.next_message() is None


def test_size_limit_on_incomplete_headers() -> None:
    limits = Limits(max_size=1024)
    framer = StreamFramer(limits)
    framer.feed(b"INVITE sip:bob@example.com SIP/2.0\r\n")
    for _ in range(20):
        framer.feed(b"X-Padding: " + b"p" * 40 + b"\r\n")  # never an empty line
    with pytest.raises(ProtocolError) as info:
        framer.next_message()
    assert info.value.status == 513


def test_size_limit_is_not_hit_below_it() -> None:
    framer = StreamFramer(Limits(max_size=1024))
    framer.feed(b"INVITE sip:bob@example.com SIP/2.0\r\n" + b"X: y\r\n" * 100)  # 736 octets
    assert framer.next_message() is None


def test_size_limit_on_declared_body() -> None:
    limits = Limits(max_size=1024)
    framer = StreamFramer(limits)
    framer.feed(request(1, b"", b"Content-Length: 5000"))  # body not there yet
    with pytest.raises(ProtocolError) as info:
        framer.next_message()
    assert info.value.status == 513


def test_exactly_max_size_passes() -> None:
    msg = request(1, b"b" * 300)
    framer = StreamFramer(Limits(max_size=len(msg)))
    framer.feed(msg)
    assert framer.next_message() == msg
