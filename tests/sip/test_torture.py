"""The SIP torture corpus (RFC 4475, RFC 5118) through the parser.

Every manifest row is parsed from its file in ../shared/sip-torture/: valid messages parse,
invalid ones raise ProtocolError with the status the RFC asks for, except where the RFC
text lets a proxy go on (ALLOWED below, each with the RFC's reason). A second set of
checks reads what the parser made of the tricky valid messages, and that every accepted
message serializes back byte-for-byte.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from sipguard.errors import ProtocolError
from sipguard.sip.message import Message, Request, Response, parse_via
from sipguard.sip.parser import MessageError, parse_message
from sipguard.sip.uri import OtherUri, SipUri, parse_uri

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "sip-torture"
pytestmark = pytest.mark.skipif(
    not (CORPUS / "manifest.tsv").is_file(), reason=f"torture corpus not found at {CORPUS}"
)


@dataclass(frozen=True)
class Row:
    file: str
    section: str
    name: str
    verdict: str
    what: str
    note: str

    @property
    def data(self) -> bytes:
        return (CORPUS / self.file).read_bytes()


def load_rows() -> list[Row]:
    if not (CORPUS / "manifest.tsv").is_file():
        return []
    with (CORPUS / "manifest.tsv").open(newline="", encoding="utf-8") as fh:
        return [
            Row(r["file"], r["rfc_section"], r["short_name"], r["verdict"],
                r["method_or_response"], r["note"])
            for r in csv.DictReader(fh, delimiter="\t")
        ]


ROWS = load_rows()
BY_NAME = {row.name: row for row in ROWS}

# Invalid messages a proxy may accept, with the RFC's reason. An allowance means "either
# outcome is conformant"; if the parser rejects, it must still be with the status given.
ALLOWED: dict[str, str] = {
    "baddate": (
        "RFC 4475 §3.1.2.12: rejecting is acceptable 'though an element shouldn't do that "
        "unless the contents of the Date header field were actually important to its "
        "processing'; a proxy never reads Date, and sipguard forwards it untouched."
    ),
}

# The status each invalid message calls for, where it is not 400.
STATUS = {
    "badvers": 505,  # RFC 4475 §3.1.2.16: "respond ... with a 505 Version Not Supported"
}
# Invalid messages rejected before the header section could be split into fields:
# there is no partial message to answer, so the edge drops them (RFC 4475 allows 400 or
# discarding for these; a response cannot be routed without Via).
NO_PARTIAL = {
    "lwsruri",  # §3.1.2.8: LWS in the Request-URI breaks the Request-Line itself
    "lwsstart",  # §3.1.2.9: extra SP between Request-Line elements
    "trws",  # §3.1.2.10: SP after SIP/2.0
    "baddn",  # archive quirk: the header section is never closed by an empty line
    "bigcode",  # §3.1.2.19: a response; dropped anyway
}
# Answerable, but their top Via itself is what is wrong: the edge copies the Via header
# into the answer (make_response never parses it) and sends it to the source address.
BROKEN_VIA = {
    "badinv01",  # §3.1.2.1: Via ends ";;,;,,"
    "badvers",  # §3.1.2.16: Via says SIP/7.0 as well
}


def test_manifest_is_complete() -> None:
    assert len(ROWS) == 61
    assert sum(r.file.startswith("rfc4475-") for r in ROWS) == 49
    assert sum(r.file.startswith("rfc5118-") for r in ROWS) == 12
    files = sorted(p.name for p in CORPUS.glob("rfc*.dat"))
    assert files == sorted(r.file for r in ROWS)


def test_corpus_checksums() -> None:
    sums = CORPUS / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip("no SHA256SUMS")
    checked = 0
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        name = name.lstrip("*").removeprefix("./")
        if name.startswith("rfc") and "/" not in name:
            assert hashlib.sha256((CORPUS / name).read_bytes()).hexdigest() == digest, name
            checked += 1
    assert checked == 61


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_verdict(row: Row) -> None:
    try:
        msg = parse_message(row.data)
    except ProtocolError as exc:
        assert row.verdict == "invalid", f"{row.section}: valid message rejected: {exc}"
        assert exc.status == STATUS.get(row.name, 400), row.section
        if row.name in NO_PARTIAL:
            assert not isinstance(exc, MessageError)
        else:
            assert isinstance(exc, MessageError), f"{row.section}: no partial to answer"
            if row.name not in BROKEN_VIA:
                assert exc.partial.top_via.host  # a response can go back by Via
        return
    if row.verdict == "invalid":
        assert row.name in ALLOWED, f"{row.section}: invalid message accepted ({row.note})"
    expected = Response if row.what.startswith("response") else Request
    assert isinstance(msg, expected)
    if isinstance(msg, Request):
        assert msg.method == row.what


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_accepted_messages_serialize_byte_for_byte(row: Row) -> None:
    try:
        msg = parse_message(row.data)
    except ProtocolError:
        return
    if row.name == "dblreq":  # RFC 4475 §3.1.1.8: octets after Content-Length are dropped
        first = row.data[: row.data.index(b"\r\n\r\n") + 4]
        assert msg.serialize() == first
    elif row.name == "inv2543":  # no Content-Length: serializing adds one
        assert msg.serialize() == row.data.replace(
            b"\r\n\r\n", b"\r\nContent-Length: %d\r\n\r\n" % len(msg.body), 1
        )
    else:
        assert msg.serialize() == row.data
    # The same message rebuilt from its parts (no wire bytes kept) serialises the same.
    assert msg.with_headers(msg.headers).serialize() == msg.serialize()


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_stream_parse_agrees(row: Row) -> None:
    """Over TCP the same messages frame by Content-Length; only the framing ones differ."""
    framing = {"clerr", "ncl", "mcl01", "inv2543", "baddn"}
    try:
        parse_message(row.data, stream=True)
    except ProtocolError:
        assert row.verdict == "invalid" or row.name in framing
    else:
        assert row.name not in framing - {"clerr"} and (
            row.verdict == "valid" or row.name in ALLOWED
        )


def test_baddn_terminated_variant_is_rejected_for_its_display_names() -> None:
    """RFC 4475 §3.1.2.15: the archive file fails on its missing empty line; the variant
    with it added must still fail, for the unquoted 'Bell, Alexander' display name."""
    variant = CORPUS / "variants" / "rfc4475-3.1.2.15-baddn.terminated.dat"
    with pytest.raises(MessageError) as info:
        parse_message(variant.read_bytes())
    assert info.value.status == 400
    assert "display name" in str(info.value)


def get(name: str) -> Message:
    return parse_message(BY_NAME[name].data)


def test_wsinv_folding_and_whitespace() -> None:
    msg = get("wsinv")
    assert isinstance(msg, Request)
    assert msg.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert msg.cseq == (9, "INVITE")
    assert msg.get("max-forwards") == "0068"
    assert msg.tag("to") == "1918181833n"
    assert msg.tag("from") == "98asjd8"
    assert msg.get("subject") == ""
    assert msg.get("unknownheaderwithunusualvalue") == ";;,,;;,;"
    assert msg.get("newfangledheader") == "newfangled value continued newfangled value"
    vias = [parse_via(v) for v in msg.values("via")]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert len(msg.body) == 150


def test_intmeth_and_esc02_methods() -> None:
    msg = get("intmeth")
    assert isinstance(msg, Request)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.cseq[1] == msg.method
    msg = get("esc02")
    assert isinstance(msg, Request)
    assert msg.method == "RE%47IST%45R"  # not REGISTER: % escapes mean nothing in a method
    # "C%6Fntact" is an unknown extension header, not a third Contact.
    assert msg.values("contact") == [
        "<sip:alias1@host1.example.com>", "<sip:alias3@host3.example.com>",
    ]
    assert msg.get("c%6fntact") == "<sip:alias2@host2.example.com>"


def test_dblreq_keeps_only_the_first_message() -> None:
    msg = get("dblreq")
    assert isinstance(msg, Request)
    assert msg.method == "REGISTER"
    assert msg.body == b""


def test_inv2543_body_is_the_rest_of_the_datagram() -> None:
    row = BY_NAME["inv2543"]
    msg = get("inv2543")
    assert msg.body == row.data.split(b"\r\n\r\n", 1)[1]
    assert not msg.has("content-length")
    assert msg.top_via.branch == ""  # RFC 2543: no magic cookie, no branch


def test_mpart01_binary_body_is_intact() -> None:
    msg = get("mpart01")
    assert msg.body == BY_NAME["mpart01"].data.split(b"\r\n\r\n", 1)[1]
    assert int(msg.get("content-length") or "-1") == len(msg.body)
    assert b"\x00" in msg.body


def test_reason_phrases() -> None:
    unreason = get("unreason")
    assert isinstance(unreason, Response)
    assert unreason.status == 200
    assert unreason.reason.startswith("= 2**3 * 5**2 но сто девяносто девять")
    noreason = get("noreason")
    assert isinstance(noreason, Response)
    assert (noreason.status, noreason.reason) == (100, "")


def test_long_values() -> None:
    msg = get("longreq")
    assert len(msg.values("via")) == 34
    assert len(msg.call_id) > 100
    assert len(msg.get("from") or "") > 500


def test_transports_and_ipv6() -> None:
    msg = get("transports")
    assert [parse_via(v).transport for v in msg.values("via")] == [
        "UDP", "SCTP", "TLS", "UNKNOWN", "TCP",
    ]
    good = get("ipv6-good")
    assert isinstance(good, Request)
    uri = parse_uri(good.uri)
    assert isinstance(uri, SipUri)
    assert (uri.host, uri.port) == ("2001:db8::10", None)
    assert good.top_via.host == "2001:db8::9:1"
    ambiguous = get("port-ambiguous")
    assert isinstance(ambiguous, Request)
    uri = parse_uri(ambiguous.uri)
    assert isinstance(uri, SipUri)
    assert (uri.host, uri.port) == ("2001:db8::10:5070", None)  # RFC 5118 §4.3
    unambiguous = get("port-unambiguous")
    assert isinstance(unambiguous, Request)
    uri = parse_uri(unambiguous.uri)
    assert isinstance(uri, SipUri)
    assert (uri.host, uri.port) == ("2001:db8::10", 5070)
    mult = [parse_via(v) for v in get("mult-ip-in-header").values("via")]
    assert [(v.host, v.port, v.transport) for v in mult] == [
        ("2001:db8::9:1", 6050, "UDP"), ("192.0.2.1", None, "UDP"),
        ("2001:db8::9:255", None, "TCP"),
    ]
    assert mult[2].param("received") == "192.0.2.200"


def test_semiuri_user_part() -> None:
    msg = get("semiuri")
    assert isinstance(msg, Request)
    uri = parse_uri(msg.uri)
    assert isinstance(uri, SipUri)
    assert uri.user == "user;par=u%40example.net"
    assert uri.host == "example.com"


def test_unknown_schemes_are_accepted_not_routed() -> None:
    for name in ("unkscm", "novelsc"):
        msg = get(name)
        assert isinstance(msg, Request)
        assert isinstance(parse_uri(msg.uri), OtherUri)


def test_zero_max_forwards_parses() -> None:
    assert get("zeromf").get("max-forwards") == "0"  # the proxy answers 483, not the parser
