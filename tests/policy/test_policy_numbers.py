"""Number normalisation: every way of writing a number gives the same E.164."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.policy.numbers import Numbers, addr_uri, uri_number
from sipguard.sip.parser import parse_message

US = Numbers("US")
US9 = Numbers("US", ("9",))
GB = Numbers("GB")

# Real area codes (NANP) and exchanges [2-9]XX; libphonenumber decides which are valid.
AREA_CODES = ["415", "212", "305", "512", "808", "602", "917", "202", "617", "907", "787"]
SEPS = st.sampled_from([" ", "-", ".", "", "  "])


@st.composite
def nanp_numbers(draw: st.DrawFn) -> tuple[str, str, str]:
    npa = draw(st.sampled_from(AREA_CODES))
    nxx = draw(st.integers(200, 999).map(str))
    line = draw(st.integers(0, 9999).map(lambda n: f"{n:04d}"))
    return npa, nxx, line


def formats(npa: str, nxx: str, line: str, sep: str) -> list[str]:
    national = f"{npa}{nxx}{line}"
    return [
        f"+1 {npa} {nxx} {line}",
        f"({npa}) {nxx}-{line}",
        f"1-{npa}-{nxx}-{line}",
        f"001{national}",
        f"011 1 {npa}{sep}{nxx}{sep}{line}",
        f"+1-{npa}-{nxx}-{line}",
        f"{npa}{sep}{nxx}{sep}{line}",
        f"1{sep}{npa}.{nxx}.{line}",
        national,
        "+1" + national,
    ]


def reference(text: str, region: str = "US") -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@given(nanp_numbers(), SEPS)
def test_every_format_gives_the_same_e164(parts: tuple[str, str, str], sep: str) -> None:
    expected = reference("+1" + "".join(parts))
    results = {US.e164(f) for f in formats(*parts, sep)}
    assert results == {expected}


@given(nanp_numbers(), SEPS)
def test_every_format_behind_a_dial_prefix(parts: tuple[str, str, str], sep: str) -> None:
    """strip_prefixes = ["9"]: "9" + any format is the same number; "+" numbers need none."""
    expected = reference("+1" + "".join(parts))
    assert {US9.e164("9" + f) for f in formats(*parts, sep)} == {expected}
    assert {US9.e164(f) for f in formats(*parts, sep) if f[0] == "+"} == {expected}


@given(nanp_numbers(), SEPS)
def test_tel_uris(parts: tuple[str, str, str], sep: str) -> None:
    npa, nxx, line = parts
    expected = reference("+1" + "".join(parts))
    assert US.e164(uri_number(f"tel:+1-{npa}-{nxx}-{line}")) == expected
    assert US.e164(uri_number(f"tel:{nxx}-{line};phone-context=+1-{npa}")) == expected
    assert US.e164(uri_number(f"sip:+1{npa}{nxx}{line};npdi@gw.example.com;user=phone")) == (
        expected
    )


@settings(max_examples=500)
@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_nanp_fast_path_agrees_with_libphonenumber(digits: str) -> None:
    """The NPA-NXX validity cache never disagrees with a full parse."""
    fresh = Numbers("US")
    assert fresh.e164(digits) == reference("+1" + digits)
    assert US.e164(digits) == reference("+1" + digits)  # the warm, shared cache


@settings(max_examples=200)
@given(st.text(alphabet="0123456789+-() .#*abc", max_size=20))
def test_anything_gives_e164_or_none(text: str) -> None:
    result = US.e164(text)
    assert result is None or (result[0] == "+" and result[1:].isdigit())


@pytest.mark.parametrize(
    "text",
    ["020 7946 0958", "+44 20 7946 0958", "0044 20 7946 0958", "+44-20-7946-0958"],
)
def test_gb_formats(text: str) -> None:
    assert GB.e164(text) == "+442079460958"


def test_gb_01xx_numbers_are_not_international() -> None:
    assert GB.e164("0114 496 0000") == "+441144960000"  # Sheffield, not "011" + 4496...


@pytest.mark.parametrize(
    "text", ["", "+", "555", "5552671", "911", "anonymous", "+1 415 555 267", "1234567890123456",
             "*67 415 555 2671", "٤١٥٥٥٥٢٦٧١", "+1 011 555 2671"],
)
def test_invalid_or_impossible(text: str) -> None:
    assert US.e164(text) is None


def test_international_from_a_us_dialer() -> None:
    assert US.e164("011 44 20 7946 0958") == "+442079460958"
    assert US.e164("0044 20 7946 0958") == "+442079460958"
    assert US.e164("+44 20 7946 0958") == "+442079460958"


def test_prefix_only_stripped_once_and_not_from_e164() -> None:
    assert US9.e164("9") is None
    assert US9.e164("+1 415 555 2671") == "+14155552671"


@pytest.mark.parametrize(
    ("uri", "user"),
    [
        ("sip:+14155552671@gw.example.com;user=phone", "+14155552671"),
        ("sips:4155552671:secret@gw.example.com", "4155552671"),
        ("sip:%2B14155552671@gw", "+14155552671"),
        ("sip:gw.example.com", ""),
        ("tel:+1-415-555-2671;ext=12", "+1-415-555-2671"),
        ("mailto:bob@example.com", ""),
        ("nonsense", ""),
    ],
)
def test_uri_number(uri: str, user: str) -> None:
    assert uri_number(uri) == user


def test_addr_uri() -> None:
    assert addr_uri('"Bob" <sip:+1415@x>;tag=1') == "sip:+1415@x"
    assert addr_uri("sip:+1415@x;tag=1") == "sip:+1415@x"
    assert addr_uri("<tel:+1415") == "tel:+1415"


def invite(*extra: bytes, ruri: bytes = b"sip:4155552671@gw") -> bytes:
    return (
        b"INVITE " + ruri + b" SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.1.0.5:5060;branch=z9hG4bK1\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: \"Bob\" <tel:+1-212-555-0199>\r\n"
        b"From: <sip:+13055550100@10.1.0.5>;tag=a1\r\n"
        b"Call-ID: c1@10.1.0.5\r\nCSeq: 1 INVITE\r\n" + b"".join(e + b"\r\n" for e in extra)
        + b"Content-Length: 0\r\n\r\n"
    )


def test_called_number_sources() -> None:
    req = parse_message(invite(b"X-Dialed-Number: (617) 555-0123"))
    assert US.called_raw(req, "ruri") == "4155552671"
    assert US.called_raw(req, "to") == "+1-212-555-0199"
    assert US.called_raw(req, "header:X-Dialed-Number") == "(617) 555-0123"
    assert US.called_raw(req, "header:x-dialed-number") == "(617) 555-0123"
    assert US.called_raw(req, "header:X-Missing") == ""
    req = parse_message(invite(b"X-Dialed-Number: <sip:+16175550123@gw>"))
    assert US.called_raw(req, "header:X-Dialed-Number") == "+16175550123"


def test_caller_from_pai_else_from() -> None:
    assert US.caller(parse_message(invite())) == "+13055550100"
    pai = b'P-Asserted-Identity: "Sales" <sip:+12025550111@carrier>, <tel:+12025550111>'
    assert US.caller(parse_message(invite(pai))) == "+12025550111"
    bad_pai = b"P-Asserted-Identity: <sip:anonymous@anonymous.invalid>"
    assert US.caller(parse_message(invite(bad_pai))) == "+13055550100"


def test_unknown_region_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown region"):
        Numbers("XX")
