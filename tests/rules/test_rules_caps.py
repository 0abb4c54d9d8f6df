"""Rolling-window frequency caps."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


HORIZON = timedelta(hours=2)
_attempts = st.lists(
    st.tuples(st.sampled_from([MIAMI, NY, "+14155550100"]), st.integers(0, 4 * 3600)),
    max_size=60,
)


def _model_count(recorded: list[tuple[str, datetime]], number: str, since: datetime) -> int:
    return sum(1 for n, at in recorded if n == number and at >= since)


@settings(max_examples=200, deadline=None)
@given(_attempts, st.lists(st.integers(0, 5 * 3600), max_size=8), st.booleans())
def test_prune_forgets_only_what_expired(
    attempts: list[tuple[str, int]], prunes: list[int], in_order: bool
) -> None:
    """Attempts recorded in any order, pruned at rising times: every count a cap can ask
    for (since at most the horizon back) stays that of all attempts recorded; when they came
    in time order, nothing older than the horizon is kept."""
    if in_order:
        attempts = sorted(attempts, key=lambda a: a[1])
    counter = AttemptCounter(HORIZON)
    recorded: list[tuple[str, datetime]] = []
    prune_at = sorted(NOW + timedelta(seconds=s) for s in prunes)
    for i, (number, offset) in enumerate(attempts):
        at = NOW + timedelta(seconds=offset, microseconds=offset % 7 * 1000)
        while prune_at and prune_at[0] <= at:
            counter.prune(prune_at.pop(0))
        assert counter.record(number, "promo", f"c{i}", at)
        recorded.append((number, at))
    last = max((at for _, at in recorded), default=NOW)
    for t in (*prune_at, last + HORIZON + timedelta(seconds=2)):
        counter.prune(t)
        for number in (MIAMI, NY, "+14155550100"):
            for back in (HORIZON, HORIZON / 2, timedelta(0)):
                since = t - back
                assert counter.count(number, since) == _model_count(recorded, number, since)
        if in_order:
            kept = sum(_model_count(recorded, n, t - HORIZON) for n in (MIAMI, NY, "+14155550100"))
            assert len(counter) == kept
    assert len(counter) == 0 and MIAMI not in counter


def test_an_attempt_recorded_late_is_forgotten_after_those_recorded_before_it() -> None:
    counter = AttemptCounter(HORIZON)
    counter.record(NY, "promo", "new", NOW)
    counter.record(MIAMI, "promo", "late", NOW - H)  # out of time order
    counter.prune(NOW + HORIZON - H + timedelta(seconds=5))
    assert counter.count(MIAMI, NOW - 2 * H) == 1  # NY's attempt, recorded first, has not expired
    assert counter.count(MIAMI, NOW + HORIZON - H + timedelta(seconds=5) - HORIZON) == 0
    counter.prune(NOW + HORIZON + timedelta(seconds=1))
    assert len(counter) == 0
