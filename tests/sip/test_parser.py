"""Unit tests of the SIP parser (RFC 3261 §7, §20, §25): requests, responses, headers, URIs,
framing, hard limits and byte-exactness."""

from __future__ import annotations

import pytest

from sipguard.errors import ProtocolError
from sipguard.sip.grammar import (
    canonical_name,
    is_display_name,
    is_quoted_string,
    parse_params,
    split_unquoted,
    unquote,
)
from sipguard.sip.message import (
    CACHE_ENTRIES,
    Header,
    Request,
    Response,
    make_response,
    parse_via,
    remember,
    replace_top_value,
    strip_top_value,
)
from sipguard.sip.parser import Limits, MessageError, parse_message
from sipguard.sip.routing import Identity, own_via, record_route, route_uri
from sipguard.sip.uri import OtherUri, SipUri, TelUri, parse_name_addr, parse_uri

CRLF = "\r\n"
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"

BASE_HEADERS = (
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@example.com>",
    'From: "Alice A." <sip:alice@example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.example.com>",
)


def wire(
    start: str, headers: tuple[str, ...] | list[str], body: bytes = b"", cl: bool = True
) -> bytes:
    """Build wire bytes; Content-Length is appended (exact) unless cl is False."""
    lines = [start, *headers]
    if cl:
        lines.append(f"Content-Length: {len(body)}")
    return (CRLF.join(lines) + CRLF + CRLF).encode() + body


def invite(*extra: str, body: bytes = b"", replace: dict[str, str] | None = None) -> bytes:
    """An INVITE; `replace` maps a header prefix ("CSeq") to its replacement line ("" drops it)."""
    headers = []
    for line in BASE_HEADERS:
        key = line.split(":", 1)[0]
        if replace and key in replace:
            if replace[key]:
                headers.append(replace[key])
        else:
            headers.append(line)
    return wire("INVITE sip:bob@example.com SIP/2.0", [*headers, *extra], body)


def response(status_line: str = "SIP/2.0 180 Ringing", *extra: str) -> bytes:
    headers = [h if not h.startswith("To:") else h + ";tag=a6c85cf" for h in BASE_HEADERS]
    return wire(status_line, [*headers, *extra])


def err(data: bytes, **kw: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_message(data, **kw)  # type: ignore[arg-type]
    return info.value


# --- requests and responses ---------------------------------------------------------------


def test_request_fields() -> None:
    msg = parse_message(invite(body=SDP))
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:bob@example.com"
    assert msg.call_id == "a84b4c76e66710@pc33.example.com"
    assert msg.cseq == (314159, "INVITE")
    assert msg.tag("from") == "1928301774"
    assert msg.tag("to") is None
    via = msg.top_via
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP", "192.0.2.1", 5060, "z9hG4bK776asdhds",
    )
    assert msg.body == SDP
    assert msg.get("max-forwards") == "70"
    assert [h.name for h in msg.headers] == [
        "via", "max-forwards", "to", "from", "call-id", "cseq", "contact", "content-length",
    ]


def test_response_fields() -> None:
    msg = parse_message(response("SIP/2.0 486 Busy Here"))
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (486, "Busy Here")
    assert msg.tag("to") == "a6c85cf"
    assert msg.cseq == (314159, "INVITE")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("SIP/2.0 200 OK", "OK"),
        ("SIP/2.0 100 ", ""),  # RFC 4475 §3.1.1.13 noreason
        ("SIP/2.0 183 Session  Progress ", "Session  Progress "),
        ("SIP/2.0 699 Ünïcødé reason", "Ünïcødé reason"),
    ],
)
def test_reason_phrases_kept_verbatim(line: str, reason: str) -> None:
    msg = parse_message(response(line))
    assert isinstance(msg, Response)
    assert msg.reason == reason
    assert msg.serialize() == response(line)


@pytest.mark.parametrize(
    "line",
    [
        "SIP/2.0 99 Low",
        "SIP/2.0 700 High",
        "SIP/2.0 4294967301 Huge",  # RFC 4475 §3.1.2.19 bigcode
        "SIP/2.0 20x OK",
        "SIP/2.0 1²3 Superscript",  # str.isdigit() is True for '²', int() is not
        "SIP/3.0 200 OK",
        "SIP/2.0",
    ],
)
def test_bad_status_lines(line: str) -> None:
    assert err(response(line)).status == 400


@pytest.mark.parametrize(
    "start",
    [
        "INVITE  sip:bob@example.com SIP/2.0",  # RFC 4475 §3.1.2.9
        "INVITE sip:bob@example.com SIP/2.0 ",  # RFC 4475 §3.1.2.10
        "INVITE sip:bob@example.com",
        "INVITE\tsip:bob@example.com\tSIP/2.0",
        "INV@TE sip:bob@example.com SIP/2.0",
        " INVITE sip:bob@example.com SIP/2.0",
    ],
)
def test_bad_request_lines(start: str) -> None:
    data = wire(start, BASE_HEADERS)
    assert err(data).status == 400


def test_unknown_version_is_505_and_answerable() -> None:
    data = invite().replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
    exc = err(data)
    assert exc.status == 505
    assert isinstance(exc, MessageError)
    assert isinstance(exc.partial, Request)
    assert exc.partial.top_via.branch == "z9hG4bK776asdhds"


def test_method_is_case_sensitive_token() -> None:
    data = invite(replace={"CSeq": "CSeq: 1 invite"}).replace(b"INVITE sip", b"invite sip", 1)
    msg = parse_message(data)
    assert isinstance(msg, Request)
    assert msg.method == "invite"
    # CSeq method must match exactly: "INVITE" != "invite" (RFC 3261 §8.1.1.5, §20.16).
    assert err(data.replace(b"CSeq: 1 invite", b"CSeq: 1 INVITE")).status == 400


@pytest.mark.parametrize(("method", "cseq_method"), [("ACK", "INVITE"), ("CANCEL", "INVITE"),
                                                     ("OPTIONS", "INVITE"), ("BYE", "ACK")])
def test_cseq_method_mismatch(method: str, cseq_method: str) -> None:
    data = invite(replace={"CSeq": f"CSeq: 1 {cseq_method}"}).replace(
        b"INVITE sip", method.encode() + b" sip", 1
    )
    exc = err(data)
    assert exc.status == 400
    assert isinstance(exc, MessageError)


@pytest.mark.parametrize("method", ["ACK", "CANCEL", "BYE", "NEWMETHOD"])
def test_cseq_method_match(method: str) -> None:
    data = invite(replace={"CSeq": f"CSeq: 7 {method}"}).replace(
        b"INVITE sip", method.encode() + b" sip", 1
    )
    msg = parse_message(data)
    assert isinstance(msg, Request)
    assert msg.cseq == (7, method)


# --- header names: compact forms, case ----------------------------------------------------


@pytest.mark.parametrize(
    ("raw_name", "canonical"),
    [
        ("v", "via"), ("V", "via"), ("f", "from"), ("t", "to"), ("i", "call-id"),
        ("m", "contact"), ("l", "content-length"), ("c", "content-type"), ("s", "subject"),
        ("k", "supported"), ("e", "content-encoding"), ("VIA", "via"), ("cAlL-iD", "call-id"),
        ("X-Custom", "x-custom"), ("CSEQ", "cseq"),
    ],
)
def test_canonical_names(raw_name: str, canonical: str) -> None:
    assert canonical_name(raw_name) == canonical


def test_compact_and_mixed_case_headers_parse_and_keep_their_spelling() -> None:
    data = wire(
        "OPTIONS sip:bob@example.com SIP/2.0",
        [
            "v: SIP/2.0/UDP host.example.com;branch=z9hG4bKc1",
            "MAX-forwards: 70",
            "t: <sip:bob@example.com>",
            "f: <sip:alice@example.com>;tag=x",
            "i: compact@host",
            "cseq: 2 OPTIONS",
            "m: <sip:alice@host.example.com>",
            "s: hello",
        ],
        cl=False,
    ) [:-2] + b"l: 0\r\n\r\n"
    msg = parse_message(data)
    assert msg.call_id == "compact@host"
    assert msg.get("subject") == "hello"
    assert msg.get("content-length") == "0"
    assert msg.top_via.branch == "z9hG4bKc1"
    assert [h.raw.split(b":")[0] for h in msg.headers] == [
        b"v", b"MAX-forwards", b"t", b"f", b"i", b"cseq", b"m", b"s", b"l",
    ]
    assert msg.serialize() == data


def test_space_before_colon_in_header_name() -> None:
    msg = parse_message(invite("Subject   : spaced", "X-Tab\t:\ttabbed"))
    assert msg.get("subject") == "spaced"
    assert msg.get("x-tab") == "tabbed"


@pytest.mark.parametrize("line", ["Bad Name: x", "Bad@Name: x", ": novalue", "NoColonHere"])
def test_bad_header_lines(line: str) -> None:
    exc = err(invite(line))
    assert exc.status == 400
    assert not isinstance(exc, MessageError)  # the header section itself could not be split


# --- multi-valued headers -----------------------------------------------------------------


def test_comma_separated_and_repeated_via() -> None:
    data = invite(
        replace={
            "Via": "Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, "
            "SIP/2.0/TCP p2.example.com:5070;branch=z9hG4bK2"
        }
    )
    data = data.replace(b"Max-Forwards", b"Via: SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bK3"
                        b";received=192.0.2.9;rport\r\nMax-Forwards", 1)
    msg = parse_message(data)
    values = msg.values("via")
    assert len(values) == 3
    vias = [parse_via(v) for v in values]
    assert [v.branch for v in vias] == ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]
    assert [v.transport for v in vias] == ["UDP", "TCP", "UDP"]
    assert vias[1].port == 5070
    assert vias[2].host == "2001:db8::9"
    assert vias[2].param("rport") == ""
    assert vias[2].param("RECEIVED") == "192.0.2.9"
    assert msg.top_via.branch == "z9hG4bK1"
    assert msg.get("via") == values[0]


def test_commas_inside_quotes_and_angle_brackets_do_not_split() -> None:
    msg = parse_message(
        invite(
            'Route: "Proxy, One" <sip:p1.example.com;lr>, <sip:p2.example.com;lr;x="a,b">',
            "Record-Route: <sip:rr1.example.com;lr>",
            "Record-Route: <sip:rr2.example.com;lr>,<sip:rr3.example.com;lr>",
        )
    )
    assert msg.values("route") == [
        '"Proxy, One" <sip:p1.example.com;lr>',
        '<sip:p2.example.com;lr;x="a,b">',
    ]
    assert msg.values("record-route") == [
        "<sip:rr1.example.com;lr>", "<sip:rr2.example.com;lr>", "<sip:rr3.example.com;lr>",
    ]


def test_single_valued_headers_are_not_split_on_commas() -> None:
    msg = parse_message(invite("Subject: one, two, three", "Date: Sat, 13 Nov 2010 23:29:00 GMT"))
    assert msg.values("subject") == ["one, two, three"]
    assert msg.get("date") == "Sat, 13 Nov 2010 23:29:00 GMT"


@pytest.mark.parametrize("name", ["Call-ID", "From", "To", "CSeq", "Max-Forwards", "i", "f"])
def test_duplicate_single_headers_rejected(name: str) -> None:
    line = {
        "Call-ID": "Call-ID: other@x", "i": "i: other@x", "From": "From: <sip:x@y>;tag=2",
        "f": "f: <sip:x@y>;tag=2", "To": "To: <sip:x@y>", "CSeq": "CSeq: 1 INVITE",
        "Max-Forwards": "Max-Forwards: 10",
    }[name]
    exc = err(invite(line))
    assert exc.status == 400
    assert isinstance(exc, MessageError)


@pytest.mark.parametrize("name", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_required_headers(name: str) -> None:
    exc = err(invite(replace={name: ""}))
    assert exc.status == 400
    assert name.lower() in str(exc).lower()


def test_max_forwards_absent_is_allowed() -> None:
    msg = parse_message(invite(replace={"Max-Forwards": ""}))
    assert msg.get("max-forwards") is None


# --- folding, quoted strings, escapes ------------------------------------------------------


def test_header_folding_values_and_raw_bytes() -> None:
    data = invite(
        "Subject: I know you're there,\r\n pick up the phone\r\n\tand talk to me!",
        replace={"Via": "Via: SIP/2.0/UDP 192.0.2.1:5060\r\n   ;branch=z9hG4bKfold"},
    )
    msg = parse_message(data)
    subject = next(h for h in msg.headers if h.name == "subject")
    assert subject.value == "I know you're there, pick up the phone and talk to me!"
    assert subject.raw == (
        b"Subject: I know you're there,\r\n pick up the phone\r\n\tand talk to me!"
    )
    assert msg.top_via.branch == "z9hG4bKfold"
    assert msg.serialize() == data


def test_folded_required_headers() -> None:
    data = invite(
        replace={"CSeq": "CSeq:\r\n 314159\r\n INVITE", "Call-ID": "Call-ID:\r\n\tfold@x"}
    )
    msg = parse_message(data)
    assert msg.cseq == (314159, "INVITE")
    assert msg.call_id == "fold@x"
    assert msg.serialize() == data


def test_continuation_before_any_header_is_an_error() -> None:
    data = b"INVITE sip:bob@example.com SIP/2.0\r\n folded: x\r\n" + invite().split(b"\r\n", 1)[1]
    assert err(data).status == 400


def test_quoted_display_names_with_escapes() -> None:
    from_ = r'From: "J \"Rosenberg\" \\ <x>; y, z" <sip:j@example.com>;tag=9'
    data = invite(replace={"From": from_})
    msg = parse_message(data)
    assert msg.tag("from") == "9"
    addr = parse_name_addr(msg.get("from") or "", "From")
    assert addr.display == 'J "Rosenberg" \\ <x>; y, z'
    assert addr.uri == "sip:j@example.com"
    assert addr.param("tag") == "9"


@pytest.mark.parametrize(
    "to",
    [
        'To: "Mr. J. User <sip:j.user@example.com>',  # RFC 4475 §3.1.2.6 quotbal
        "To: Watson, Thomas <sip:t.watson@example.org>",  # §3.1.2.15 baddn
        'To: "a" "b" <sip:t@example.org>',
        'To: "a" b <sip:t@example.org>',
        "To: Wat;son <sip:t@example.org>",
        "To: < sip:t.watson@example.org >",  # §3.1.2.14 badaspec
        "To: <sip:t@example.org",
        "To: <sip:t@example.org> junk",
        "To: sip:t@example.org?Route=x",  # §3.1.2.13: headers need name-addr form
        "To: <>",
        "To: nocolon",
    ],
)
def test_bad_name_addr_values(to: str) -> None:
    exc = err(invite(replace={"To": to}))
    assert exc.status == 400
    assert isinstance(exc, MessageError)


@pytest.mark.parametrize(
    "to",
    [
        "To: Bob <sip:bob@example.com>",
        "To: Bob Smith Jr. <sip:bob@example.com>",
        "To: caller<sip:bob@example.com>",  # §3.1.1.6 lwsdisp
        "To: Jürgen Müller <sip:bob@example.com>",  # non-ASCII words tolerated
        'To: "" <sip:bob@example.com>',
        "To: sip:bob@example.com;tag=1",
        "To: <isbn:2983792873>",
        "To: <tel:+1-201-555-0123>",
    ],
)
def test_good_name_addr_values(to: str) -> None:
    assert isinstance(parse_message(invite(replace={"To": to})), Request)


def test_quoted_string_helpers() -> None:
    assert unquote(r'"a\"b\\c"') == 'a"b\\c'
    assert unquote("plain") == "plain"
    assert is_quoted_string('"x"')
    assert is_quoted_string(r'"x\"y"')
    assert not is_quoted_string(r'"x\"')
    assert not is_quoted_string('"a" "b"')
    assert not is_quoted_string('"')
    assert is_display_name("token1~` token2'+_")
    assert not is_display_name("Bell, Alexander")
    assert split_unquoted('a, "b,c" , <d,e>', ",") == ["a", '"b,c"', "<d,e>"]
    with pytest.raises(ProtocolError):
        split_unquoted('a, "b', ",")
    assert parse_params("a=1;b;c=\"x;y\"", "t") == (("a", "1"), ("b", None), ("c", '"x;y"'))
    for bad in ("", "a;;b", "a=", "=1", "a b=1"):
        with pytest.raises(ProtocolError):
            parse_params(bad, "t")


def test_unterminated_quote_in_unknown_header_is_harmless() -> None:
    # Only headers the proxy reads are validated; others are carried opaquely.
    msg = parse_message(invite('X-Note: "unterminated'))
    assert msg.get("x-note") == '"unterminated'


# --- Content-Length framing ----------------------------------------------------------------


def test_datagram_octets_beyond_content_length_are_discarded() -> None:
    data = invite(body=SDP) + b"garbage after the body"
    msg = parse_message(data)
    assert msg.body == SDP


def test_content_length_larger_than_datagram() -> None:
    data = invite(body=SDP).replace(b"Content-Length: %d" % len(SDP), b"Content-Length: 9999")
    exc = err(data)
    assert exc.status == 400
    assert isinstance(exc, MessageError)


@pytest.mark.parametrize("value", ["-1", "abc", "", "1 2", "0x10", "99999999999999"])
def test_bad_content_length(value: str) -> None:
    data = invite().replace(b"Content-Length: 0", f"Content-Length: {value}".encode())
    assert err(data).status == 400


def test_missing_content_length_datagram_takes_the_rest() -> None:
    data = wire("INVITE sip:bob@example.com SIP/2.0", BASE_HEADERS, SDP, cl=False)
    msg = parse_message(data)
    assert msg.body == SDP
    assert not msg.has("content-length")
    # Serializing adds the Content-Length a stream transport needs.
    again = msg.serialize()
    assert again.endswith(b"Content-Length: %d\r\n\r\n" % len(SDP) + SDP)
    assert parse_message(again, stream=True).body == SDP


def test_missing_content_length_on_stream_is_an_error() -> None:
    data = wire("INVITE sip:bob@example.com SIP/2.0", BASE_HEADERS, b"", cl=False)
    assert err(data, stream=True).status == 400


def test_compact_content_length_and_leading_zeros() -> None:
    data = invite(body=SDP).replace(b"Content-Length: %d" % len(SDP), b"l:000%d" % len(SDP))
    msg = parse_message(data)
    assert msg.body == SDP
    assert msg.serialize() == data


def test_body_with_binary_octets_and_crlfcrlf() -> None:
    body = b"\x00\r\n\r\n\xff\xfe binary \r\n\r\n"
    data = invite(body=body, replace={"Contact": "Content-Type: application/octet-stream"})
    msg = parse_message(data)
    assert msg.body == body
    assert msg.serialize() == data


def test_no_empty_line_after_headers() -> None:
    data = invite()[:-2]  # RFC 4475 §3.1.2.15 archive quirk: headers never closed
    assert err(data).status == 400


# --- hard limits ---------------------------------------------------------------------------


def test_message_size_limit_is_513_with_partial() -> None:
    data = invite(body=b"x" * 2000)
    limits = Limits(max_size=len(data) - 1)
    exc = err(data, limits=limits)
    assert exc.status == 513
    assert isinstance(exc, MessageError)
    assert isinstance(exc.partial, Request)
    assert exc.partial.call_id == "a84b4c76e66710@pc33.example.com"
    assert parse_message(data, Limits(max_size=len(data))).body == b"x" * 2000


def test_message_size_limit_without_readable_headers() -> None:
    data = invite("X-Long: " + "y" * 3000)
    exc = err(data, limits=Limits(max_size=1000))
    assert exc.status == 513
    assert not isinstance(exc, MessageError)


def test_header_count_limit() -> None:
    base = len(BASE_HEADERS) + 1  # + Content-Length
    extra = [f"X-H{i}: {i}" for i in range(10)]
    data = invite(*extra)
    assert parse_message(data, Limits(max_headers=base + 10)).get("x-h9") == "9"
    exc = err(data, limits=Limits(max_headers=base + 9))
    assert exc.status == 400
    assert "too many" in str(exc)


def test_header_line_length_limit() -> None:
    line = "X-Long: " + "z" * 92  # 100 octets
    data = invite(line)
    assert parse_message(data, Limits(max_line=100)).get("x-long") == "z" * 92
    exc = err(data, limits=Limits(max_line=99))
    assert exc.status == 400
    assert "too long" in str(exc)


def test_folded_header_lines_are_limited_per_line() -> None:
    data = invite("X-Fold: " + "a" * 50 + "\r\n " + "b" * 90)
    assert err(data, limits=Limits(max_line=80)).status == 400
    assert parse_message(data, Limits(max_line=100)).get("x-fold") == "a" * 50 + " " + "b" * 90


def test_start_line_length_limit() -> None:
    uri = "sip:" + "u" * 200 + "@example.com"
    data = invite().replace(b"INVITE sip:bob@example.com", b"INVITE " + uri.encode(), 1)
    assert isinstance(parse_message(data), Request)
    assert err(data, limits=Limits(max_line=100)).status == 400


# --- scalar ranges ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "ok"),
    [
        ("CSeq: 2147483647 INVITE", True),
        ("CSeq: 2147483648 INVITE", False),
        ("CSeq: 0 INVITE", True),
        ("CSeq: 36893488147419103232 INVITE", False),  # RFC 4475 §3.1.2.4
        ("CSeq: -1 INVITE", False),
        ("CSeq: INVITE", False),
        ("CSeq: 1", False),
        ("CSeq: 1 INV/ITE", False),
        ("CSeq:   0009   INVITE", True),
        ("CSeq: 1\tINVITE", True),  # LWS may be HTAB: Message.cseq used to raise ValueError
        ("CSeq: 1 \t INVITE", True),
    ],
)
def test_cseq_values(line: str, ok: bool) -> None:
    data = invite(replace={"CSeq": line})
    if ok:
        assert parse_message(data).cseq[1] == "INVITE"
        assert parse_message(data).cseq[0] in (2147483647, 0, 9, 1)
    else:
        assert err(data).status == 400


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("255", True), ("0068", True),
                                           ("256", False), ("300", False), ("-1", False),
                                           ("seventy", False)])
def test_max_forwards_values(value: str, ok: bool) -> None:
    data = invite(replace={"Max-Forwards": f"Max-Forwards: {value}"})
    if ok:
        assert parse_message(data).get("max-forwards") == value
    else:
        assert err(data).status == 400


@pytest.mark.parametrize(
    ("call_id", "ok"),
    [("abc@def", True), ("a.b-c!%*_+`'~()<>:\\\"/[]?{}@x", True), ("no spaces@x", False),
     ("a@b@c", False), ("", False), ("semi;colon", False)],
)
def test_call_id_values(call_id: str, ok: bool) -> None:
    data = invite(replace={"Call-ID": f"Call-ID: {call_id}"})
    if ok:
        assert parse_message(data).call_id == call_id
    else:
        assert err(data).status == 400


# --- MessageError.partial: answerable errors -----------------------------------------------


def test_validation_errors_carry_the_partial_message() -> None:
    data = invite(replace={"CSeq": "CSeq: many INVITE"})
    exc = err(data)
    assert isinstance(exc, MessageError)
    partial = exc.partial
    assert isinstance(partial, Request)
    assert partial.method == "INVITE"
    assert partial.top_via.branch == "z9hG4bK776asdhds"
    assert partial.tag("from") == "1928301774"
    # The edge can build the 400 from it (RFC 3261 §8.2.6.2).
    answer = make_response(partial, exc.status, to_tag="gw1")
    assert answer.status == 400
    assert answer.values("via") == ["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds"]
    assert answer.tag("to") == "gw1"


def test_errors_before_the_headers_split_have_no_partial() -> None:
    for data in (b"", b"\r\n\r\n", b"garbage", b"INVITE sip:x SIP/2.0\r\nVia SIP\r\n\r\n"):
        exc = err(data)
        assert exc.status == 400
        assert not isinstance(exc, MessageError)


def test_errors_in_responses_carry_a_partial_response() -> None:
    data = response().replace(b"CSeq: 314159", b"CSeq: 99999999999999")
    exc = err(data)
    assert isinstance(exc, MessageError)
    assert isinstance(exc.partial, Response)  # the edge must not answer a response


# --- URIs ----------------------------------------------------------------------------------


def test_sip_uri_parts() -> None:
    uri = parse_uri("sip:alice:secret@Example.COM:5070;transport=TCP;lr;maddr=239.255.255.1")
    assert isinstance(uri, SipUri)
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sip", "alice", "Example.COM", 5070)
    assert uri.params == (("transport", "TCP"), ("lr", None), ("maddr", "239.255.255.1"))
    assert uri.param("LR") == ""
    assert uri.param("ttl") is None
    assert uri.transport == "tcp"
    assert uri.hostport() == ("Example.COM", 5070)
    assert uri.text == "sip:alice:secret@Example.COM:5070;transport=TCP;lr;maddr=239.255.255.1"


def test_sips_uri_defaults() -> None:
    uri = parse_uri("SIPS:bob@example.com")
    assert isinstance(uri, SipUri)
    assert uri.scheme == "sips"
    assert uri.transport == "tcp"
    assert uri.hostport() == ("example.com", 5061)
    plain = parse_uri("sip:example.com")
    assert isinstance(plain, SipUri)
    assert (plain.user, plain.transport, plain.hostport()) == (None, "udp", ("example.com", 5060))


def test_user_part_with_semicolons_and_escapes() -> None:
    uri = parse_uri("sip:user;par=u%40example.net@example.com")  # RFC 4475 §3.1.1.9 semiuri
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.host, uri.params) == ("user;par=u%40example.net", "example.com", ())
    uri = parse_uri("sip:%61lice@example.com;%6C%72")
    assert isinstance(uri, SipUri)
    assert uri.user == "%61lice"  # escapes are carried, not decoded
    assert uri.params == (("%6C%72", None),)


def test_tel_uri() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com;ext=22")
    assert isinstance(uri, TelUri)
    assert uri.number == "+1-201-555-0123"
    assert uri.param("phone-context") == "example.com"
    assert uri.param("EXT") == "22"
    assert isinstance(parse_uri("TEL:7042"), TelUri)
    with pytest.raises(ProtocolError):
        parse_uri("tel:")
    with pytest.raises(ProtocolError):
        parse_uri("tel:+1;;x")


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[2001:db8::10]", "2001:db8::10", None),
        ("sip:user@[2001:db8::10]:5070", "2001:db8::10", 5070),
        ("sip:[2001:db8::10:5070]", "2001:db8::10:5070", None),  # RFC 5118 §4.3 ambiguous
        ("sip:[::ffff:192.0.2.10]:19823", "::ffff:192.0.2.10", 19823),
        ("sip:[2001:db8:::192.0.2.1]", "2001:db8:::192.0.2.1", None),  # RFC 5118 §4.10
        ("sip:192.0.2.1:1", "192.0.2.1", 1),
        ("sip:host.example.com:65535", "host.example.com", 65535),
    ],
)
def test_hosts_and_ports(text: str, host: str, port: int | None) -> None:
    uri = parse_uri(text + ";transport=udp")
    assert isinstance(uri, SipUri)
    assert (uri.host, uri.port) == (host, port)


@pytest.mark.parametrize(
    "text",
    [
        "sip:2001:db8::10",  # RFC 5118 §4.2: IPv6 without brackets
        "sip:[2001:db8::10",
        "sip:[]",
        "sip:[zz::1]",
        "sip:[192.0.2.1]",
        "sip:256.1.1.1",
        "sip:host:0",
        "sip:host:65536",
        "sip:host:",
        "sip:host:²",  # ASCII digits only
        "sip:host:٥٠٦٠",
        "sip:",
        "sip:user@",
        "sip:bob@exa mple.com",
        "sip:bob@example.com;;lr",
        "sip:bob@example.com;",
        "<sip:bob@example.com>",
        "nocolon",
        "1abc:opaque",
        "sip:bob@example.com; lr",
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(ProtocolError):
        parse_uri(text, "Request-URI")


def test_other_schemes_are_carried() -> None:
    uri = parse_uri("nobodyKnowsThisScheme:totallyopaquecontent")
    assert uri == OtherUri("nobodyknowsthisscheme", "nobodyKnowsThisScheme:totallyopaquecontent")
    assert isinstance(parse_uri("soap.beep://192.0.2.103:3002"), OtherUri)


def test_uri_headers_only_outside_the_request_uri() -> None:
    text = "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    uri = parse_uri(text, "Contact")
    assert isinstance(uri, SipUri)
    assert uri.host == "example.com"
    with pytest.raises(ProtocolError):
        parse_uri(text, "Request-URI")  # RFC 3261 §19.1.5, RFC 4475 §3.1.2.11


def test_ipv6_request_uri_and_via_in_a_message() -> None:
    data = invite(replace={"Via": "Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK6"}).replace(
        b"sip:bob@example.com SIP/2.0", b"sip:bob@[2001:db8::10]:5070;transport=udp SIP/2.0", 1
    )
    msg = parse_message(data)
    assert isinstance(msg, Request)
    assert msg.uri == "sip:bob@[2001:db8::10]:5070;transport=udp"
    assert (msg.top_via.host, msg.top_via.port) == ("2001:db8::1", 5060)
    assert str(msg.top_via) == "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK6"


# --- Via -----------------------------------------------------------------------------------


def test_via_lws_and_case() -> None:
    via = parse_via("SIP / 2.0 / udp  host.example.com : 5060 ;branch=z9hG4bKx; rport")
    assert (via.transport, via.host, via.port) == ("UDP", "host.example.com", 5060)
    assert via.params == (("branch", "z9hG4bKx"), ("rport", None))
    changed = via.with_param("rport", "5071").with_param("received", "192.0.2.7")
    assert str(changed) == (
        "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bKx;rport=5071;received=192.0.2.7"
    )


@pytest.mark.parametrize(
    "text",
    ["SIP/2.0/UDP", "SIP/7.0/UDP host", "HTTP/2.0/UDP host", "SIP/2.0/UDP host;;branch=x",
     "SIP/2.0/UDP host:port", "", "SIP/2.0/UDP host;branch=x;"],
)
def test_bad_vias(text: str) -> None:
    with pytest.raises(ProtocolError):
        parse_via(text)


def test_bad_via_in_a_message_is_400() -> None:
    exc = err(invite("Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKa;;,;,,"))
    assert exc.status == 400


# --- byte-exactness ------------------------------------------------------------------------

ODD_BUT_VALID = [
    invite(),
    invite(body=SDP),
    invite("Subject:no space after colon", "X-Trailing: spaces   ", "X-Empty:"),
    invite("X-Folded: one\r\n two\r\n\t\tthree", "Supported: timer , 100rel,replaces"),
    invite(replace={"Via": "v:SIP/2.0/UDP 192.0.2.1:5060 ; branch = z9hG4bK776asdhds ; rport"}),
    invite("X-Utf8: Grüße, 世界", "x-LOWER: and-UPPER"),
    invite("X-Raw: \x01\x7f"),
    response("SIP/2.0 200 OK", "Record-Route: <sip:p1;lr>,\r\n <sip:p2;lr>"),
]


@pytest.mark.parametrize("data", ODD_BUT_VALID)
def test_parse_serialize_is_byte_exact(data: bytes) -> None:
    assert parse_message(data).serialize() == data


def test_invalid_utf8_is_carried_byte_exact() -> None:
    data = invite("X-Bytes: \xff\xfe".encode("latin-1").decode("latin-1")).replace(
        b"\xc3\xbf\xc3\xbe", b"\xff\xfe"
    )
    msg = parse_message(data)
    assert b"X-Bytes: \xff\xfe" in msg.serialize()
    assert msg.serialize() == data


def test_untouched_headers_survive_edits_byte_for_byte() -> None:
    data = invite(
        "X-Folded: one\r\n two",
        replace={"Via": "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa , "
                        "SIP/2.0/UDP b.example.com;branch=z9hG4bKb"},
    )
    msg = parse_message(data)
    assert isinstance(msg, Request)
    stripped = msg.with_headers(strip_top_value(msg.headers, "via"))
    assert stripped.values("via") == ["SIP/2.0/UDP b.example.com;branch=z9hG4bKb"]
    ours = Header.make("via", "SIP/2.0/UDP gw.example.net;branch=z9hG4bKgw")
    pushed = msg.with_headers((ours, *msg.headers))
    assert pushed.serialize().startswith(
        b"INVITE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP gw.example.net;branch=z9hG4bKgw\r\n"
    )
    assert pushed.serialize().replace(b"Via: SIP/2.0/UDP gw.example.net;branch=z9hG4bKgw\r\n",
                                      b"", 1) == data
    for edited in (stripped, pushed):
        kept = [h.raw for h in edited.headers if h.name not in ("via",)]
        assert kept == [h.raw for h in msg.headers if h.name not in ("via",)]
    replaced = replace_top_value(msg.headers, "via", "SIP/2.0/UDP a.example.com;branch=z9hG4bKa"
                                                     ";received=192.0.2.1")
    assert parse_via(Request(replaced, b"", "INVITE", "sip:x").get("via") or "").param(
        "received") == "192.0.2.1"


def test_header_make_spelling() -> None:
    assert Header.make("call-id", "x").raw == b"Call-ID: x"
    assert Header.make("cseq", "1 INVITE").raw == b"CSeq: 1 INVITE"
    assert Header.make("record-route", "<sip:a;lr>").raw == b"Record-Route: <sip:a;lr>"
    assert Header.make("x-foo-bar", "1").raw == b"X-Foo-Bar: 1"
    assert Header.make("X-MiXed", "1") == Header("x-mixed", b"X-MiXed: 1", 7)
    assert Header.make("v", "SIP/2.0/UDP h").name == "via"


def test_make_response_round_trips() -> None:
    msg = parse_message(invite("Timestamp: 54", body=SDP))
    assert isinstance(msg, Request)
    trying = make_response(msg, 100)
    assert trying.reason == "Trying"
    assert trying.get("timestamp") == "54"
    assert trying.tag("to") is None
    final = make_response(msg, 486, to_tag="abc", extra=(Header.make("retry-after", "30"),))
    again = parse_message(final.serialize())
    assert isinstance(again, Response)
    assert (again.status, again.reason, again.tag("to")) == (486, "Busy Here", "abc")
    assert again.get("retry-after") == "30"
    assert again.get("content-length") == "0"
    assert again.call_id == msg.call_id
    assert again.cseq == msg.cseq
    assert not again.has("timestamp")


@pytest.mark.parametrize(
    "bad",
    [b"CSeq:\r 314159 INVITE", b"CSeq: 314159\nINVITE", b"X-A: 1\rX-B: 2", b"X-A: 1\n\tfolded"],
)
def test_bare_cr_or_lf_in_the_header_section(bad: bytes) -> None:
    # Found by the fuzz test: "CSeq:\r 1 INVITE" passed validation and then crashed
    # Message.cseq with ValueError. RFC 3261 §7: every header line ends in CRLF.
    data = invite(replace={"CSeq": ""}).replace(b"Content-Length", bad + b"\r\nContent-Length")
    assert err(data).status == 400


def test_bare_cr_or_lf_in_the_start_line() -> None:
    data = invite().replace(b"sip:bob@example.com SIP", b"sip:bob@\rexample.com SIP", 1)
    assert err(data).status == 400


def test_via_allows_a_tab_as_the_lws_before_sent_by() -> None:
    """RFC 3261 §25.1: LWS between sent-protocol and sent-by may be a horizontal tab."""
    via = parse_via("SIP/2.0/UDP\thost.example.com:5070;branch=z9hG4bKtab")
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP", "host.example.com", 5070, "z9hG4bKtab")


# ---- what the parser learns: shapes, checked lines, parsed values ----------------------------


def test_learnt_shape_still_refuses_a_bad_field_and_a_line_without_colon() -> None:
    parse_message(invite())  # the shape and every line are learnt
    assert err(invite(replace={"From": "From: <sip:alice@example.com"})).status == 400
    bad_line = invite().replace(b"Max-Forwards: 70", b"Max-Forwards 70")
    assert "without a name and colon" in str(err(bad_line))
    twice = invite().replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 INVITE\r\nCSeq: 1 INVITE")
    assert "more than one cseq" in str(err(twice))


def test_learnt_shape_with_folding_and_compact_names_parses_the_same() -> None:
    plain = parse_message(invite("Subject: lunch"))
    folded = parse_message(invite("Subject: lunch\r\n today"))
    compact = parse_message(invite("s: lunch"))
    assert plain.get("subject") == "lunch"
    assert folded.get("subject") == "lunch today"
    assert compact.get("subject") == "lunch"
    again = parse_message(invite("Subject: lunch"))
    assert again.headers == plain.headers and again == plain


def test_a_continuation_line_with_a_colon_is_not_taken_for_a_field() -> None:
    parse_message(invite("Subject: a", "X-Note: b"))  # the same number of names, learnt
    folded = parse_message(invite("Subject: a\r\n x: b"))
    assert folded.get("subject") == "a x: b" and not folded.has("x")


def test_learnt_tables_are_bounded() -> None:
    table: dict[int, int] = {}
    for i in range(CACHE_ENTRIES * 2 + 3):
        remember(table, i, i)
    assert 0 < len(table) <= CACHE_ENTRIES and table[CACHE_ENTRIES * 2 + 2] == CACHE_ENTRIES * 2 + 2


@pytest.mark.parametrize(("host", "transport"), [
    ("127.0.0.1", "udp"), ("::1", "udp"), ("GW.Example.COM", "tcp"),
])
def test_own_via_is_learnt_exactly_as_parsed(host: str, transport: str) -> None:
    me = Identity(host, {"udp": 5060, "tcp": 5061}, frozenset({host.lower()}))
    header = own_via(me, transport, "z9hG4bKsgabc.0", answered=True)  # type: ignore[arg-type]
    learnt = parse_message(wire("SIP/2.0 200 OK", [
        header.raw.decode(), *(h for h in BASE_HEADERS if not h.startswith("Via"))])).top_via
    assert learnt == parse_via.__wrapped__(header.value)
    assert learnt.branch == "z9hG4bKsgabc.0"


@pytest.mark.parametrize(("host", "inbound", "outbound", "from_tag"), [
    ("127.0.0.1", "udp", "udp", "1SIPpTag001"), ("::1", "udp", "tcp", "a.b-c!%*_+`'~"),
    ("GW.Example.COM", "tcp", "udp", None), ("10.0.0.1", "udp", "udp", '"q"'),
])
def test_own_record_route_is_learnt_exactly_as_parsed(
    host: str, inbound: str, outbound: str, from_tag: str | None
) -> None:
    me = Identity(host, {"udp": 5060, "tcp": 5061}, frozenset({host.lower()}))
    (header,) = record_route(me, inbound, outbound, from_tag, 1)  # type: ignore[arg-type]
    for value in split_unquoted(header.value, ","):
        assert route_uri(value) == parse_uri(parse_name_addr(value, "Route").uri, "Route")
