"""Calling windows in the called party's local time (shipped table `data/calling_windows.toml`).

A call is checked against every rule that applies to where it rings: the country's rule and
the state's, read in every zone the number may ring in (and at a consent record's known
address, when there is one), plus the campaign's own narrower hours. It is inside only if it
is inside all of them (a `Check` is one rule read in one zone). Outside, the result says
when the window opens next: the earliest instant, not before `now`, at which every check is
open; that instant is always the start of some check's interval, so only those are tried.

Hours are [start, end) in local wall time: "08:00-21:00" allows 20:59:59, not 21:00:00.
Local time comes from `zoneinfo`, so DST changes and zones without DST (America/Phoenix,
Pacific/Honolulu) are right by construction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from itertools import pairwise
from typing import Any

from sipguard.errors import PolicyError
from sipguard.policy.geo import Location, region_zones, zone_info
from sipguard.policy.holidays_cal import holiday_name
from sipguard.policy.model import Reason
from sipguard.policy.rules_data import (
    RuleResult,
    as_date,
    blocked,
    load_toml,
    passed,
    require_aware,
)

RULE = "calling-window"
DAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
GROUPS: dict[str, tuple[int, ...]] = {
    "daily": tuple(range(7)),
    "weekdays": tuple(range(5)),
    "weekends": (5, 6),
}
HORIZON = timedelta(days=21)  # how far ahead the next opening is looked for
Interval = tuple[int, int]  # minutes after local midnight, [start, end)


def _minutes(text: str, where: str) -> int:
    hh, sep, mm = text.strip().partition(":")
    if not sep or not (hh.isdigit() and mm.isdigit()) or len(mm) != 2:
        raise PolicyError(f"{where}: {text!r} is not HH:MM")
    value = int(hh) * 60 + int(mm)
    if int(mm) > 59 or value > 24 * 60:
        raise PolicyError(f"{where}: {text!r} is not a time of day")
    return value


def _intervals(value: object, where: str) -> tuple[Interval, ...]:
    """["08:00-12:00", "13:00-20:00"] or "08:00-12:00,13:00-20:00"; [] / "closed" = none."""
    if isinstance(value, str):
        items = [] if value.strip() in ("", "closed") else value.split(",")
    elif isinstance(value, list | tuple):
        items = [str(v) for v in value]
    else:
        raise PolicyError(f"{where}: {value!r} must be a list of 'HH:MM-HH:MM' intervals")
    out: list[Interval] = []
    for item in items:
        start_text, sep, end_text = item.partition("-")
        if not sep:
            raise PolicyError(f"{where}: {item!r} is not 'HH:MM-HH:MM'")
        start, end = _minutes(start_text, where), _minutes(end_text, where)
        if not start < end:
            raise PolicyError(f"{where}: {item!r} must end after it starts (same day)")
        out.append((start, end))
    out.sort()
    for (_, end), (start, _) in pairwise(out):
        if start < end:
            raise PolicyError(f"{where}: intervals overlap")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class WeekHours:
    """Allowed local hours for each weekday, Monday first."""

    days: tuple[tuple[Interval, ...], ...]

    @classmethod
    def parse(cls, spec: Mapping[str, Any], where: str = "hours") -> WeekHours:
        """Keys mon..sun or daily/weekdays/weekends (a day key beats its group).

        A day no key mentions has no allowed hours.
        """
        days: list[tuple[Interval, ...]] = [()] * 7
        for key in spec:
            if key not in GROUPS and key not in DAY_KEYS:
                known = ", ".join((*GROUPS, *DAY_KEYS))
                raise PolicyError(f"{where}.{key}: unknown day (known: {known})")
        for group in ("daily", "weekdays", "weekends"):
            if group in spec:
                for i in GROUPS[group]:
                    days[i] = _intervals(spec[group], f"{where}.{group}")
        for i, key in enumerate(DAY_KEYS):
            if key in spec:
                days[i] = _intervals(spec[key], f"{where}.{key}")
        return cls(tuple(days))

    def describe(self) -> str:
        def fmt(ivs: tuple[Interval, ...]) -> str:
            if not ivs:
                return "closed"
            return ",".join(
                f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}" for s, e in ivs
            )

        parts: list[str] = []
        i = 0
        while i < 7:
            j = i
            while j + 1 < 7 and self.days[j + 1] == self.days[i]:
                j += 1
            span = DAY_KEYS[i] if i == j else f"{DAY_KEYS[i]}-{DAY_KEYS[j]}"
            parts.append(f"{span} {fmt(self.days[i])}")
            i = j + 1
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class WindowRule:
    """One row of the calling-window table (or a campaign's own hours)."""

    id: str
    country: str  # "" for a campaign rule (applies wherever the call rings)
    region: str | None  # ISO 3166-2 ("US-TX"), None for the whole country
    hours: WeekHours
    source: str
    holidays_closed: bool = False
    holiday_calendar: str = "national"  # "national" | "subdivision"
    holiday_categories: tuple[str, ...] = ("public",)
    zone: str | None = None  # fixed zone the hours are read in (else the called party's)
    purposes: frozenset[str] = frozenset({"*"})
    effective_from: date | None = None
    effective_to: date | None = None
    note: str = ""

    def holiday(self, day: date, extra: Mapping[date, str] | None = None) -> str | None:
        """The holiday that closes this rule's hours on `day`, if any."""
        if not self.holidays_closed:
            return None
        subdiv = (
            self.region.split("-", 1)[1]
            if (self.holiday_calendar == "subdivision" and self.region)
            else None
        )
        return holiday_name(self.country, subdiv, day, self.holiday_categories, extra)

    def applies(self, purpose: str, day: date) -> bool:
        if "*" not in self.purposes and purpose not in self.purposes:
            return False
        if self.effective_from and day < self.effective_from:
            return False
        return not (self.effective_to and day > self.effective_to)


def _rule_from_row(row: Mapping[str, Any], i: int) -> WindowRule:
    where = f"calling_windows.toml window[{i}]"
    holidays = row.get("holidays", "open")
    if holidays not in ("open", "closed"):
        raise PolicyError(f"{where}.holidays: {holidays!r} must be 'open' or 'closed'")
    calendar = row.get("holiday_calendar", "national")
    if calendar not in ("national", "subdivision"):
        raise PolicyError(f"{where}.holiday_calendar: {calendar!r}")
    return WindowRule(
        id=str(row["id"]),
        country=str(row["country"]),
        region=row.get("region"),
        hours=WeekHours.parse(row["hours"], f"{where}.hours"),
        source=str(row["source"]),
        holidays_closed=holidays == "closed",
        holiday_calendar=calendar,
        holiday_categories=tuple(row.get("holiday_categories", ("public",))),
        zone=row.get("zone"),
        purposes=frozenset(row.get("purposes", ("*",))),
        effective_from=as_date(row.get("effective_from"), f"{where}.effective_from"),
        effective_to=as_date(row.get("effective_to"), f"{where}.effective_to"),
        note=str(row.get("note", "")),
    )


@dataclass(frozen=True, slots=True)
class WindowTable:
    rules: tuple[WindowRule, ...]

    def for_location(self, loc: Location, purpose: str, day: date) -> tuple[WindowRule, ...]:
        """The country's rules and its regions' rules; every regional rule of the country
        when the region is unknown (the stricter reading)."""
        regional = [r for r in self.rules if r.country == loc.country and r.region]
        wanted = set(loc.regions) if loc.regions else {r.region for r in regional}
        return tuple(
            r
            for r in self.rules
            if r.country == loc.country
            and (r.region is None or r.region in wanted)
            and r.applies(purpose, day)
        )


@cache
def load_windows() -> WindowTable:
    """The shipped table (parsed once)."""
    rows = load_toml("calling_windows.toml").get("window", [])
    return WindowTable(tuple(_rule_from_row(row, i) for i, row in enumerate(rows)))


def warm_holidays(today: date) -> int:
    """Build now every holiday calendar the shipped rules can ask for, this year and next
    (the next opening is looked for up to HORIZON ahead). Built lazily instead, the first
    call to a state with holiday rules stalled the proxy for ~0.3 s while the `holidays`
    package loaded: every call queued behind it waited (the bench's p99 at 1,000 calls/s).
    Returns how many rules were warmed."""
    rules = [rule for rule in load_windows().rules if rule.holidays_closed]
    for rule in rules:
        for year in (today.year, today.year + 1):
            rule.holiday(date(year, 1, 1))
    return len(rules)


def campaign_rule(campaign: str, hours: WeekHours) -> WindowRule:
    """A campaign's own hours, read in the called party's zones like any other rule."""
    return WindowRule(
        id=f"campaign:{campaign}",
        country="",
        region=None,
        hours=hours,
        source=f"campaign {campaign!r} configuration",
    )


@dataclass(frozen=True, slots=True)
class Check:
    """One rule read in one zone."""

    rule: WindowRule
    zone: str
    extra_holidays: Mapping[date, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        return f"{self.rule.id}@{self.zone}"

    def holiday(self, day: date) -> str | None:
        return self.rule.holiday(day, self.extra_holidays)

    def intervals(self, day: date) -> tuple[Interval, ...]:
        if self.holiday(day):
            return ()
        return self.rule.hours.days[day.weekday()]

    def is_open(self, instant: datetime) -> bool:
        local = instant.astimezone(zone_info(self.zone))
        seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        return any(s * 60 <= seconds < e * 60 for s, e in self.intervals(local.date()))

    def openings(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Instants in (after, until] at which one of this check's intervals starts."""
        tz = zone_info(self.zone)
        day = after.astimezone(tz).date() - timedelta(days=1)
        last = until.astimezone(tz).date()
        while day <= last:
            for start, _ in self.intervals(day):
                if start >= 24 * 60:
                    continue
                wall = datetime.combine(day, time(start // 60, start % 60), tzinfo=tz)
                for fold in (0, 1):  # a wall time that occurs twice (DST ends) opens twice
                    instant = wall.replace(fold=fold).astimezone(UTC)
                    if after < instant <= until:
                        yield instant
            day += timedelta(days=1)


def build_checks(
    locations: Sequence[Location],
    purpose: str,
    now: datetime,
    *,
    campaign_hours: WindowRule | None = None,
    extra_holidays: Mapping[str, Mapping[date, str]] | None = None,
    table: WindowTable | None = None,
) -> tuple[tuple[Check, ...], tuple[str, ...]]:
    """Every (rule, zone) that applies, and notes on uncertain facts for the trail.

    An entry of the second tuple starting with "unknown-zone" means a rule applies but the
    zone where the call rings is not known: the caller must treat the call as outside.
    """
    table = table or load_windows()
    day = now.astimezone(UTC).date()
    extra = extra_holidays or {}
    checks: dict[tuple[object, ...], Check] = {}
    notes: list[str] = []
    for loc in locations:
        zones = loc.zones or tuple(
            sorted({z for r in (loc.regions or (loc.country,)) for z in region_zones(r)})
        )
        rules = list(table.for_location(loc, purpose, day))
        if loc.country and not loc.regions and any(r.region for r in rules):
            notes.append(f"{loc.country} state unknown: every state rule applied")
        if campaign_hours is not None:
            rules.append(campaign_hours)
        if rules and not zones:
            notes.append(f"unknown-zone for {loc.country or 'unknown country'} ({loc.source})")
            continue
        for rule in rules:
            holidays = extra.get(rule.region or rule.country, {})
            for zone in (rule.zone,) if rule.zone else zones:
                checks.setdefault(_same_hours(rule, zone, holidays), Check(rule, zone, holidays))
    return tuple(checks.values()), tuple(notes)


def _same_hours(rule: WindowRule, zone: str, holidays: Mapping[date, str]) -> tuple[object, ...]:
    """Checks with this key open and close at the same instants; one of them is enough
    (the first rule's id names it on the trail)."""
    calendar = None
    if rule.holidays_closed:
        subdiv = rule.region if rule.holiday_calendar == "subdivision" else None
        calendar = (rule.country, subdiv, rule.holiday_categories, tuple(sorted(holidays.items())))
    return (rule.hours, zone, calendar)


def next_opening(
    checks: Sequence[Check], now: datetime, horizon: timedelta = HORIZON
) -> datetime | None:
    """The earliest instant >= now inside every check (UTC), or None within `horizon`."""
    require_aware(now)
    if all(c.is_open(now) for c in checks):
        return now.astimezone(UTC)
    low, end = now, now + horizon
    while low < end:  # a day at a time: the opening is usually within a day or two
        high = min(low + timedelta(days=1), end)
        for instant in sorted({t for c in checks for t in c.openings(low, high)}):
            if all(c.is_open(instant) for c in checks):
                return instant
        low = high
    return None


def check_calling_window(
    number: Location,
    now: datetime,
    *,
    purpose: str = "telemarketing",
    campaign: str = "default",
    campaign_hours: WeekHours | None = None,
    known_addresses: Sequence[Location] = (),
    extra_holidays: Mapping[str, Mapping[date, str]] | None = None,
    table: WindowTable | None = None,
) -> RuleResult:
    """Pass when `now` is inside every applicable window; else block
    `outside-calling-window` with `opens_at` (aware UTC; None if not within 21 days)."""
    narrow = campaign_rule(campaign, campaign_hours) if campaign_hours is not None else None
    state = window_state(
        (number, *known_addresses), now, purpose=purpose, campaign_hours=narrow,
        extra_holidays=extra_holidays, table=table,
    )
    return state.at(now)


@dataclass(frozen=True, slots=True)
class WindowState:
    """The calling-window answer for one UTC minute of wall time.

    Every interval starts and ends on a whole local minute and zone offsets are whole
    minutes, so whether each check is open cannot change within a UTC minute, nor can the
    next opening of a closed minute (it lies past the minute's end): the engine keeps one
    WindowState per (location, campaign) and minute and only formats the detail per call.
    """

    result: RuleResult | None  # pass (or unknown-zone block): the same for the whole minute
    closed: tuple[Check, ...] = ()
    opens: datetime | None = None
    note: str = ""

    def at(self, now: datetime) -> RuleResult:
        if self.result is not None:
            return self.result
        when = f"; opens {self.opens.isoformat()}" if self.opens else "; no opening within 21 days"
        detail = _closed_detail(self.closed, now) + when + self.note
        return blocked(RULE, Reason.OUTSIDE_CALLING_WINDOW, detail, self.opens)


def window_state(
    located: Sequence[Location],
    now: datetime,
    *,
    purpose: str = "telemarketing",
    campaign_hours: WindowRule | None = None,
    extra_holidays: Mapping[str, Mapping[date, str]] | None = None,
    table: WindowTable | None = None,
) -> WindowState:
    """Evaluate the windows of every location in `located` (the number's first) at `now`."""
    require_aware(now)
    checks, notes = build_checks(
        located, purpose, now, campaign_hours=campaign_hours,
        extra_holidays=extra_holidays, table=table,
    )
    unknown = [n for n in notes if n.startswith("unknown-zone")]
    if unknown:
        return WindowState(blocked(RULE, Reason.OUTSIDE_CALLING_WINDOW, "; ".join(unknown)))
    if not checks:
        country = located[0].country if located else ""
        return WindowState(
            passed(RULE, f"no calling window applies to {country or 'this number'}")
        )
    closed = tuple(c for c in checks if not c.is_open(now))
    note = ("; " + "; ".join(notes)) if notes else ""
    if not closed:
        ids = sorted({c.rule.id for c in checks})
        zones = sorted({c.zone for c in checks})
        return WindowState(passed(RULE, f"inside {', '.join(ids)} in {', '.join(zones)}{note}"))
    return WindowState(None, closed, next_opening(checks, now), note)


def _closed_detail(closed: Sequence[Check], now: datetime) -> str:
    """'us-fl closed at 20:00 CST (America/Chicago), ...: mon-sun 08:00-20:00 [source]'."""
    by_rule: dict[str, list[Check]] = {}
    for check in closed:
        by_rule.setdefault(check.rule.id, []).append(check)
    parts = []
    for rule_id, checks in by_rule.items():
        rule = checks[0].rule
        where = []
        for check in checks:
            local = now.astimezone(zone_info(check.zone))
            holiday = check.holiday(local.date())
            label = f"{local:%a %Y-%m-%d %H:%M %Z} {check.zone}"  # the minute decides
            where.append(f"{label} ({holiday})" if holiday else label)
        parts.append(
            f"{rule_id} closed at {', '.join(where)}: {rule.hours.describe()} [{rule.source}]"
        )
    return "; ".join(parts)
