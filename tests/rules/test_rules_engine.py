"""Issue 5's rules wired into decide(): the boundary cases of the issue through the engine,
with a frozen clock, and `sipguard check --at` as a subprocess against a real store file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sipguard.config import CampaignConfig, CapConfig, PolicyConfig
from sipguard.errors import PolicyError
from sipguard.policy.caps import AttemptCounter
from sipguard.policy.engine import RULES, decide
from sipguard.policy.facts import MemoryFacts
from sipguard.policy.model import (
    Action,
    Attempt,
    Consent,
    ConsentType,
    ListInfo,
    ListKind,
    Membership,
    Reason,
)

DAY = timedelta(days=1)
NY, PHOENIX, PANHANDLE = "+12125551234", "+16025551234", "+18505551234"
AUSTIN, NEW_ORLEANS, MIAMI = "+15125551234", "+15045551234", "+13055551234"
OWNED = "+12125550100"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    name: str
    number: str
    at: str  # UTC
    expect: Reason
    opens: str | None = None  # UTC, for outside-calling-window
    campaign: CampaignConfig = field(default_factory=CampaignConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    lists: tuple[Membership, ...] = ()
    consents: tuple[Consent, ...] = ()
    attempts: tuple[str, ...] = ()  # UTC times of earlier allowed calls (this campaign)
    caller: str | None = OWNED


def consent(kind: ConsentType, granted: datetime, number: str = NY, **kw: object) -> Consent:
    return Consent(1, number, "default", kind, granted, None, None, None, "form-1", **kw)  # type: ignore[arg-type]


NATIONAL = Membership("national", ListKind.NATIONAL, "US", None, None)
T0 = utc("2026-06-03 16:00")  # a Wednesday, 12:00 in New York


def reassigned(at: datetime) -> Membership:
    return Membership("rnd", ListKind.REASSIGNED, "US", at, None)


CASES = [
    # calling windows: 21:00 local is outside, 20:59:59 inside (EST, then EDT after DST)
    Case("NY 20:59:59 EST", NY, "2026-03-05 01:59:59", Reason.NO_RESTRICTION),
    Case("NY 21:00:00 EST", NY, "2026-03-05 02:00:00", Reason.OUTSIDE_CALLING_WINDOW,
         opens="2026-03-05 13:00"),
    Case("NY DST night 20:59:59 EDT", NY, "2026-03-09 00:59:59", Reason.NO_RESTRICTION),
    Case("NY DST night 21:00 EDT", NY, "2026-03-09 01:00:00", Reason.OUTSIDE_CALLING_WINDOW,
         opens="2026-03-09 12:00"),
    Case("NY 07:59 before DST starts, opens 08:00 EDT", NY, "2026-03-08 11:59",
         Reason.OUTSIDE_CALLING_WINDOW, opens="2026-03-08 12:00"),
    Case("Arizona 20:59:59 MST in July", PHOENIX, "2026-07-02 03:59:59", Reason.NO_RESTRICTION),
    Case("Arizona 21:00 MST in July", PHOENIX, "2026-07-02 04:00", Reason.OUTSIDE_CALLING_WINDOW,
         opens="2026-07-02 15:00"),
    Case("850: 08:30 Eastern but 07:30 Central", PANHANDLE, "2026-06-01 12:30",
         Reason.OUTSIDE_CALLING_WINDOW, opens="2026-06-01 13:00"),
    Case("850: 19:59 Central is 20:59 Eastern: FL closes at 20:00", PANHANDLE,
         "2026-06-02 00:59", Reason.OUTSIDE_CALLING_WINDOW, opens="2026-06-02 13:00"),
    Case("Texas Sunday 11:00", AUSTIN, "2026-06-07 16:00", Reason.OUTSIDE_CALLING_WINDOW,
         opens="2026-06-07 17:00"),
    Case("Texas Sunday 12:00", AUSTIN, "2026-06-07 17:00", Reason.NO_RESTRICTION),
    Case("Louisiana Christmas", NEW_ORLEANS, "2026-12-25 18:00", Reason.OUTSIDE_CALLING_WINDOW,
         opens="2026-12-26 14:00"),
    Case("campaign narrows the window", NY, "2026-06-03 23:30", Reason.OUTSIDE_CALLING_WINDOW,
         opens="2026-06-04 13:00",
         campaign=CampaignConfig(window={"weekdays": "09:00-18:00"})),
    Case("known address: NY number, subscriber in California", NY, "2026-06-03 14:30",
         Reason.OUTSIDE_CALLING_WINDOW, opens="2026-06-03 15:00",
         consents=(consent(ConsentType.EXPRESS, T0 - 9 * DAY, location_region="US-CA",
                           location_zone="America/Los_Angeles"),)),
    # frequency caps
    Case("Florida: 3rd call in 24 h", MIAMI, "2026-06-03 16:00", Reason.NO_RESTRICTION,
         attempts=("2026-06-02 16:00:01", "2026-06-03 10:00")),
    Case("Florida: 4th call in 24 h", MIAMI, "2026-06-03 16:00", Reason.FREQUENCY_CAP,
         attempts=("2026-06-02 16:00", "2026-06-03 10:00", "2026-06-03 12:00")),
    Case("Florida: the first of 3 is 24 h + 1 s old", MIAMI, "2026-06-03 16:00",
         Reason.NO_RESTRICTION,
         attempts=("2026-06-02 15:59:59", "2026-06-03 10:00", "2026-06-03 12:00")),
    Case("New York has no state cap", NY, "2026-06-03 16:00", Reason.NO_RESTRICTION,
         attempts=("2026-06-03 10:00", "2026-06-03 11:00", "2026-06-03 12:00")),
    Case("debt collection: 8th call in 7 days", NY, "2026-06-08 15:00", Reason.FREQUENCY_CAP,
         campaign=CampaignConfig(purpose="debt-collection"),
         attempts=tuple(f"2026-06-0{d} 15:00" for d in range(1, 8))),
    Case("debt collection: 7th call in 7 days", NY, "2026-06-08 15:00", Reason.NO_RESTRICTION,
         campaign=CampaignConfig(purpose="debt-collection"),
         attempts=tuple(f"2026-06-0{d} 15:00" for d in range(2, 8))),
    Case("campaign cap 2 per 24h", NY, "2026-06-03 16:00", Reason.FREQUENCY_CAP,
         campaign=CampaignConfig(caps=(CapConfig(2, "24h"),)),
         attempts=("2026-06-03 10:00", "2026-06-03 11:00")),
    # EBR: valid on day 540, void on day 541
    Case("EBR day 540 overrides the national list", NY, "2026-06-03 16:00", Reason.EBR,
         lists=(NATIONAL,), consents=(consent(ConsentType.EBR_PURCHASE, T0 - 540 * DAY),)),
    Case("EBR day 541 does not", NY, "2026-06-03 16:00", Reason.DNC_NATIONAL,
         lists=(NATIONAL,), consents=(consent(ConsentType.EBR_PURCHASE, T0 - 541 * DAY),)),
    # reassigned numbers: consent given before the disconnection is void
    Case("consent a day before the reassignment", NY, "2026-06-03 16:00",
         Reason.REASSIGNED_NUMBER, campaign=CampaignConfig(require_consent=True),
         lists=(reassigned(T0 - 10 * DAY),),
         consents=(consent(ConsentType.EXPRESS, T0 - 11 * DAY),)),
    Case("consent a day after the reassignment", NY, "2026-06-03 16:00", Reason.CONSENT,
         campaign=CampaignConfig(require_consent=True), lists=(reassigned(T0 - 10 * DAY),),
         consents=(consent(ConsentType.EXPRESS, T0 - 9 * DAY),)),
    # wireless + autodialed telemarketing needs express-written consent
    Case("wireless, autodialed, express only", NY, "2026-06-03 16:00", Reason.NO_CONSENT,
         campaign=CampaignConfig(autodialed=True),
         lists=(Membership("wireless", ListKind.WIRELESS, "US", None, None),),
         consents=(consent(ConsentType.EXPRESS, T0 - DAY),)),
    # caller ID
    Case("caller ID not the company's", NY, "2026-06-03 16:00", Reason.CALLER_ID_NOT_ALLOWED,
         campaign=CampaignConfig(allowed_caller_ids=(OWNED,)), caller="+13125557000"),
    Case("caller ID missing", NY, "2026-06-03 16:00", Reason.CALLER_ID_NOT_ALLOWED,
         campaign=CampaignConfig(allowed_caller_ids=(OWNED,)), caller=None),
    Case("caller ID owned", NY, "2026-06-03 16:00", Reason.NO_RESTRICTION,
         campaign=CampaignConfig(allowed_caller_ids=("(212) 555-0100",))),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide_with_the_rules(case: Case) -> None:
    facts = MemoryFacts([(case.number, m) for m in case.lists],
                        [replace(c, number=case.number) for c in case.consents])
    counter = AttemptCounter(timedelta(days=8))
    for i, at in enumerate(case.attempts):
        counter.record(case.number, "default", f"earlier-{i}", utc(at))
    attempt = Attempt(case.number, case.number, case.caller, "default", "call-1")
    decision = decide(attempt, facts, case.campaign, case.policy, utc(case.at), counter=counter)
    assert decision.reason is case.expect, decision.as_dict()
    if case.opens is not None:
        assert decision.opens_at == utc(case.opens), decision.as_dict()
    rules = [s.rule for s in decision.trail]
    assert rules == [*[r.name for r in RULES][: len(rules) - 1], decision.rule]


def test_the_window_cache_gives_each_call_its_own_minute() -> None:
    facts, campaign, policy = MemoryFacts(), CampaignConfig(), PolicyConfig()
    for text, reason in (("2026-03-05 01:59:59", Reason.NO_RESTRICTION),
                         ("2026-03-05 02:00:00", Reason.OUTSIDE_CALLING_WINDOW),
                         ("2026-03-05 01:59:30", Reason.NO_RESTRICTION),
                         ("2026-03-05 02:00:30", Reason.OUTSIDE_CALLING_WINDOW)):
        decision = decide(Attempt(NY, NY, None, "default", ""), facts, campaign, policy, utc(text))
        assert decision.reason is reason, text


def test_the_minute_caches_read_now_as_an_instant_and_refuse_a_naive_one() -> None:
    facts, campaign, policy = MemoryFacts(), CampaignConfig(), PolicyConfig()
    attempt = Attempt(NY, NY, None, "default", "")
    inside = utc("2026-03-05 01:59:00")  # 20:59 in New York
    assert decide(attempt, facts, campaign, policy, inside).reason is Reason.NO_RESTRICTION
    with pytest.raises(PolicyError):  # even within the minute the caches hold
        decide(attempt, facts, campaign, policy, inside.replace(tzinfo=None))
    local = utc("2026-03-05 02:00:00").astimezone(ZoneInfo("America/New_York"))
    decision = decide(attempt, facts, campaign, policy, local)
    assert decision.reason is Reason.OUTSIDE_CALLING_WINDOW


def test_monitor_mode_flags_outside_the_window_with_opens_at() -> None:
    decision = decide(Attempt(NY, NY, None, "default", ""), MemoryFacts(), CampaignConfig(),
                      PolicyConfig(mode="monitor"), utc("2026-03-05 02:00"))
    assert (decision.action, decision.reason) == (Action.FLAG, Reason.OUTSIDE_CALLING_WINDOW)
    assert decision.opens_at == utc("2026-03-05 13:00")


def test_a_stale_national_list_blocks_when_configured() -> None:
    old = ListInfo("national", ListKind.NATIONAL, "US", T0 - 32 * DAY)
    facts = MemoryFacts(lists=[old])
    attempt = Attempt(NY, NY, None, "default", "")
    warn = decide(attempt, facts, CampaignConfig(), PolicyConfig(), T0)
    assert warn.reason is Reason.NO_RESTRICTION
    assert any(s.rule == "stale-list" and "warning" in s.detail for s in warn.trail)
    block = decide(attempt, facts, CampaignConfig(), PolicyConfig(stale_list="block"), T0)
    assert (block.reason, block.rule) == (Reason.DNC_NATIONAL, "stale-list")
    fresh = MemoryFacts(lists=[ListInfo("national", ListKind.NATIONAL, "US", T0 - 31 * DAY)])
    assert decide(attempt, fresh, CampaignConfig(), PolicyConfig(stale_list="block"),
                  T0).reason is Reason.NO_RESTRICTION


def test_a_call_to_a_country_whose_registry_no_national_list_holds() -> None:
    """A US registry copy says nothing of a Toronto number: Canada's National DNCL is not
    in the store. Said in the trail, and blocked dnc-national with stale_list = "block",
    as a stale copy would be; a US number, or a country without a registry, is fine."""
    toronto = "+14163642500"
    us_only = MemoryFacts(lists=[ListInfo("national", ListKind.NATIONAL, "US", T0 - DAY)])
    attempt = Attempt(toronto, toronto, None, "default", "")
    warn = decide(attempt, us_only, CampaignConfig(), PolicyConfig(), T0)
    assert warn.reason is Reason.NO_RESTRICTION
    (step,) = [s for s in warn.trail if s.rule == "stale-list"]
    assert "no national do-not-call list for CA" in step.detail and "CRTC" in step.detail
    block = decide(attempt, us_only, CampaignConfig(), PolicyConfig(stale_list="block"), T0)
    assert (block.reason, block.rule) == (Reason.DNC_NATIONAL, "stale-list")
    both = MemoryFacts(lists=[*us_only.lists(),
                              ListInfo("dncl", ListKind.NATIONAL, "CA", T0 - DAY)])
    assert decide(attempt, both, CampaignConfig(), PolicyConfig(stale_list="block"),
                  T0).reason is Reason.NO_RESTRICTION
    ny = Attempt(NY, NY, None, "default", "")
    assert decide(ny, us_only, CampaignConfig(), PolicyConfig(stale_list="block"),
                  T0).reason is Reason.NO_RESTRICTION
    # a campaign that checks no national list is not asked about one
    internal_only = CampaignConfig(lists=("internal",))
    assert decide(attempt, us_only, internal_only, PolicyConfig(stale_list="block"),
                  T0).reason is Reason.NO_RESTRICTION


def test_caps_in_tag_mode_flag_the_fourth_florida_call() -> None:
    counter = AttemptCounter(timedelta(days=8))
    for i, at in enumerate(("2026-06-02 16:00", "2026-06-03 10:00", "2026-06-03 12:00")):
        counter.record(MIAMI, "default", f"earlier-{i}", utc(at))
    attempt = Attempt(MIAMI, MIAMI, None, "default", "call-1")
    tagging = PolicyConfig(tag_reasons=("frequency-cap",))
    decision = decide(attempt, MemoryFacts(), CampaignConfig(), tagging, T0, counter=counter)
    assert (decision.action, decision.reason, decision.rule) == (
        Action.FLAG, Reason.FREQUENCY_CAP, "frequency-cap")
    assert [(s.rule, s.outcome) for s in decision.trail[-2:]] == [
        ("frequency-cap", "tag"), ("frequency-cap", "flag")]
    enforced = decide(attempt, MemoryFacts(), CampaignConfig(), PolicyConfig(), T0,
                      counter=counter)
    assert (enforced.action, enforced.reason) == (Action.BLOCK, Reason.FREQUENCY_CAP)


def test_tagged_window_and_cap_flag_with_the_window_and_a_listed_number_still_blocks() -> None:
    counter = AttemptCounter(timedelta(days=8))
    for i, at in enumerate(("2026-06-03 23:00", "2026-06-04 00:00", "2026-06-04 00:30")):
        counter.record(MIAMI, "default", f"earlier-{i}", utc(at))
    night = utc("2026-06-04 01:30")  # 21:30 in Miami
    both = PolicyConfig(tag_reasons=("outside-calling-window", "frequency-cap"))
    attempt = Attempt(MIAMI, MIAMI, None, "default", "call-1")
    flagged = decide(attempt, MemoryFacts(), CampaignConfig(), both, night, counter=counter)
    assert (flagged.action, flagged.reason, flagged.rule) == (
        Action.FLAG, Reason.OUTSIDE_CALLING_WINDOW, "calling-window")
    assert [s.rule for s in flagged.trail if s.outcome == "tag"] == [
        "calling-window", "frequency-cap"]
    listed = MemoryFacts([(MIAMI, NATIONAL)])
    blocked = decide(attempt, listed, CampaignConfig(), both, night, counter=counter)
    assert (blocked.action, blocked.reason) == (Action.BLOCK, Reason.DNC_NATIONAL)


def test_a_list_the_campaign_names_that_the_store_lacks_warns_or_blocks() -> None:
    campaign = CampaignConfig(lists=("internal", "national", "acme-suppression"))
    facts = MemoryFacts(lists=[ListInfo("national", ListKind.NATIONAL, "US", T0)])
    attempt = Attempt(NY, NY, None, "default", "")
    warn = decide(attempt, facts, campaign, PolicyConfig(), T0)
    assert warn.reason is Reason.NO_RESTRICTION
    step = next(s for s in warn.trail if s.rule == "stale-list")
    assert step.detail.startswith("warning: list 'acme-suppression' is not in the store")
    block = decide(attempt, facts, campaign, PolicyConfig(stale_list="block"), T0)
    assert (block.action, block.reason, block.rule) == (
        Action.BLOCK, Reason.DNC_CUSTOM, "stale-list")
    facts.add_list(ListInfo("acme-suppression", ListKind.CUSTOM, None, None))
    later = T0 + timedelta(minutes=1)  # the catalogue is read once a minute
    assert decide(attempt, facts, campaign, PolicyConfig(stale_list="block"),
                  later).reason is Reason.NO_RESTRICTION


# -- sipguard check --at against a real store ------------------------------------------


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SIPGUARD_CONFIG": str(tmp / "sipguard.toml"),
           "SIPGUARD_PSEUDONYM_KEY": "test-key"}
    return subprocess.run([sys.executable, "-m", "sipguard", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def test_check_at_explains_the_window_and_the_known_address(tmp_path: Path) -> None:
    (tmp_path / "sipguard.toml").write_text(
        f'[store]\npath = "{tmp_path / "sg.db"}"\n\n'
        '[campaigns.default]\ncaps = [{ max_calls = 2, period = "24h" }]\n'
    )
    done = _cli(tmp_path, "consent", "grant", NY, "--campaign", "default", "--type", "express",
                "--source", "form-7", "--state", "US-CA", "--zone", "America/Los_Angeles",
                "--granted-at", "2026-01-01T00:00:00Z")
    assert done.returncode == 0, done.stderr
    # 10:30 in New York, 07:30 at the subscriber's address in California
    done = _cli(tmp_path, "check", NY, "--at", "2026-06-03T14:30:00Z")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["decision"], out["reason"], out["rule"]) == (
        "block", "outside-calling-window", "calling-window")
    assert out["opens_at"] == "2026-06-03T15:00:00+00:00"
    assert "America/Los_Angeles" in out["trail"][-1]["detail"]
    assert out["location"]["regions"] == ["US-NY"]
    later = json.loads(_cli(tmp_path, "check", NY, "--at", "2026-06-03T16:00:00Z").stdout)
    assert (later["decision"], later["reason"]) == ("allow", "no-restriction")
    assert later["opens_at"] is None
    bad = _cli(tmp_path, "consent", "grant", NY, "--campaign", "default", "--type", "express",
               "--source", "x", "--zone", "Mars/Olympus")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
