"""National do-not-call list freshness (the safe harbor needs a recent copy).

A `national` list older than its jurisdiction's limit (`data/consent_rules.toml`: US and CA
31 days, UK TPS 28, AU 30) is stale: `serve` warns at start and every hour
(`stale_lists`), and with `[policy] stale_list = "block"` a call that depends on it is
blocked with reason `dnc-national` (rule `stale-list`): the gateway cannot show the
number was not registered, so it treats it as registered. A call does not depend on the
list when a DNC override (express-written consent or a live EBR) lets it through anyway.
A list never refreshed (`refreshed_at` unknown) is stale.

Other kinds have no legal age limit (an internal or `custom` list is the seller's own
record, current by construction; a litigator or wireless file is as fresh as its vendor's
last delivery: `sipguard dnc lists` shows when each was refreshed).

A list a campaign names by name that the store does not hold (`missing_lists`: not
imported yet, or a typo) is the limit of a stale list, a copy that does not exist: the
campaign believes it is checked and nothing is. It is warned about like a stale list
(`dnc.list_missing` at start and every hour, a warning in the trail), and with
`stale_list = "block"` the campaign's calls are blocked with reason `dnc-custom` (a
name that is not a kind says nothing else about the list; no consent overrides a list
whose entries cannot be read). A kind named with no list of it (`"state"` before any
state list is imported) is not missing: it means every list of that kind, none or many,
and the shipped default campaign names every kind. Except `"national"`: a seller must
scrub against the national registry (16 CFR 310.4(b)(1)(iii)(B); 47 CFR 64.1200(c)(2)),
so a campaign that names it while the store holds no national list is warned about the
same way, and with "block" its calls are blocked `dnc-national` as with a stale copy
(a DNC override still lets a call through).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Literal

from sipguard.policy.model import ListKind, ListMeta, Reason
from sipguard.policy.rules_data import (
    RuleResult,
    blocked,
    load_toml,
    passed,
    require_aware,
    skipped,
)

RULE = "stale-list"
StaleMode = Literal["warn", "block"]
ALIASES = {"UK": "GB"}


@dataclass(frozen=True, slots=True)
class Limit:
    jurisdiction: str
    max_age: timedelta
    source: str


@dataclass(frozen=True, slots=True)
class Freshness:
    list_name: str
    jurisdiction: str
    age: timedelta | None  # None: never refreshed
    limit: Limit

    @property
    def stale(self) -> bool:
        return self.age is None or self.age > self.limit.max_age

    def describe(self) -> str:
        age = "never refreshed" if self.age is None else f"{self.age.days} days old"
        return (
            f"list {self.list_name!r} ({self.jurisdiction}) is {age}, "
            f"limit {self.limit.max_age.days} days [{self.limit.source}]"
        )


@cache
def limits() -> dict[str, Limit]:
    return {
        row["jurisdiction"]: Limit(
            row["jurisdiction"], timedelta(days=int(row["max_days"])), row["source"]
        )
        for row in load_toml("consent_rules.toml").get("freshness", [])
    }


def limit_for(jurisdiction: str | None, default_region: str) -> Limit | None:
    return limits().get(_country(jurisdiction or default_region))


def freshness(info: ListMeta, now: datetime, default_region: str) -> Freshness | None:
    """How old a national list is against its limit; None for other kinds or jurisdictions
    without a shipped limit."""
    require_aware(now)
    if info.kind != ListKind.NATIONAL:
        return None
    limit = limit_for(info.jurisdiction, default_region)
    if limit is None:
        return None
    age = None if info.refreshed_at is None else now - info.refreshed_at
    return Freshness(info.name, limit.jurisdiction, age, limit)


def stale_lists(lists: Iterable[ListMeta], now: datetime, default_region: str) -> list[Freshness]:
    """Stale national lists, for the warning `serve` logs at start and every hour."""
    out = []
    for info in lists:
        f = freshness(info, now, default_region)
        if f is not None and f.stale:
            out.append(f)
    return out


def missing_lists(campaign_lists: Iterable[str], lists: Iterable[ListMeta]) -> tuple[str, ...]:
    """The names in `campaign_lists` the store holds nothing for: neither a list kind nor a
    list in `lists`, and "national" while no national list is held."""
    lists = tuple(lists)
    held = {i.name for i in lists}
    national = any(i.kind is ListKind.NATIONAL for i in lists)
    kinds = ListKind._value2member_map_
    return tuple(n for n in dict.fromkeys(campaign_lists) if n not in held and (
        n not in kinds or (n == ListKind.NATIONAL and not national)))


def only_national_missing(missing: Iterable[str]) -> bool:
    """A missing national list blocks as a stale one does (`dnc-national`, overridable);
    any other missing name blocks `dnc-custom`."""
    return all(n == ListKind.NATIONAL for n in missing)


def describe_missing(name: str) -> str:
    if name == ListKind.NATIONAL:
        return ("no national do-not-call list is in the store (import the registry: "
                "sipguard dnc import FILE --list national)")
    return f"list {name!r} is not in the store (import it, or correct the campaign's lists)"


def national_coverage(
    campaign_lists: Iterable[str], lists: Iterable[ListMeta], default_region: str
) -> frozenset[str] | None:
    """The countries whose national registry the campaign's national lists hold (a list's
    jurisdiction, else `default_region`); None when the campaign checks no national list,
    or when it names "national" and the store holds none (`missing_lists` says that)."""
    wanted = set(campaign_lists)
    national = [i for i in lists if i.kind is ListKind.NATIONAL
                and (i.name in wanted or i.kind in wanted)]
    if not national:
        return None
    return frozenset(_country(i.jurisdiction or default_region) for i in national)


def uncovered(country: str, covered: frozenset[str]) -> str | None:
    """What to say when a call goes to a country with a national registry (one that
    `data/consent_rules.toml` gives an age limit) that none of the campaign's national
    lists holds: a US list says nothing of a Canadian or a UK number."""
    limit = limits().get(country)
    if limit is None or country in covered:
        return None
    return (f"no national do-not-call list for {country} is in the store, and the call "
            f"goes there [{limit.source}]")


def _country(jurisdiction: str) -> str:
    code = jurisdiction.split("-", maxsplit=1)[0].upper()
    return ALIASES.get(code, code)


def check_stale_list(
    campaign_lists: Sequence[str],
    lists: Iterable[ListMeta],
    mode: StaleMode,
    now: datetime,
    default_region: str,
    *,
    overridden: bool = False,
    country: str = "",
) -> RuleResult:
    """With mode "block", block `dnc-custom` when a list the campaign names is missing, and
    `dnc-national` when a national list it checks is stale or absent, or none holds the
    registry of the callee's `country`, and no DNC override applies; with "warn", pass
    with what is wrong in the trail."""
    wanted = set(campaign_lists)
    held = tuple(lists)
    missing = missing_lists(campaign_lists, held)
    checked = (i for i in held if i.name in wanted or i.kind in wanted)  # as Context.applies
    stale = stale_lists(checked, now, default_region)
    covered = national_coverage(campaign_lists, held, default_region)
    gap = None if covered is None else uncovered(country, covered)
    if not stale and not missing and gap is None:
        return passed(RULE, "national lists fresh")
    detail = "; ".join([*map(describe_missing, missing), *(f.describe() for f in stale),
                        *([gap] if gap else [])])
    if mode == "warn":
        return passed(RULE, f"warning: {detail}")
    if not only_national_missing(missing):
        return blocked(RULE, Reason.DNC_CUSTOM, f"stale_list = block: {detail}")
    if overridden:
        return skipped(RULE, f"DNC override applies; {detail}")
    return blocked(RULE, Reason.DNC_NATIONAL, f"stale_list = block: {detail}")
