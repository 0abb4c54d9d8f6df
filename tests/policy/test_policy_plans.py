"""Plans and trails (policy/plans.py): calls on the same path share their trail and their
Decision, whatever other paths come between, and what is kept stays bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sipguard.config import CampaignConfig, PolicyConfig
from sipguard.policy import plans
from sipguard.policy.engine import decide
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
        assert f"#{decision.consent_id}" in decision.trail[6].detail
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
