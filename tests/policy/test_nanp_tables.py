"""NANP tables (policy/nanp.py) against phonenumbers itself, number by number.

Every answer the gateway takes from the tables (validity and E.164, numbering region,
number type, time zones, the geocoder's description, and the Location built from them with
the override table) must be the one phonenumbers gives for that very number.
"""

from __future__ import annotations

import random
import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneMetadata, PhoneNumberDesc, geocoder, timezone

from sipguard.policy import geo, nanp
from sipguard.policy.numbers import Numbers

# Area codes where the answers are not simply "US, one zone": multi-zone (208, 270, 850,
# 541, 605, 915), Canada (416, 604, 867, 506, 709), the Caribbean and territories (246
# and 664 decide on seven digits, 441, 268, 876, 787, 939, 671, 670, 684, 340, 721), non-
# geographic (800-888, 900, 500-533, 600), unassigned or reserved (211 N11, 555, 950, 37x,
# 96x) and impossible ones (0xx, 1xx).
SPECIAL_NPAS = (
    "208", "270", "850", "448", "541", "605", "915", "416", "604", "867", "506", "709", "246",
    "664", "441", "268", "876", "787", "939", "671", "670", "684", "340", "721", "809", "829",
    "849", "242", "345", "473", "649", "758", "767", "784", "868", "869", "284", "264", "800",
    "833", "844", "855", "866", "877", "888", "900", "500", "521", "522", "523", "524", "533",
    "544", "566", "577", "588", "600", "211", "411", "911", "555", "950", "370", "960", "012",
    "123", "199",
)
NXX_EDGES = ("555", "211", "911", "000", "100", "976", "521", "200", "999")


def _reference_e164(national: str) -> str | None:
    """What Numbers gave before the tables: a full phonenumbers parse and validation."""
    try:
        parsed = phonenumbers.parse("+1" + national, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _check(national: str, numbers: Numbers) -> None:
    e164 = "+1" + national
    assert numbers.e164(e164) == _reference_e164(national), e164
    parsed = phonenumbers.parse(e164, None)
    kind, zones, place = nanp.tables().facts(national)
    assert kind.valid == phonenumbers.is_valid_number(parsed), e164
    assert kind.region == (phonenumbers.region_code_for_number(parsed) or ""), e164
    assert kind.kind == phonenumbers.number_type(parsed), e164
    assert zones == tuple(timezone.time_zones_for_number(parsed)), e164
    assert place == geocoder.description_for_valid_number(parsed, "en"), e164
    assert geo.locate(e164) == geo._locate_phonenumbers(e164), e164


def _numbers(rng: random.Random, count: int) -> list[str]:
    out = []
    for _ in range(count):
        npa = rng.choice(SPECIAL_NPAS) if rng.random() < 0.5 else f"{rng.randrange(1000):03d}"
        nxx = rng.choice(NXX_EDGES) if rng.random() < 0.1 else f"{rng.randrange(1000):03d}"
        out.append(f"{npa}{nxx}{rng.randrange(10_000):04d}")
    return out


def test_tables_agree_with_phonenumbers_on_a_seeded_sample() -> None:
    numbers = Numbers("US")
    for national in _numbers(random.Random(20261129), 12_000):
        _check(national, numbers)


@settings(max_examples=1500, deadline=None)
@given(
    npa=st.sampled_from(SPECIAL_NPAS) | st.from_regex(r"\A[0-9]{3}\Z"),
    rest=st.from_regex(r"\A[0-9]{7}\Z"),
)
def test_tables_agree_with_phonenumbers(npa: str, rest: str) -> None:
    _check(npa + rest, Numbers("US"))


def _metadata_patterns() -> list[tuple[str, bool]]:
    """(pattern, is leading_digits) for every NANP region's metadata."""
    found = set()
    for region in phonenumbers.region_codes_for_country_code(1):
        metadata = PhoneMetadata.metadata_for_region(region)
        assert metadata is not None
        if metadata.leading_digits:
            found.add((metadata.leading_digits, True))
        for desc in vars(metadata).values():
            if isinstance(desc, PhoneNumberDesc) and desc.national_number_pattern:
                found.add((desc.national_number_pattern, False))
    return sorted(found)


def _accepts(nfa: nanp._Nfa, digits: str) -> bool:
    states = nfa.closure((nfa.start,))
    for char in digits:
        states = nfa.step(states, int(char))
    return nanp._Nfa.ACCEPT in states


@pytest.mark.parametrize(("pattern", "prefix"), _metadata_patterns())
def test_automaton_matches_like_re(pattern: str, prefix: bool) -> None:
    """Each pattern's automaton accepts what `re` does (fullmatch; match for leading digits),
    on strings built to follow the pattern's own branches and on random ones."""
    nfa = nanp._Nfa(pattern, prefix=prefix)
    compiled = re.compile(pattern)
    rng = random.Random(pattern)
    samples = _near_matches(pattern, rng) + [f"{rng.randrange(10**10):010d}" for _ in range(300)]
    for digits in samples:
        expected = (compiled.match if prefix else compiled.fullmatch)(digits) is not None
        assert _accepts(nfa, digits) == expected, (pattern, digits)


def _near_matches(pattern: str, rng: random.Random) -> list[str]:
    """Ten-digit strings starting with the literal digits the pattern spells out, so that the
    rare branches (seven-digit prefixes) are reached, not only random misses."""
    heads = set(re.findall(r"\d{3,8}", pattern.replace("\\d", "x")))
    return [
        (head + f"{rng.randrange(10**10):010d}")[:10] for head in heads for _ in range(20)
    ]


@pytest.mark.parametrize("pattern", ["12?3", "1(2)3", "[^2]", "1{2,3}", "1.3", "1(?:2"])
def test_automaton_refuses_syntax_it_does_not_know(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        nanp._Nfa(pattern)


def test_states_stay_few() -> None:
    """Decided states loop to themselves; without that there would be ~100,000."""
    assert nanp.tables().classifier.state_count() < 5_000
