"""National do-not-call list freshness (the safe harbor needs a recent copy).

A `national` list older than its jurisdiction's limit (`data/consent_rules.toml`: US and CA
31 days, UK TPS 28, AU 30) is stale: `serve` warns at start and every hour
(`stale_lists`), and with `[policy] stale_list = "block"` a call that depends on it is
blocked with reason `dnc-national` (rule `stale-list`): the gateway cannot show the
number was not registered, so it treats it as registered. A call does not depend on the
list when a DNC override (express-written consent or a live EBR) lets it through anyway.
A list never refreshed (`refreshed_at` unknown) is stale.
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
    code = (jurisdiction or default_region).split("-")[0].upper()
    return limits().get(ALIASES.get(code, code))


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


def check_stale_list(
    campaign_lists: Sequence[str],
    lists: Iterable[ListMeta],
    mode: StaleMode,
    now: datetime,
    default_region: str,
    *,
    overridden: bool = False,
) -> RuleResult:
    """With mode "block", block `dnc-national` when a national list the campaign checks is
    stale and no DNC override applies; with "warn", pass with the staleness in the trail."""
    wanted = set(campaign_lists)
    stale = stale_lists((i for i in lists if i.name in wanted), now, default_region)
    if not stale:
        return passed(RULE, "national lists fresh")
    detail = "; ".join(f.describe() for f in stale)
    if mode == "warn":
        return passed(RULE, f"warning: {detail}")
    if overridden:
        return skipped(RULE, f"DNC override applies; {detail}")
    return blocked(RULE, Reason.DNC_NATIONAL, f"stale_list = block: {detail}")
