"""Properties of the next opening: inside every window, never before now, and the earliest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.policy.geo import locate
from sipguard.policy.windows import WeekHours, build_checks, campaign_rule, next_opening

NUMBERS = [
    "+12125551234", "+16025551234", "+18085551234", "+12085551234", "+18505551234",
    "+12145551234", "+15045551234", "+16015551234", "+18015551234", "+14165551234",
    "+61291234567", "+33145678901", "+19075551234",
]

instants = st.datetimes(
    min_value=datetime(2022, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
minutes = st.integers(min_value=0, max_value=24 * 60 - 15)


@st.composite
def campaign_hours(draw: st.DrawFn) -> WeekHours | None:
    if draw(st.booleans()):
        return None
    start = draw(minutes)
    end = draw(st.integers(min_value=start + 15, max_value=24 * 60))
    text = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    return WeekHours.parse({draw(st.sampled_from(["daily", "weekdays", "weekends"])): text})


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(NUMBERS), instants, campaign_hours())
def test_next_opening_is_inside_and_earliest(
    number: str, now: datetime, hours: WeekHours | None
) -> None:
    narrow = campaign_rule("c", hours) if hours is not None else None
    checks, _ = build_checks((locate(number),), "telemarketing", now, campaign_hours=narrow)
    opens = next_opening(checks, now)
    if opens is None:  # only when nothing opens within the horizon
        return
    assert opens >= now
    assert all(c.is_open(opens) for c in checks)
    if opens > now:
        # one second earlier at least one check is closed: it is an opening, not a middle
        assert not all(c.is_open(opens - timedelta(seconds=1)) for c in checks)
        # and no earlier opening was skipped: sample the gap every 15 minutes
        probe = now
        while probe < opens:
            assert not all(c.is_open(probe) for c in checks)
            probe += timedelta(minutes=15)
