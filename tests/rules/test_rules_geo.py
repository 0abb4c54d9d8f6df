"""Number -> country, state and zones, with the shipped override table."""

from __future__ import annotations

import phonenumbers
import pytest
from phonenumbers import timezone

from sipguard.policy import geo
from sipguard.policy.geo import locate, location_of, region_zones, validate_tables
from sipguard.policy.rules_data import load_csv


def test_tables_name_real_zones() -> None:
    validate_tables()


@pytest.mark.parametrize(
    ("number", "country", "regions", "zones"),
    [
        ("+12125551234", "US", ("US-NY",), ("America/New_York",)),
        ("+16025551234", "US", ("US-AZ",), ("America/Phoenix",)),
        ("+18085551234", "US", ("US-HI",), ("Pacific/Honolulu",)),
        ("+12085551234", "US", ("US-ID",), ("America/Boise", "America/Los_Angeles")),
        ("+18505551234", "US", ("US-FL",), ("America/Chicago", "America/New_York")),
        ("+12705551234", "US", ("US-KY",), ("America/Chicago", "America/New_York")),
        ("+17875551234", "US", ("US-PR",), ("America/Puerto_Rico",)),
        ("+14165551234", "CA", ("CA-ON",), ("America/Toronto",)),
        ("+33145678901", "FR", (), ("Europe/Paris",)),
    ],
)
def test_locate(
    number: str, country: str, regions: tuple[str, ...], zones: tuple[str, ...]
) -> None:
    loc = locate(number)
    assert (loc.country, loc.regions, loc.zones) == (country, regions, zones)


def test_every_override_corrects_phonenumbers() -> None:
    """Each row is a known error: for some exchange phonenumbers misses one of its zones."""
    for row in load_csv("npa_overrides.csv"):
        prefix, wanted = row["prefix"], set(row["zones"].split())
        missing = False
        for exchange in ("2345678", "5551234", "8881234", "4561234"):
            number = phonenumbers.parse(prefix + exchange, None)
            if not wanted <= set(timezone.time_zones_for_number(number)):
                missing = True
        assert missing, f"{prefix}: phonenumbers already right, drop the override"


def test_location_of_consent_address() -> None:
    fl = location_of("US-FL", None)
    assert fl is not None and fl.zones == region_zones("US-FL") and fl.regions == ("US-FL",)
    assert location_of(None, None) is None
    zone_only = location_of(None, "America/Denver", country="US")
    assert zone_only is not None and zone_only.zones == ("America/Denver",)


def test_toll_free_rings_in_every_state_zone() -> None:
    loc = locate("+18005551234")
    assert loc.country == "US" and loc.regions == ()
    assert "Pacific/Honolulu" in loc.zones and "Pacific/Guam" not in loc.zones


def test_unparseable_number() -> None:
    assert locate("not a number").country == ""


def test_an_exchange_shares_one_location_unless_later_digits_decide() -> None:
    """A NANP exchange the tables settle gives every number of it one Location; where the
    seventh digit matters (Barbados 246-521x) each number is located on its own."""
    ny = [locate(f"+1212555{line:04d}") for line in (0, 1234, 9999)]
    assert ny[0] is ny[1] is ny[2] is geo._EXCHANGES["+1212555"]
    assert ny[0] == geo._locate_phonenumbers("+12125551234")
    barbados = ["+12465210000", "+12465212000", "+12465217000"]
    assert len({locate(n).zones for n in barbados}) == 3
    assert geo._EXCHANGES["+1246521"] is None
    for number in barbados:
        assert locate(number) == geo._locate_phonenumbers(number), number
