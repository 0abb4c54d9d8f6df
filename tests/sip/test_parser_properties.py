"""Hypothesis properties of the parser: a round trip over generated messages, and the fuzz
invariant "parses, or raises ProtocolError, nothing else" (h11's fuzz/afl-server.py idea)
for parse_message and the StreamFramer, over arbitrary and mutated bytes."""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sipguard.errors import ProtocolError
from sipguard.sip import message, parser, uri
from sipguard.sip.grammar import TOKEN_CHARS, WORD_CHARS
from sipguard.sip.message import Message, Request, Response
from sipguard.sip.parser import StreamFramer, parse_message
from sipguard.sip.uri import parse_name_addr, parse_uri

# SIPGUARD_FUZZ_SCALE=100 makes a deep run out of the quick one the suite does.
SCALE = int(os.environ.get("SIPGUARD_FUZZ_SCALE", "1"))
SLOW_OK = [HealthCheck.too_slow]
SETTINGS = settings(max_examples=200 * SCALE, deadline=None, suppress_health_check=SLOW_OK)

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
tokens = st.text(alphabet=sorted(TOKEN_CHARS), min_size=1, max_size=12)
words = st.text(alphabet=sorted(WORD_CHARS), min_size=1, max_size=16)
labels = st.text(alphabet=ALNUM, min_size=1, max_size=8)
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join).filter(
    lambda h: not h.replace(".", "").isdigit()
)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8).map(
    lambda g: "[" + ":".join(f"{x:x}" for x in g) + "]"
)
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.one_of(st.none(), st.integers(1, 65535))
user_chars = ALNUM + "-_.!~*'()&=+$,;?/%"
users = st.one_of(st.none(), st.text(alphabet=user_chars, min_size=1, max_size=10))
param_lists = st.lists(
    st.tuples(tokens, st.one_of(st.none(), tokens)), max_size=3
).map(lambda ps: "".join(f";{k}" if v is None else f";{k}={v}" for k, v in ps))


@st.composite
def sip_uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sip", "sips", "SIP"]))
    user = draw(users)
    port = draw(ports)
    hostport = draw(hosts) + (f":{port}" if port else "")
    return f"{scheme}:{user + '@' if user else ''}{hostport}{draw(param_lists)}"


tel_uris = st.tuples(
    st.text(alphabet="0123456789-.()", min_size=1, max_size=12), param_lists
).map(lambda t: f"tel:+{t[0]}{t[1]}")
uris = st.one_of(sip_uris(), tel_uris)

qdtext = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
    max_size=10,
)


@st.composite
def quoted_strings(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(qdtext, st.sampled_from(['\\"', "\\\\", "\\a"])), max_size=4))
    return '"' + "".join(parts) + '"'


display_names = st.one_of(
    st.just(""),
    quoted_strings().map(lambda q: q + " "),
    st.lists(tokens, min_size=1, max_size=3).map(lambda ts: " ".join(ts) + " "),
)


@st.composite
def name_addrs(draw: st.DrawFn, tag: bool) -> str:
    uri = draw(uris)
    value = f"{draw(display_names)}<{uri}>"
    if tag:
        value += f";tag={draw(tokens)}"
    return value


@st.composite
def vias(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "udp"]))
    port = draw(ports)
    extra = draw(param_lists)
    hostport = draw(hosts) + (f":{port}" if port else "")
    return f"SIP/2.0/{transport} {hostport};branch=z9hG4bK{draw(tokens)}{extra}"


# Header values the parser carries opaquely: any visible text (UTF-8 too), inner spaces.
opaque_values = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="\r\n"),
    max_size=30,
).map(str.strip)
separators = st.sampled_from([": ", ":", " : ", ":\t", ":   "])
folds = st.sampled_from(["", "\r\n ", "\r\n\t", "\r\n   "])


@dataclass
class Built:
    data: bytes
    start: tuple[str, ...]
    call_id: str
    cseq: int
    method: str
    branch_count: int
    body: bytes


def field(draw: st.DrawFn, name: str, value: str) -> str:
    return f"{name}{draw(separators)}{value}"


@st.composite
def messages(draw: st.DrawFn) -> Built:
    is_request = draw(st.booleans())
    method = draw(st.one_of(st.sampled_from(["INVITE", "ACK", "BYE", "OPTIONS", "CANCEL"]), tokens))
    if is_request:
        start = (method, draw(uris))
        first = f"{start[0]} {start[1]} SIP/2.0"
    else:
        code = draw(st.integers(100, 699))
        reason = draw(opaque_values)
        start = (str(code), reason)
        first = f"SIP/2.0 {code} {reason}"
    via_values = draw(st.lists(vias(), min_size=1, max_size=4))
    call_id = draw(words) + draw(st.one_of(st.just(""), words.map(lambda w: "@" + w)))
    cseq = draw(st.integers(0, 2**31 - 1))
    body = draw(st.binary(max_size=80))
    lines: list[str] = []
    # Vias: some comma-joined, some on their own lines, names in any spelling.
    i = 0
    while i < len(via_values):
        n = draw(st.integers(1, len(via_values) - i))
        name = draw(st.sampled_from(["Via", "v", "VIA", "via"]))
        lines.append(field(draw, name, ", ".join(via_values[i : i + n])))
        i += n
    required = [
        field(draw, draw(st.sampled_from(["From", "f", "FROM"])), draw(name_addrs(True))),
        field(draw, draw(st.sampled_from(["To", "t"])), draw(name_addrs(not is_request))),
        field(draw, draw(st.sampled_from(["Call-ID", "i", "call-id"])), call_id),
        field(draw, "CSeq", f"{cseq}{draw(folds) or ' '}{method}"),
        field(draw, "Max-Forwards", str(draw(st.integers(0, 255)))),
    ]
    extra = [
        field(draw, name, value)
        for name, value in draw(st.lists(st.tuples(tokens.filter(lambda t: len(t) > 1),
                                                    opaque_values), max_size=4))
    ]
    extra = [
        e for e in extra
        if e.split(":", 1)[0].strip().lower() not in {
            "via", "from", "to", "call-id", "cseq", "max-forwards", "content-length", "contact",
            "content-type",
        }
    ]
    folded = [draw(folds).join(line.rsplit(" ", 1)) if " " in line.split(":", 1)[1].strip()
              else line for line in extra]
    headers = draw(st.permutations([*required, *folded]))
    length = field(draw, draw(st.sampled_from(["Content-Length", "l"])), str(len(body)))
    text = "\r\n".join([first, *lines, *headers, length]) + "\r\n\r\n"
    return Built(text.encode() + body, start, call_id, cseq, method, len(via_values), body)


@SETTINGS
@given(messages())
def test_round_trip(built: Built) -> None:
    for stream in (False, True):
        msg = parse_message(built.data, stream=stream)
        if isinstance(msg, Request):
            assert (msg.method, msg.uri) == built.start
        else:
            assert isinstance(msg, Response)
            assert (str(msg.status), msg.reason) == built.start
        assert msg.call_id == built.call_id
        assert msg.cseq == (built.cseq, built.method)
        assert len(msg.values("via")) == built.branch_count
        assert msg.top_via.branch.startswith("z9hG4bK")
        assert msg.body == built.body
        assert msg.serialize() == built.data
        raw_lines = built.data.split(b"\r\n\r\n", 1)[0]
        assert b"\r\n".join(h.raw for h in msg.headers) == raw_lines.split(b"\r\n", 1)[1]


@settings(max_examples=80 * SCALE, deadline=None, suppress_health_check=SLOW_OK)
@given(st.lists(messages(), min_size=1, max_size=4), st.data())
def test_stream_framer_splits_generated_messages(built: list[Built], data: st.DataObject) -> None:
    stream = b"".join(b.data for b in built)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    framer = StreamFramer()
    frames: list[bytes] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        framer.feed(stream[prev:cut])
        prev = cut
        while (frame := framer.next_message()) is not None:
            frames.append(frame)
    assert frames == [b.data for b in built]


@SETTINGS
@given(uris)
def test_uri_round_trip(text: str) -> None:
    uri = parse_uri(text)
    assert uri.text == text


@SETTINGS
@given(name_addrs(True))
def test_name_addr_parses(text: str) -> None:
    addr = parse_name_addr(text, "From")
    assert addr.param("tag")
    assert addr.uri in text


# Via values in the plain form `parse_via` reads with one match, and near it: each piece
# plain or a variant that sends it the long way (LWS, case, IPv6, quoted or empty values).
plain_params = st.lists(
    st.tuples(tokens, st.one_of(st.none(), tokens, hostnames, ipv4)), max_size=4
).map(lambda ps: "".join(f";{k}" if v is None else f";{k}={v}" for k, v in ps))


def _via_pieces(plain: bool) -> st.SearchStrategy[str]:
    def piece(usual: st.SearchStrategy[str], *odd: str) -> st.SearchStrategy[str]:
        return usual if plain else st.one_of(usual, st.sampled_from(odd))

    return st.tuples(
        piece(st.just("SIP/2.0/"), "sip/2.0/", "SIP / 2.0 / ", "SIP/2.1/"),
        piece(st.sampled_from(["UDP", "tcp", "TLS", "SCTP", "WS"]), "U DP", ""),
        piece(st.just(" "), "  ", "\t", ""),
        piece(st.one_of(hostnames, ipv4), "h-", "-h", "a..b", "256.1.1.1", "1.2.3", "h_x",
              "[::1]", ""),
        piece(ports.map(lambda p: f":{p}" if p else ""), ":0", ":65536", ":", ":5060 ", ":5060x",
              ":x"),
        piece(plain_params, ";", ";x=", ';x="q v"', " ;rport", ";branch = z9hG4bK1", "; x"),
    ).map("".join)


via_texts = st.one_of(_via_pieces(True), _via_pieces(False))


@SETTINGS
@example("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-1-0;rport")
@example("SIP/2.0/UDP host:5060x;branch=z9hG4bK1")  # a port with more after it: refused
@given(via_texts)
def test_plain_vias_read_as_the_full_parser_reads_them(text: str) -> None:
    """The one-match path of parse_via gives what the full parser gives, or fails as it does."""
    fully = message._parse_via_fully
    try:
        expected = fully(text)
    except ProtocolError:
        expected = None
    message.parse_via.cache_clear()
    try:
        got = message.parse_via(text)
    except ProtocolError:
        got = None
    assert got == expected
    if got is not None and expected is not None:
        assert got.params == expected.params and got.branch == expected.branch


# --- fuzz: parses, or raises ProtocolError, nothing else -----------------------------------

SEED = (
    b"INVITE sip:bob@[2001:db8::1]:5060;transport=tcp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport, SIP/2.0/TCP h:1;branch=z9hG4bK2\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob \\"B\\"" <sip:bob@example.com>\r\n'
    b"f: Alice <sip:alice@example.com;user=phone>;tag=1\r\n"
    b"i: abc@def\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:a@192.0.2.1>;expires=3600, *\r\n"
    b"Subject: folded\r\n line\r\n"
    b"Content-Length: 4\r\n\r\nbody"
)
SPECIAL = [b"\r\n", b"\r", b"\n", b" ", b"\t", b'"', b"\\", b"<", b">", b";", b",", b":", b"@",
           b"[", b"]", b"=", b"%", b"\x00", b"\xff", b"\xc2\xb2", b"\xd9\xa3", b"9" * 30, b"-1"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([SEED, SEED.replace(b"INVITE", b"ACK"),
                                           b"SIP/2.0 200 OK\r\n" + SEED.split(b"\r\n", 1)[1]])))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "dup", "lws"]))
        if op == "lws":  # a space becomes other legal or illegal whitespace
            spaces = [i for i, c in enumerate(data) if c == 0x20]
            if spaces:
                i = spaces[draw(st.integers(0, len(spaces) - 1))]
                data[i : i + 1] = draw(st.sampled_from([b"\t", b" \t ", b"\r\n ", b"  "]))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(SPECIAL))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "replace":
            data[pos : pos + 1] = draw(st.sampled_from(SPECIAL))
        else:
            data[pos:pos] = data[max(0, pos - 20) : pos]
    return bytes(data)


def exercise(msg: Message) -> None:
    """What the proxy reads from a parsed message must not crash either."""
    msg.serialize()
    _ = (msg.call_id, msg.cseq, msg.top_via, msg.tag("from"), msg.tag("to"))
    for name in ("via", "route", "record-route", "contact"):
        msg.values(name)


def check_parse(data: bytes) -> None:
    for stream in (False, True):
        try:
            msg = parse_message(data, stream=stream)
        except ProtocolError:
            continue
        assert isinstance(msg, Request | Response)
        exercise(msg)


@settings(max_examples=500 * SCALE, deadline=None)
@given(st.binary(max_size=300))
@example(b"SIP/2.0 1\xc2\xb23 OK\r\n\r\n")
@example(SEED.replace(b"192.0.2.1:5060", b"192.0.2.1:\xc2\xb2"))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    check_parse(data)


@settings(max_examples=800 * SCALE, deadline=None)
@given(mutated())
@example(SEED.replace(b"CSeq: 1 INVITE", b"CSeq: 1\tINVITE"))
def test_fuzz_mutated_messages(data: bytes) -> None:
    check_parse(data)


@settings(max_examples=300 * SCALE, deadline=None)
@given(st.lists(st.one_of(mutated(), st.binary(max_size=40), st.just(b"\r\n\r\n")), max_size=5),
       st.integers(1, 50))
def test_fuzz_stream_framer(chunks: list[bytes], size: int) -> None:
    stream = b"".join(chunks)
    framer = StreamFramer()
    for i in range(0, len(stream), size):
        framer.feed(stream[i : i + size])
        try:
            while (frame := framer.next_message()) is not None:
                check_parse(frame)
        except ProtocolError:
            return  # the connection would be closed


def _forget_everything_learnt() -> None:
    """Empty every table the parser and the message model learn from what they read."""
    for table in (parser._SHAPES, parser._CHECKED, parser._GOOD, parser._STATUS_LINES,
                  parser._LENGTHS, parser._NAMES, message._TOP_VIAS, message._CSEQS,
                  message._TAGS):
        table.clear()
    message.parse_via.cache_clear()
    uri.parse_uri.cache_clear()


def _outcome(data: bytes, stream: bool) -> object:
    try:
        msg = parse_message(data, stream=stream)
    except ProtocolError as exc:
        return ("error", exc.status, str(exc))
    try:
        read: object = (msg.call_id, msg.cseq, msg.top_via, msg.tag("from"), msg.tag("to"))
    except ProtocolError as exc:
        read = ("unreadable", str(exc))
    return (msg, msg.serialize(), read)


@settings(max_examples=400 * SCALE, deadline=None)
@given(mutated(), st.booleans())
def test_what_the_parser_learnt_never_changes_a_verdict(data: bytes, stream: bool) -> None:
    _forget_everything_learnt()
    cold = _outcome(data, stream)
    for seed in (SEED, data, data):  # learn the seed's lines, then this message's
        _outcome(seed, stream)
    assert _outcome(data, stream) == cold
