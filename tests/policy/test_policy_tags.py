"""Tag mode (`tag_reasons`, CONTRACT §4 "a rule in tag mode"): the key's validation, the
trail a tagged decision leaves, and the flag on the wire."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from sipguard.config import CampaignConfig, Config, PolicyConfig, parse_config
from sipguard.errors import ConfigError
from sipguard.policy.engine import decide
from sipguard.policy.facts import MemoryFacts
from sipguard.policy.gate import Gate
from sipguard.policy.model import (
    TAGGABLE,
    Action,
    Attempt,
    Decision,
    DecisionRecord,
    ListKind,
    Membership,
    Reason,
)
from sipguard.sip.message import Request
from sipguard.sip.parser import parse_message
from sipguard.sip.peer import Peer
from sipguard.sip.verdict import Allow, Block

NOW = datetime(2026, 6, 3, 16, 0, tzinfo=UTC)  # a Wednesday, 12:00 in New York
NIGHT = datetime(2026, 6, 4, 3, 0, tzinfo=UTC)  # 23:00 in New York: outside the window
NY = "+12125551234"
LITIGATOR = Membership("litigator", ListKind.LITIGATOR, None, None, None)
NATIONAL = Membership("national", ListKind.NATIONAL, "US", None, None)


def config(**policy: Any) -> dict[str, Any]:
    return {"policy": policy, "campaigns": {"default": {}}}


# -- the key ------------------------------------------------------------------------------


def test_every_block_reason_but_two_can_be_tagged() -> None:
    parsed = parse_config(config(tag_reasons=sorted(TAGGABLE)))
    assert set(parsed.policy.tag_reasons) == TAGGABLE
    assert Reason.DNC_CUSTOM in TAGGABLE
    assert Reason.INVALID_NUMBER not in TAGGABLE
    assert Reason.STORE_UNAVAILABLE not in TAGGABLE


@pytest.mark.parametrize(("value", "key", "problem"), [
    (["frequency-cap", "too-late"], r"policy\.tag_reasons\[1\]", "is not a reason code"),
    (["no-restriction"], r"policy\.tag_reasons\[0\]", "is an allow reason"),
    (["emergency"], r"policy\.tag_reasons\[0\]", "is an allow reason"),
    (["store-unavailable"], r"policy\.tag_reasons\[0\]", "on_store_error"),
    (["invalid-number"], r"policy\.tag_reasons\[0\]", "checked against no list"),
    ("frequency-cap", r"policy\.tag_reasons", "must be a list"),
])
def test_the_key_refuses_what_is_not_a_rule_s_block(value: object, key: str,
                                                    problem: str) -> None:
    with pytest.raises(ConfigError, match=key) as raised:
        parse_config(config(tag_reasons=value))
    assert problem in str(raised.value)


def test_a_campaign_s_key_is_validated_and_named() -> None:
    data = {"campaigns": {"default": {}, "pilot": {"tag_reasons": ["consent"]}}}
    with pytest.raises(ConfigError, match=r"campaigns\.pilot\.tag_reasons\[0\]"):
        parse_config(data)
    ok = parse_config({"campaigns": {"default": {},
                                     "pilot": {"tag_reasons": ["outside-calling-window"]}}})
    assert ok.campaigns["pilot"].tag_reasons == ("outside-calling-window",)
    assert ok.policy.tag_reasons == ()


# -- the decision ---------------------------------------------------------------------------


PLAIN, ENFORCE = CampaignConfig(), PolicyConfig()


def call(facts: MemoryFacts, now: datetime = NOW, policy: PolicyConfig = ENFORCE,
         campaign: CampaignConfig = PLAIN) -> Decision:
    return decide(Attempt(NY, NY, None, "default", "c1"), facts, campaign, policy, now)


def steps(decision: Decision) -> list[tuple[str, str]]:
    return [(s.rule, s.outcome) for s in decision.trail]


def test_a_tagged_window_is_flagged_with_every_rule_after_it_in_the_trail() -> None:
    policy = PolicyConfig(tag_reasons=("outside-calling-window",))
    decision = call(MemoryFacts(), NIGHT, policy)
    assert (decision.action, decision.reason, decision.rule) == (
        Action.FLAG, Reason.OUTSIDE_CALLING_WINDOW, "calling-window")
    assert call(MemoryFacts(), NIGHT, policy) is decision  # the minute's calls share it
    assert decision.opens_at == datetime(2026, 6, 4, 12, 0, tzinfo=UTC)  # 08:00 New York
    assert steps(decision) == [
        ("emergency", "pass"), ("valid-number", "pass"), ("subject-rights", "pass"),
        ("caller-id", "skip"), ("calling-window", "tag"), ("internal-dnc", "pass"),
        ("custom-dnc", "pass"), ("litigator", "pass"), ("national-state-dnc", "pass"),
        ("stale-list", "pass"), ("reassigned", "skip"), ("wireless", "skip"),
        ("require-consent", "skip"), ("frequency-cap", "skip"), ("calling-window", "flag"),
    ]
    assert decision.trail[4].detail == "outside-calling-window in tag mode (policy.tag_reasons)"
    enforced = call(MemoryFacts(), NIGHT)
    assert (enforced.action, enforced.reason) == (Action.BLOCK, Reason.OUTSIDE_CALLING_WINDOW)
    assert "America/New_York" in enforced.trail[-1].detail
    assert decision.trail[-1].detail == (  # the flag tells the rule's own detail
        "outside-calling-window in tag mode (policy.tag_reasons); no later rule blocks: "
        f"{enforced.trail[-1].detail}")


def test_a_tagged_window_never_hides_the_national_list() -> None:
    policy = PolicyConfig(tag_reasons=("outside-calling-window",))
    decision = call(MemoryFacts([(NY, NATIONAL)]), NIGHT, policy)
    assert (decision.action, decision.reason, decision.rule) == (
        Action.BLOCK, Reason.DNC_NATIONAL, "national-state-dnc")
    assert ("calling-window", "tag") in steps(decision)


def test_a_campaign_s_tags_add_to_the_policy_s_and_name_their_key() -> None:
    campaign = CampaignConfig(tag_reasons=("dnc-national",))
    policy = PolicyConfig(tag_reasons=("litigator",))
    decision = call(MemoryFacts([(NY, LITIGATOR), (NY, NATIONAL)]), policy=policy,
                    campaign=campaign)
    assert (decision.action, decision.reason, decision.rule) == (
        Action.FLAG, Reason.LITIGATOR, "litigator")
    details = {s.rule: s.detail for s in decision.trail if s.outcome == "tag"}
    assert details == {  # their details are the same for every call: told here
        "litigator": "litigator in tag mode (policy.tag_reasons): litigator",
        "national-state-dnc": "dnc-national in tag mode (the campaign's tag_reasons): "
                              "national (US)",
    }


def test_tagged_calls_on_one_path_share_their_decision() -> None:
    policy = PolicyConfig(tag_reasons=("litigator",))
    facts = MemoryFacts([(NY, LITIGATOR)])
    first = call(facts, policy=policy)
    assert first.action is Action.FLAG
    assert call(facts, policy=policy) is first


# -- on the wire ----------------------------------------------------------------------------


def invite(number: str) -> Request:
    text = (f"INVITE sip:{number}@gw.example.com SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 10.1.0.5:5060;branch=z9hG4bK776asdhds\r\nMax-Forwards: 70\r\n"
            f"To: <sip:{number}@gw.example.com>\r\n"
            "From: <sip:+12125550100@10.1.0.5>;tag=1928301774\r\n"
            f"Call-ID: {number}@10.1.0.5\r\nCSeq: 1 INVITE\r\n"
            "Contact: <sip:dialer@10.1.0.5:5060>\r\nContent-Length: 0\r\n\r\n")
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def test_the_gate_forwards_a_tagged_block_with_a_flag_and_blocks_a_hard_one() -> None:
    other = "+13125551234"
    facts = MemoryFacts([(NY, LITIGATOR), (other, LITIGATOR), (other, NATIONAL)])
    records: list[DecisionRecord] = []
    cfg = Config(policy=replace(PolicyConfig(), tag_reasons=("litigator",)))
    gate = Gate(cfg, facts, records.append, wall_clock=NOW.timestamp)
    flagged = gate(invite(NY), Peer("udp", "10.1.0.5", 5060), 1.0)
    assert isinstance(flagged, Allow)
    value = flagged.headers[0].value
    assert value == f"flag;reason=litigator;id={records[0].decision_id}"
    assert records[0].action is Action.FLAG
    blocked = gate(invite(other), Peer("udp", "10.1.0.5", 5060), 1.0)
    assert isinstance(blocked, Block) and blocked.status == 603
    assert records[1].reason is Reason.DNC_NATIONAL
