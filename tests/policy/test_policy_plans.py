"""Plans and trails (policy/plans.py): calls on the same path share their trail and their
Decision, whatever other paths come between, and what is kept stays bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sipguard.config import CampaignConfig, PolicyConfig
from sipguard.policy import plans
from sipguard.policy.engine import RULES, decide
from sipguard.policy.facts import MemoryFacts
from sipguard.policy.model import Attempt, Consent, ConsentType, Decision, ListKind, Membership

NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)  # 11:00 in New York, 08:00 in Los Angeles
NY, LA = "+12125551234", "+13105551234"
CAMPAIGN, POLICY = CampaignConfig(), PolicyConfig()


def call(number: str, facts: MemoryFacts | None = None) -> Decision:
    return decide(Attempt(number, number, None, "default", ""), facts or MemoryFacts(),
                  CAMPAIGN, POLICY, NOW)


def test_calls_on_the_same_path_share_one_decision_between_other_paths() -> None:
    ny, la = call(NY), call(LA)
    assert ny.trail != la.trail  # each calling window names its own zone
    for _ in range(3):
        assert call(NY) is ny
        assert call(LA) is la


def test_a_step_made_for_one_call_is_on_its_trail_and_not_kept() -> None:
    national = Membership("national", ListKind.NATIONAL, None, None, None)
    facts = MemoryFacts([(NY, national)])
    kept = plans._trails_kept
    for i in range(1, 20):
        facts.add_consent(Consent(i, NY, "default", ConsentType.EXPRESS_WRITTEN,
                                  NOW - timedelta(days=i), None, None, None, "form"))
        decision = call(NY, facts)
        assert decision.consent_id == 1  # the newest
        assert f"#{decision.consent_id}" in decision.trail[8].detail
    assert plans._trails_kept - kept < 5  # one path, its override steps not kept


def test_past_the_bound_the_plans_start_again_and_decide_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = call(NY), call(LA)
    plans._drop_plans()
    monkeypatch.setattr(plans, "TRAIL_LIMIT", 3)
    for _ in range(5):
        assert (call(NY).trail, call(LA).trail) == (before[0].trail, before[1].trail)
        assert plans._trails_kept <= 3


def test_calls_the_calling_window_blocks_share_its_decision_for_the_minute() -> None:
    night = NOW.replace(hour=6)  # 02:00 in New York, 23:00 in Los Angeles
    facts = MemoryFacts()

    def at(number: str, now: datetime, policy: PolicyConfig = POLICY) -> Decision:
        return decide(Attempt(number, number, None, "default", ""), facts, CAMPAIGN, policy,
                      now)

    ny, la = at(NY, night), at(LA, night)
    assert (ny.reason, la.reason) == ("outside-calling-window", "outside-calling-window")
    assert ny.trail[-1].detail != la.trail[-1].detail
    assert at(NY, night + timedelta(seconds=30)) is ny
    assert at(LA, night + timedelta(seconds=59)) is la
    later = at(NY, night + timedelta(minutes=1))  # a new minute: the detail tells its time
    assert later is not ny and later.trail[-1].detail != ny.trail[-1].detail
    flagged = at(NY, night, PolicyConfig(mode="monitor"))
    assert flagged.action == "flag" and flagged.trail[-1].outcome == "flag"
    assert flagged.trail[:-1] == ny.trail[:-1] and flagged.opens_at == ny.opens_at


def test_campaigns_taking_turns_keep_their_plans() -> None:
    other = CampaignConfig(lists=("internal",))
    rules = RULES
    a = plans.plan_for(rules, CAMPAIGN, POLICY, "default", False)
    b = plans.plan_for(rules, other, POLICY, "other", False)
    for _ in range(3):
        assert plans.plan_for(rules, CAMPAIGN, POLICY, "default", False) is a
        assert plans.plan_for(rules, other, POLICY, "other", False) is b
    changed = plans.plan_for(rules, other, POLICY, "default", False)  # a config reloaded
    assert changed is not a and changed.campaign is other
