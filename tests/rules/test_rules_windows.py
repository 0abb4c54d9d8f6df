"""Calling windows at their boundaries, in the called party's local time."""

from __future__ import annotations

from datetime import date

import pytest

from rules.helpers_rules import local, utc
from sipguard.errors import PolicyError
from sipguard.policy import holidays_cal
from sipguard.policy.geo import locate, location_of
from sipguard.policy.model import Reason
from sipguard.policy.windows import (
    WeekHours,
    check_calling_window,
    load_windows,
    warm_holidays,
)

NY = "+12125551234"
PHOENIX = "+16025551234"
HONOLULU = "+18085551234"
IDAHO = "+12085551234"  # phonenumbers itself: America/Boise + America/Los_Angeles
PENSACOLA = "+18505551234"  # FL panhandle, via the override table: Central + Eastern
DALLAS = "+12145551234"
NEW_ORLEANS = "+15045551234"
JACKSON_MS = "+16015551234"
LOUISVILLE = "+15025551234"
SALT_LAKE = "+18015551234"
PHILADELPHIA = "+12155551234"
TORONTO = "+14165551234"
SYDNEY = "+61291234567"
PARIS = "+33145678901"

# (number, local time, zone it is read in, inside?)
CASES = [
    # federal 08:00-21:00, start included, end excluded
    (NY, "2026-03-04 20:59:59", "America/New_York", True),
    (NY, "2026-03-04 21:00:00", "America/New_York", False),
    (NY, "2026-03-04 07:59:59", "America/New_York", False),
    (NY, "2026-03-04 08:00:00", "America/New_York", True),
    # DST starts 2026-03-08 02:00 in New York: 08:00 EDT is 12:00Z, not 13:00Z
    (NY, "2026-03-08 08:00:00", "America/New_York", True),
    (NY, "2026-03-08 07:59:59", "America/New_York", False),
    (NY, "2026-03-08 20:59:59", "America/New_York", True),
    # DST ends 2026-11-01 02:00: 08:00 EST is 13:00Z
    (NY, "2026-11-01 07:59:59", "America/New_York", False),
    (NY, "2026-11-01 08:00:00", "America/New_York", True),
    (NY, "2026-11-01 20:59:59", "America/New_York", True),
    (NY, "2026-11-01 21:00:00", "America/New_York", False),
    # Arizona keeps MST in summer; Hawaii keeps HST
    (PHOENIX, "2026-07-01 20:59:59", "America/Phoenix", True),
    (PHOENIX, "2026-07-01 21:00:00", "America/Phoenix", False),
    (PHOENIX, "2026-07-01 07:59:59", "America/Phoenix", False),
    (HONOLULU, "2026-07-01 20:59:59", "Pacific/Honolulu", True),
    (HONOLULU, "2026-07-01 21:00:00", "Pacific/Honolulu", False),
    # multi-zone area code 208: inside only when inside in Boise and in Los Angeles
    (IDAHO, "2026-06-01 08:30:00", "America/Boise", False),  # 07:30 in Los Angeles
    (IDAHO, "2026-06-01 08:00:00", "America/Los_Angeles", True),
    (IDAHO, "2026-06-01 20:59:59", "America/Boise", True),
    (IDAHO, "2026-06-01 21:00:00", "America/Boise", False),  # 20:00 in Los Angeles
    # FL 08:00-20:00, Pensacola rings in Central and Eastern
    (PENSACOLA, "2026-06-01 19:59:59", "America/New_York", True),
    (PENSACOLA, "2026-06-01 20:00:00", "America/New_York", False),  # 19:00 Central
    (PENSACOLA, "2026-06-01 08:30:00", "America/Chicago", True),
    (PENSACOLA, "2026-06-01 07:59:59", "America/Chicago", False),  # 08:59 Eastern
    # Texas: 09:00-21:00, Sunday 12:00-21:00 (2026-03-15 is a Sunday)
    (DALLAS, "2026-03-15 11:59:59", "America/Chicago", False),
    (DALLAS, "2026-03-15 12:00:00", "America/Chicago", True),
    (DALLAS, "2026-03-14 09:00:00", "America/Chicago", True),
    (DALLAS, "2026-03-14 08:59:59", "America/Chicago", False),
    # Louisiana: no Sundays or legal holidays; Christmas 2022 fell on a Sunday -> Mon 26 observed
    (NEW_ORLEANS, "2022-12-24 10:00:00", "America/Chicago", True),
    (NEW_ORLEANS, "2022-12-25 10:00:00", "America/Chicago", False),
    (NEW_ORLEANS, "2022-12-26 10:00:00", "America/Chicago", False),
    (NEW_ORLEANS, "2022-12-27 10:00:00", "America/Chicago", True),
    (NEW_ORLEANS, "2022-12-27 19:59:59", "America/Chicago", True),
    (NEW_ORLEANS, "2022-12-27 20:00:00", "America/Chicago", False),
    # Mississippi: also 08:00 "Central Standard Time" -> 09:00 CDT in summer
    (JACKSON_MS, "2026-07-01 08:30:00", "America/Chicago", False),
    (JACKSON_MS, "2026-07-01 09:00:00", "America/Chicago", True),
    (JACKSON_MS, "2026-01-07 08:00:00", "America/Chicago", True),
    (JACKSON_MS, "2026-07-05 12:00:00", "America/Chicago", False),  # Sunday
    # Kentucky 10:00
    (LOUISVILLE, "2026-06-03 09:59:59", "America/New_York", False),
    (LOUISVILLE, "2026-06-03 10:00:00", "America/New_York", True),
    # Utah: Pioneer Day (Fri 2026-07-24) and Sundays; Pennsylvania: day after Thanksgiving
    (SALT_LAKE, "2026-07-24 12:00:00", "America/Denver", False),
    (SALT_LAKE, "2026-07-23 12:00:00", "America/Denver", True),
    (PHILADELPHIA, "2026-11-27 12:00:00", "America/New_York", False),
    (PHILADELPHIA, "2026-11-30 12:00:00", "America/New_York", True),
    # Canada: weekdays 09:00-21:30, weekends 10:00-18:00
    (TORONTO, "2026-06-03 21:29:59", "America/Toronto", True),
    (TORONTO, "2026-06-03 21:30:00", "America/Toronto", False),
    (TORONTO, "2026-06-06 09:59:59", "America/Toronto", False),
    (TORONTO, "2026-06-06 10:00:00", "America/Toronto", True),
    (TORONTO, "2026-06-06 18:00:00", "America/Toronto", False),
    # Australia: weekdays 09:00-20:00, Saturday 09:00-17:00, no Sunday / national holiday
    (SYDNEY, "2026-06-03 19:59:59", "Australia/Sydney", True),
    (SYDNEY, "2026-06-03 20:00:00", "Australia/Sydney", False),
    (SYDNEY, "2026-06-06 16:59:59", "Australia/Sydney", True),
    (SYDNEY, "2026-06-06 17:00:00", "Australia/Sydney", False),
    (SYDNEY, "2026-06-07 12:00:00", "Australia/Sydney", False),
    (SYDNEY, "2026-01-26 12:00:00", "Australia/Sydney", False),  # Australia Day
    # France: weekdays 10:00-13:00 and 14:00-20:00; no weekends or jours fériés
    (PARIS, "2026-06-02 12:59:59", "Europe/Paris", True),
    (PARIS, "2026-06-02 13:00:00", "Europe/Paris", False),
    (PARIS, "2026-06-02 14:00:00", "Europe/Paris", True),
    (PARIS, "2026-06-02 09:59:59", "Europe/Paris", False),
    (PARIS, "2026-06-06 12:00:00", "Europe/Paris", False),
    (PARIS, "2026-07-14 12:00:00", "Europe/Paris", False),
]


@pytest.mark.parametrize(("number", "when", "zone", "inside"), CASES)
def test_window_boundaries(number: str, when: str, zone: str, inside: bool) -> None:
    now = local(when, zone)
    result = check_calling_window(locate(number), now)
    assert (not result.blocked) is inside, result.step.detail
    if inside:
        assert result.reason is None and result.opens_at is None
    else:
        assert result.reason is Reason.OUTSIDE_CALLING_WINDOW
        assert result.opens_at is not None and result.opens_at > now


# (number, now local, zone, expected opening local, zone of the expectation)
OPENINGS = [
    # the evening before spring-forward: opens 08:00 EDT (12:00Z)
    (NY, "2026-03-07 21:30:00", "America/New_York", "2026-03-08 08:00:00", "America/New_York"),
    # during the repeated hour of fall-back: opens 08:00 EST (13:00Z)
    (NY, "2026-11-01 01:30:00", "America/New_York", "2026-11-01 08:00:00", "America/New_York"),
    # Louisiana Saturday night -> Sunday closed -> Monday observed holiday -> Tuesday 08:00
    (NEW_ORLEANS, "2022-12-24 20:00:00", "America/Chicago", "2022-12-27 08:00:00",
     "America/Chicago"),
    # France on Labour Day (Friday) -> weekend -> Monday 10:00
    (PARIS, "2026-05-01 11:00:00", "Europe/Paris", "2026-05-04 10:00:00", "Europe/Paris"),
    # France at lunch -> 14:00 the same day
    (PARIS, "2026-06-02 13:30:00", "Europe/Paris", "2026-06-02 14:00:00", "Europe/Paris"),
    # Australia: Thursday evening -> Good Friday closed -> Saturday 09:00 (still AEDT)
    (SYDNEY, "2026-04-02 20:30:00", "Australia/Sydney", "2026-04-04 09:00:00",
     "Australia/Sydney"),
    # Saturday 17:00 -> Sunday, Easter Monday closed -> Tuesday 09:00 (AEST after DST ended)
    (SYDNEY, "2026-04-04 17:00:00", "Australia/Sydney", "2026-04-07 09:00:00",
     "Australia/Sydney"),
    # Pensacola at 07:30 Central (08:30 Eastern): opens 08:00 Central
    (PENSACOLA, "2026-06-01 07:30:00", "America/Chicago", "2026-06-01 08:00:00",
     "America/Chicago"),
    # Pensacola at 19:30 Central (20:30 Eastern): opens 08:00 Central tomorrow (09:00 Eastern)
    (PENSACOLA, "2026-06-01 19:30:00", "America/Chicago", "2026-06-02 08:00:00",
     "America/Chicago"),
    # Texas Sunday morning -> noon
    (DALLAS, "2026-03-15 10:00:00", "America/Chicago", "2026-03-15 12:00:00", "America/Chicago"),
]


@pytest.mark.parametrize(("number", "when", "zone", "opens", "opens_zone"), OPENINGS)
def test_next_opening(number: str, when: str, zone: str, opens: str, opens_zone: str) -> None:
    result = check_calling_window(locate(number), local(when, zone))
    assert result.blocked
    assert result.opens_at == local(opens, opens_zone), result.step.detail
    assert "opens " in result.step.detail


def test_campaign_narrows_the_window() -> None:
    hours = WeekHours.parse({"weekdays": "10:00-16:00"})
    loc = locate(NY)
    wed_0959 = local("2026-06-03 09:59:59", "America/New_York")
    assert check_calling_window(loc, wed_0959, campaign="c", campaign_hours=hours).blocked
    wed_1000 = local("2026-06-03 10:00:00", "America/New_York")
    assert not check_calling_window(loc, wed_1000, campaign="c", campaign_hours=hours).blocked
    friday_late = local("2026-06-05 16:00:00", "America/New_York")
    result = check_calling_window(loc, friday_late, campaign="c", campaign_hours=hours)
    assert result.opens_at == local("2026-06-08 10:00:00", "America/New_York")
    assert "campaign:c" in result.step.detail


def test_consent_address_is_checked_too() -> None:
    # A New York number whose consent gives a Florida address: FL's 20:00 applies as well.
    now = local("2026-06-03 20:30:00", "America/New_York")
    assert not check_calling_window(locate(NY), now).blocked
    florida = location_of("US-FL", None)
    assert florida is not None
    result = check_calling_window(locate(NY), now, known_addresses=(florida,))
    assert result.blocked and "us-fl" in result.step.detail
    # A known zone only: the country's rule in that zone
    hawaii = location_of(None, "Pacific/Honolulu", country="US")
    assert hawaii is not None
    noon_ny = local("2026-06-03 12:00:00", "America/New_York")  # 06:00 in Honolulu
    assert check_calling_window(locate(NY), noon_ny, known_addresses=(hawaii,)).blocked


def test_unknown_state_gets_every_state_rule() -> None:
    # A US number without a state (toll-free) rings in every zone and every state's rule.
    result = check_calling_window(locate("+18005551234"), utc("2026-06-03 18:00:00"))
    assert result.blocked  # 08:00 in Honolulu... the strictest reading
    assert "state unknown" in result.step.detail


def test_no_rule_for_country_passes() -> None:
    result = check_calling_window(locate("+442071234567"), utc("2026-06-03 03:00:00"))
    assert not result.blocked and "no calling window" in result.step.detail


def test_naive_now_is_refused() -> None:
    with pytest.raises(PolicyError):
        check_calling_window(locate(NY), utc("2026-06-03 12:00:00").replace(tzinfo=None))


def test_effective_dates() -> None:
    # Maryland's 20:00 is in force from 2024-01-01 only.
    baltimore = locate("+14105551234")
    before = local("2023-12-29 20:30:00", "America/New_York")
    after = local("2024-01-02 20:30:00", "America/New_York")
    assert not check_calling_window(baltimore, before).blocked
    assert check_calling_window(baltimore, after).blocked


def test_week_hours_parsing() -> None:
    hours = WeekHours.parse({"daily": ["08:00-20:00"], "sun": []})
    assert hours.days[6] == () and hours.days[0] == ((480, 1200),)
    assert hours.describe() == "mon-sat 08:00-20:00; sun closed"
    for bad in ({"daily": "8-20"}, {"daily": "20:00-08:00"}, {"holiday": "08:00-20:00"},
                {"daily": ["08:00-12:00", "11:00-13:00"]}, {"daily": "08:00-24:01"}):
        with pytest.raises(PolicyError):
            WeekHours.parse(bad)


def test_every_shipped_rule_cites_its_source() -> None:
    table = load_windows()
    ids = {r.id for r in table.rules}
    for region in ("US-FL", "US-OK", "US-MD", "US-WA", "US-MA", "US-TX", "US-KY", "US-AL",
                   "US-LA", "US-MS", "US-NV", "US-MI", "US-MN", "US-NM", "US-UT", "US-PA"):
        assert any(r.region == region for r in table.rules), region
    assert {"us-federal", "ca-federal", "au-federal", "fr-national"} <= ids
    assert all(r.source.strip() for r in table.rules)


def test_warm_holidays_builds_every_calendar_the_rules_use() -> None:
    """Built at start, not by the first call to a state (a ~0.3 s stall under load)."""
    holidays_cal._calendar.cache_clear()
    warmed = warm_holidays(date(2026, 12, 20))
    closing = [r for r in load_windows().rules if r.holidays_closed]
    assert warmed == len(closing) > 0
    built = holidays_cal._calendar.cache_info()
    assert built.currsize > 0
    # Every closing rule's calendar for this year and the next is now a cache hit.
    for rule in closing:
        rule.holiday(date(2026, 12, 25))
        rule.holiday(date(2027, 1, 1))
    after = holidays_cal._calendar.cache_info()
    assert after.misses == built.misses and after.currsize == built.currsize
    assert any(r.holiday(date(2026, 12, 25)) for r in closing)  # Christmas closes someone
