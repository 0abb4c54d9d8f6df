"""National list freshness (safe harbor) and stale_list = block."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from rules.helpers_rules import utc
from sipguard.config import CampaignConfig, Config
from sipguard.housekeeping import warn_missing_lists
from sipguard.policy.facts import MemoryFacts
from sipguard.policy.freshness import check_stale_list, missing_lists, stale_lists
from sipguard.policy.model import ListInfo, ListKind, Reason

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


def test_a_list_named_by_name_that_the_store_lacks_warns_and_blocks() -> None:
    lists = [Info("national", ListKind.NATIONAL, "US", NOW)]
    campaign_lists = ["internal", "national", "state", "acme-suppression"]
    assert missing_lists(campaign_lists, lists) == ("acme-suppression",)  # "state": a kind
    warn = check_stale_list(campaign_lists, lists, "warn", NOW, "US")
    assert not warn.blocked
    assert warn.step.detail == ("warning: list 'acme-suppression' is not in the store (import "
                                "it, or correct the campaign's lists)")
    block = check_stale_list(campaign_lists, lists, "block", NOW, "US", overridden=True)
    assert block.blocked and block.reason is Reason.DNC_CUSTOM  # nothing overrides it
    held = [*lists, Info("acme-suppression", ListKind.CUSTOM, None, None)]
    assert missing_lists(campaign_lists, held) == ()
    fresh = check_stale_list(campaign_lists, held, "block", NOW, "US")
    assert not fresh.blocked  # a custom list has no age limit, even never refreshed


def test_a_stale_national_list_named_by_kind_is_checked() -> None:
    lists = [Info("federal-2026", ListKind.NATIONAL, "US", NOW - timedelta(days=40))]
    block = check_stale_list(["national"], lists, "block", NOW, "US")
    assert block.blocked and block.reason is Reason.DNC_NATIONAL


def test_serve_warns_about_each_missing_list_of_each_campaign() -> None:
    class Log:
        def __init__(self) -> None:
            self.lines: list[tuple[str, dict[str, object]]] = []

        def warning(self, event: str, **fields: object) -> None:
            self.lines.append((event, fields))

    config = Config(campaigns={
        "default": CampaignConfig(),  # kinds only: but the national registry is required
        "acme": CampaignConfig(lists=("internal", "acme-suppression", "partner")),
    })
    log = Log()
    facts = MemoryFacts(lists=[ListInfo("partner", ListKind.CUSTOM, None, None)])
    assert warn_missing_lists(facts, config, log) == 2
    assert [(e, f["campaign"], f["list"], f["stale_list"]) for e, f in log.lines] == [
        ("dnc.list_missing", "default", "national", "warn"),
        ("dnc.list_missing", "acme", "acme-suppression", "warn")]
    assert "import the registry" in str(log.lines[0][1]["detail"])


def test_a_campaign_naming_national_with_no_national_list_warns_and_blocks_national() -> None:
    """16 CFR 310.4(b)(1)(iii)(B): the registry must be scrubbed. With none in the store the
    campaign is checked against nothing: said like a stale copy, and blocked like one
    (dnc-national, a DNC override still applies) with stale_list = "block"."""
    lists = [Info("internal", ListKind.INTERNAL, None, None)]
    assert missing_lists(["internal", "national", "state"], lists) == ("national",)
    warn = check_stale_list(["internal", "national"], lists, "warn", NOW, "US")
    assert not warn.blocked and "no national do-not-call list" in warn.step.detail
    block = check_stale_list(["internal", "national"], lists, "block", NOW, "US")
    assert block.blocked and block.reason is Reason.DNC_NATIONAL
    assert not check_stale_list(["national"], lists, "block", NOW, "US", overridden=True).blocked
    assert not check_stale_list(["internal"], lists, "block", NOW, "US").blocked
    uk = [*lists, Info("tps", ListKind.NATIONAL, "GB", NOW)]  # some national list is held
    assert missing_lists(["national"], uk) == ()


def test_a_callee_country_no_national_list_holds() -> None:
    lists = [Info("national", ListKind.NATIONAL, None, NOW)]  # default region: US
    assert check_stale_list(["national"], lists, "block", NOW, "US", country="US").blocked is False
    for country in ("CA", "GB", "AU"):
        gap = check_stale_list(["national"], lists, "block", NOW, "US", country=country)
        assert gap.blocked and gap.reason is Reason.DNC_NATIONAL
        assert f"no national do-not-call list for {country}" in gap.step.detail
        assert not check_stale_list(["national"], lists, "block", NOW, "US", country=country,
                                    overridden=True).blocked
    assert not check_stale_list(["national"], lists, "block", NOW, "US", country="FR").blocked
    tps = [*lists, Info("tps", ListKind.NATIONAL, "UK", NOW)]  # UK is GB
    assert not check_stale_list(["national"], tps, "block", NOW, "US", country="GB").blocked
    assert not check_stale_list(["internal"], lists, "block", NOW, "US", country="CA").blocked
