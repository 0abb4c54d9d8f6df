"""National list freshness (safe harbor) and stale_list = block."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from rules.helpers_rules import utc
from sipguard.policy.freshness import check_stale_list, stale_lists
from sipguard.policy.model import ListKind, Reason

NOW = utc("2026-06-03 12:00:00")


@dataclass(frozen=True)
class Info:
    name: str
    kind: ListKind
    jurisdiction: str | None
    refreshed_at: datetime | None


@pytest.mark.parametrize(
    ("jurisdiction", "age", "stale"),
    [
        ("US", timedelta(days=31), False),
        ("US", timedelta(days=31, seconds=1), True),
        (None, timedelta(days=32), True),  # default region US
        ("GB", timedelta(days=28), False),
        ("UK", timedelta(days=28, hours=1), True),
        ("AU", timedelta(days=30), False),
        ("AU", timedelta(days=30, hours=1), True),
        ("CA", timedelta(days=32), True),
    ],
)
def test_limits(jurisdiction: str | None, age: timedelta, stale: bool) -> None:
    info = Info("national", ListKind.NATIONAL, jurisdiction, NOW - age)
    assert bool(stale_lists([info], NOW, "US")) is stale


def test_never_refreshed_is_stale_and_other_kinds_are_ignored() -> None:
    assert stale_lists([Info("national", ListKind.NATIONAL, "US", None)], NOW, "US")
    old_internal = Info("internal", ListKind.INTERNAL, None, NOW - timedelta(days=400))
    assert stale_lists([old_internal], NOW, "US") == []


def test_warn_and_block() -> None:
    lists = [Info("national", ListKind.NATIONAL, "US", NOW - timedelta(days=40))]
    campaign_lists = ["internal", "national"]
    warn = check_stale_list(campaign_lists, lists, "warn", NOW, "US")
    assert not warn.blocked and "warning" in warn.step.detail and "40 days" in warn.step.detail
    block = check_stale_list(campaign_lists, lists, "block", NOW, "US")
    assert block.blocked and block.reason is Reason.DNC_NATIONAL
    overridden = check_stale_list(campaign_lists, lists, "block", NOW, "US", overridden=True)
    assert not overridden.blocked
    unused = check_stale_list(["internal"], lists, "block", NOW, "US")
    assert not unused.blocked
