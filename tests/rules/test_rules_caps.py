"""Rolling-window frequency caps."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rules.helpers_rules import utc
from sipguard.policy.caps import (
    AttemptCounter,
    AttemptRecord,
    check_caps,
    configured_cap,
    required_horizon,
    shipped_caps,
)
from sipguard.policy.geo import locate, location_of
from sipguard.policy.model import Reason

MIAMI = "+13055551234"
NY = "+12125551234"
NOW = utc("2026-06-03 16:00:00")


def counter_with(number: str, campaign: str, ages: list[timedelta]) -> AttemptCounter:
    counter = AttemptCounter()
    for i, age in enumerate(ages):
        assert counter.record(number, campaign, f"call-{campaign}-{i}", NOW - age)
    return counter


H = timedelta(hours=1)
D = timedelta(days=1)


@pytest.mark.parametrize(
    ("number", "purpose", "campaign", "ages", "blocked"),
    [
        # Florida: 3 per 24 h per campaign; the 4th is refused
        (MIAMI, "telemarketing", "promo", [23 * H, 10 * H, 1 * H], True),
        (MIAMI, "telemarketing", "promo", [10 * H, 1 * H], False),
        (MIAMI, "telemarketing", "promo", [24 * H, 10 * H, 1 * H], True),  # exactly 24 h: counts
        (MIAMI, "telemarketing", "promo", [24 * H + timedelta(seconds=1), 10 * H, H], False),
        (MIAMI, "telemarketing", "other", [23 * H, 10 * H, 1 * H], False),  # other campaign
        (NY, "telemarketing", "promo", [23 * H, 10 * H, 1 * H], False),  # no NY cap
        # Regulation F: 7 calls in 7 days for debt collection; the 8th is refused
        (NY, "debt-collection", "promo", [6 * D, 5 * D, 4 * D, 3 * D, 2 * D, D, H], True),
        (NY, "debt-collection", "promo",
         [7 * D + timedelta(seconds=1), 5 * D, 4 * D, 3 * D, 2 * D, D, H], False),
        (NY, "debt-collection", "promo", [5 * D, 4 * D, 3 * D, 2 * D, D, H], False),
        (NY, "telemarketing", "promo", [6 * D, 5 * D, 4 * D, 3 * D, 2 * D, D, H], False),
    ],
)
def test_shipped_caps(
    number: str, purpose: str, campaign: str, ages: list[timedelta], blocked: bool
) -> None:
    counter = counter_with(number, "promo", ages)
    result = check_caps(number, campaign, purpose, (locate(number),), counter, NOW)
    assert result.blocked is blocked, result.step.detail
    if blocked:
        assert result.reason is Reason.FREQUENCY_CAP


def test_same_call_id_counts_once() -> None:
    counter = AttemptCounter()
    assert counter.record(MIAMI, "promo", "abc", NOW - H)
    assert not counter.record(MIAMI, "promo", "abc", NOW - H)  # re-sent after 407
    assert counter.count(MIAMI, NOW - D) == 1


def test_rebuild_from_store_and_prune() -> None:
    records = [AttemptRecord(MIAMI, "promo", f"c{i}", NOW - i * H) for i in (30, 3, 2, 1)]
    counter = AttemptCounter.rebuild(reversed(records), NOW, timedelta(days=1, hours=2))
    assert len(counter) == 3  # the 30 h old attempt is beyond the horizon
    assert check_caps(MIAMI, "promo", "telemarketing", (locate(MIAMI),), counter, NOW).blocked
    counter.prune(NOW + 2 * D)
    assert len(counter) == 0


def test_configured_caps() -> None:
    system = configured_cap(2, "1h", "all")
    campaign_only = configured_cap(1, "1d", "campaign", campaign="promo")
    counter = AttemptCounter()
    counter.record(NY, "a", "1", NOW - timedelta(minutes=50))
    counter.record(NY, "b", "2", NOW - timedelta(minutes=10))
    loc = (locate(NY),)
    assert check_caps(NY, "c", "survey", loc, counter, NOW, configured=[system]).blocked
    assert not check_caps(NY, "c", "survey", loc, counter, NOW + H, configured=[system]).blocked
    assert not check_caps(
        NY, "a", "survey", loc, counter, NOW + H, configured=[campaign_only]
    ).blocked
    assert check_caps(NY, "promo", "x", loc, counter_with(NY, "promo", [H]), NOW,
                      configured=[campaign_only]).blocked
    assert required_horizon([*shipped_caps(), system]) == timedelta(days=7)


def test_consent_address_brings_the_state_cap() -> None:
    counter = counter_with(NY, "promo", [3 * H, 2 * H, H])
    florida = location_of("US-FL", None)
    assert florida is not None
    assert check_caps(NY, "promo", "telemarketing", (locate(NY), florida), counter, NOW).blocked


def test_florida_cap_not_before_it_was_law() -> None:
    then = utc("2021-06-15 16:00:00")
    counter = AttemptCounter()
    for i in range(3):
        counter.record(MIAMI, "promo", str(i), then - (i + 1) * H)
    assert not check_caps(MIAMI, "promo", "telemarketing", (locate(MIAMI),), counter, then).blocked
