"""decide(): every rule of issue 3, its order and its edges, as one table plus a few checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from sipguard.config import CampaignConfig, PolicyConfig
from sipguard.errors import StoreError
from sipguard.policy.engine import RULES, Outcome, Rule, decide, with_rule
from sipguard.policy.facts import MemoryFacts, UnavailableFacts
from sipguard.policy.model import (
    Action,
    Attempt,
    Consent,
    ConsentType,
    Facts,
    ListInfo,
    ListKind,
    ListMeta,
    Membership,
    Reason,
    Step,
    SubjectRequest,
    SubjectRight,
)

NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
DAY = timedelta(days=1)
NUMBER = "+14155552671"
CAMPAIGN = "spring"

PLAIN = CampaignConfig()
REQUIRES = CampaignConfig(require_consent=True)
INTERNAL_ONLY = CampaignConfig(lists=("internal",))
ENFORCE = PolicyConfig()
MONITOR = PolicyConfig(mode="monitor")
LENIENT = PolicyConfig(on_store_error="allow")
STRIP_9 = PolicyConfig(strip_prefixes=("9",))
SUPPRESSES = CampaignConfig(lists=("internal", "national", "acme-suppression", "litigator"))
CUSTOM_KIND = CampaignConfig(lists=("custom",))
TAG_LITIGATOR = PolicyConfig(tag_reasons=("litigator",))
TAG_LISTS = PolicyConfig(tag_reasons=("litigator", "dnc-national", "dnc-custom"))
TAG_NO_CONSENT = PolicyConfig(tag_reasons=("no-consent",))

E, EW = ConsentType.EXPRESS, ConsentType.EXPRESS_WRITTEN
EBR = ConsentType.EBR_PURCHASE


def on(kind: ListKind, listed: datetime | None = NOW - 30 * DAY, name: str | None = None,
       jurisdiction: str | None = None) -> Membership:
    return Membership(name or kind.value, kind, jurisdiction, listed, None)


def acme(listed: datetime | None = NOW - 30 * DAY, name: str = "acme-suppression") -> Membership:
    """On the user's own suppression list (kind custom)."""
    return on(ListKind.CUSTOM, listed, name)


def consent(
    kind: ConsentType = E, campaign: str = CAMPAIGN, granted: datetime = NOW - 10 * DAY,
    expires: datetime | None = None, revoked: datetime | None = None, id: int = 7,
) -> Consent:
    return Consent(id, NUMBER, campaign, kind, granted, expires, revoked,
                   "crm" if revoked else None, "form-42")


OBJECT, RESTRICT, ERASED = SubjectRight.OBJECT, SubjectRight.RESTRICT, SubjectRight.ERASE


def subject(*rights: SubjectRight, consents: tuple[Consent, ...] = (), lifted: bool = False,
            number: str = NUMBER) -> MemoryFacts:
    """Facts holding the number's requests of these kinds (and these consents)."""
    return MemoryFacts((), consents, requests=[
        SubjectRequest(i, number, right, NOW - DAY, "ticket 4",
                       NOW - DAY / 2 if lifted else None) for i, right in enumerate(rights, 1)])


@dataclass(frozen=True)
class Case:
    name: str
    expect: tuple[Action, Reason, str]  # action, reason, deciding rule
    lists: tuple[Membership, ...] = ()
    consents: tuple[Consent, ...] = ()
    campaign: CampaignConfig = PLAIN
    policy: PolicyConfig = ENFORCE
    dialled: str = NUMBER
    callee: str | None = NUMBER
    facts: Facts | None = field(default=None)


ALLOW, BLOCK, FLAG = Action.ALLOW, Action.BLOCK, Action.FLAG
R = Reason
DOWN = UnavailableFacts("disk I/O error")


class CatalogueDown(MemoryFacts):
    """Answers for numbers, not for the list catalogue (the stale-list rule asks it)."""

    def lists(self) -> Sequence[ListMeta]:
        raise StoreError("list catalogue unreadable")

CASES = [
    Case("nothing known", (ALLOW, R.NO_RESTRICTION, "allow")),
    # 1. emergency: always allowed, before anything else, whatever the store says
    Case("911", (ALLOW, R.EMERGENCY, "emergency"), dialled="911", callee=None),
    Case("112 with separators", (ALLOW, R.EMERGENCY, "emergency"), dialled="1-1-2", callee=None),
    Case("9+911 with the outside-line prefix", (ALLOW, R.EMERGENCY, "emergency"),
         dialled="9911", callee=None, policy=STRIP_9),
    Case("911 with prefix 9 configured", (ALLOW, R.EMERGENCY, "emergency"),
         dialled="911", callee=None, policy=STRIP_9),
    Case("emergency while the store is down", (ALLOW, R.EMERGENCY, "emergency"),
         dialled="911", callee=None, facts=DOWN),
    Case("emergency on every list", (ALLOW, R.EMERGENCY, "emergency"), dialled="911",
         lists=(on(ListKind.INTERNAL), on(ListKind.LITIGATOR))),
    # 2. invalid numbers
    Case("invalid", (BLOCK, R.INVALID_NUMBER, "valid-number"), dialled="555", callee=None),
    Case("invalid while the store is down", (BLOCK, R.INVALID_NUMBER, "valid-number"),
         dialled="abc", callee=None, facts=DOWN),
    # 3. internal DNC: consent newer than the opt-out overrides it, nothing older does
    Case("internal opt-out", (BLOCK, R.DNC_INTERNAL, "internal-dnc"),
         lists=(on(ListKind.INTERNAL),)),
    Case("opt-out older than consent", (ALLOW, R.CONSENT, "allow"),
         lists=(on(ListKind.INTERNAL, NOW - 30 * DAY),), consents=(consent(),)),
    Case("opt-out newer than consent", (BLOCK, R.DNC_INTERNAL, "internal-dnc"),
         lists=(on(ListKind.INTERNAL, NOW - 5 * DAY),), consents=(consent(),)),
    Case("opt-out at the same instant as consent", (BLOCK, R.DNC_INTERNAL, "internal-dnc"),
         lists=(on(ListKind.INTERNAL, NOW - 10 * DAY),), consents=(consent(),)),
    Case("opt-out of unknown date", (BLOCK, R.DNC_INTERNAL, "internal-dnc"),
         lists=(on(ListKind.INTERNAL, None),), consents=(consent(),)),
    Case("two opt-outs, one after the consent", (BLOCK, R.DNC_INTERNAL, "internal-dnc"),
         lists=(on(ListKind.INTERNAL, NOW - 30 * DAY, "a"), on(ListKind.INTERNAL, NOW - DAY, "b")),
         consents=(consent(),)),
    Case("newer consent for another campaign", (BLOCK, R.DNC_INTERNAL, "internal-dnc"),
         lists=(on(ListKind.INTERNAL),), consents=(consent(campaign="other"),)),
    Case("newer consent for every campaign", (ALLOW, R.CONSENT, "allow"),
         lists=(on(ListKind.INTERNAL),), consents=(consent(campaign="*"),)),
    Case("newer but revoked consent", (BLOCK, R.DNC_INTERNAL, "internal-dnc"),
         lists=(on(ListKind.INTERNAL),), consents=(consent(revoked=NOW - DAY),)),
    Case("an EBR never overrides an opt-out", (BLOCK, R.DNC_INTERNAL, "internal-dnc"),
         lists=(on(ListKind.INTERNAL),), consents=(consent(EBR),)),
    Case("internal applies even when the campaign names no list", (BLOCK, R.DNC_INTERNAL,
         "internal-dnc"), lists=(on(ListKind.INTERNAL),), campaign=CampaignConfig(lists=())),
    Case("internal before litigator and national", (BLOCK, R.DNC_INTERNAL, "internal-dnc"),
         lists=(on(ListKind.NATIONAL), on(ListKind.LITIGATOR), on(ListKind.INTERNAL))),
    # 4. litigators: no consent overrides
    Case("litigator", (BLOCK, R.LITIGATOR, "litigator"), lists=(on(ListKind.LITIGATOR),)),
    Case("litigator despite express-written", (BLOCK, R.LITIGATOR, "litigator"),
         lists=(on(ListKind.LITIGATOR),), consents=(consent(EW),)),
    Case("litigator before national", (BLOCK, R.LITIGATOR, "litigator"),
         lists=(on(ListKind.NATIONAL), on(ListKind.LITIGATOR))),
    Case("litigator list the campaign does not name", (ALLOW, R.NO_RESTRICTION, "allow"),
         lists=(on(ListKind.LITIGATOR),), campaign=INTERNAL_ONLY),
    Case("litigator list named by its list name", (BLOCK, R.LITIGATOR, "litigator"),
         lists=(on(ListKind.LITIGATOR, name="blacklist-alliance"),),
         campaign=CampaignConfig(lists=("blacklist-alliance",))),
    # 3b. custom lists (the user's own suppression lists): only when the campaign names them,
    # by name or by kind; read as the internal list is (a later affirmative consent only)
    Case("custom list named by name", (BLOCK, R.DNC_CUSTOM, "custom-dnc"),
         lists=(acme(),), campaign=SUPPRESSES),
    Case("custom lists named by kind", (BLOCK, R.DNC_CUSTOM, "custom-dnc"),
         lists=(acme(name="partner-optouts"),), campaign=CUSTOM_KIND),
    Case("custom list the campaign does not name", (ALLOW, R.NO_RESTRICTION, "allow"),
         lists=(acme(),)),
    Case("another custom list than the one named", (ALLOW, R.NO_RESTRICTION, "allow"),
         lists=(acme(name="other-suppression"),), campaign=SUPPRESSES),
    Case("custom listing older than consent", (ALLOW, R.CONSENT, "allow"),
         lists=(acme(NOW - 30 * DAY),), consents=(consent(),), campaign=SUPPRESSES),
    Case("custom listing newer than consent", (BLOCK, R.DNC_CUSTOM, "custom-dnc"),
         lists=(acme(NOW - 5 * DAY),), consents=(consent(EW),), campaign=SUPPRESSES),
    Case("custom listing of unknown date (bulk import)", (BLOCK, R.DNC_CUSTOM, "custom-dnc"),
         lists=(acme(None),), consents=(consent(EW),), campaign=SUPPRESSES),
    Case("custom: an EBR never overrides", (BLOCK, R.DNC_CUSTOM, "custom-dnc"),
         lists=(acme(),), consents=(consent(EBR),), campaign=SUPPRESSES),
    Case("custom: a revoked consent never overrides", (BLOCK, R.DNC_CUSTOM, "custom-dnc"),
         lists=(acme(),), consents=(consent(revoked=NOW - DAY),), campaign=SUPPRESSES),
    Case("internal before custom", (BLOCK, R.DNC_INTERNAL, "internal-dnc"),
         lists=(acme(), on(ListKind.INTERNAL)), campaign=SUPPRESSES),
    Case("custom before litigator and national", (BLOCK, R.DNC_CUSTOM, "custom-dnc"),
         lists=(on(ListKind.NATIONAL), on(ListKind.LITIGATOR), acme()), campaign=SUPPRESSES),
    Case("custom overridden, national still blocks", (BLOCK, R.DNC_NATIONAL,
         "national-state-dnc"), lists=(acme(), on(ListKind.NATIONAL)),
         consents=(consent(E),), campaign=SUPPRESSES),
    Case("monitor: custom", (FLAG, R.DNC_CUSTOM, "custom-dnc"), lists=(acme(),),
         campaign=SUPPRESSES, policy=MONITOR),
    Case("911 on a custom list", (ALLOW, R.EMERGENCY, "emergency"), dialled="911",
         callee=None, lists=(acme(),), campaign=SUPPRESSES),
    # 5. national and state: only an active express-written consent for this campaign
    Case("national", (BLOCK, R.DNC_NATIONAL, "national-state-dnc"), lists=(on(ListKind.NATIONAL),)),
    Case("state", (BLOCK, R.DNC_STATE, "national-state-dnc"),
         lists=(on(ListKind.STATE, name="fl", jurisdiction="US-FL"),)),
    Case("national and state: national", (BLOCK, R.DNC_NATIONAL, "national-state-dnc"),
         lists=(on(ListKind.STATE), on(ListKind.NATIONAL))),
    Case("national, express-written here", (ALLOW, R.CONSENT, "allow"),
         lists=(on(ListKind.NATIONAL),), consents=(consent(EW),)),
    Case("state, express-written here", (ALLOW, R.CONSENT, "allow"),
         lists=(on(ListKind.STATE),), consents=(consent(EW),)),
    Case("national, express-written for another campaign", (BLOCK, R.DNC_NATIONAL,
         "national-state-dnc"), lists=(on(ListKind.NATIONAL),),
         consents=(consent(EW, campaign="other"),)),
    Case("national, express-written for all campaigns", (ALLOW, R.CONSENT, "allow"),
         lists=(on(ListKind.NATIONAL),), consents=(consent(EW, campaign="*"),)),
    Case("national, plain express consent", (BLOCK, R.DNC_NATIONAL, "national-state-dnc"),
         lists=(on(ListKind.NATIONAL),), consents=(consent(E),)),
    Case("national, expired express-written", (BLOCK, R.DNC_NATIONAL, "national-state-dnc"),
         lists=(on(ListKind.NATIONAL),), consents=(consent(EW, expires=NOW - DAY),)),
    Case("national, express-written expiring this instant", (BLOCK, R.DNC_NATIONAL,
         "national-state-dnc"), lists=(on(ListKind.NATIONAL),),
         consents=(consent(EW, expires=NOW),)),
    Case("national, revoked express-written", (BLOCK, R.DNC_NATIONAL, "national-state-dnc"),
         lists=(on(ListKind.NATIONAL),), consents=(consent(EW, revoked=NOW - DAY),)),
    Case("national list the campaign does not name", (ALLOW, R.NO_RESTRICTION, "allow"),
         lists=(on(ListKind.NATIONAL),), campaign=INTERNAL_ONLY),
    Case("state list named by kind", (BLOCK, R.DNC_STATE, "national-state-dnc"),
         lists=(on(ListKind.STATE, name="tx-2026"),)),
    # 6. require_consent: why it fails is told apart
    Case("require consent, none", (BLOCK, R.NO_CONSENT, "require-consent"), campaign=REQUIRES),
    Case("require consent, active", (ALLOW, R.CONSENT, "allow"), campaign=REQUIRES,
         consents=(consent(),)),
    Case("require consent, expired", (BLOCK, R.CONSENT_EXPIRED, "require-consent"),
         campaign=REQUIRES, consents=(consent(expires=NOW - DAY),)),
    Case("require consent, revoked", (BLOCK, R.CONSENT_REVOKED, "require-consent"),
         campaign=REQUIRES, consents=(consent(revoked=NOW - DAY),)),
    Case("require consent, revoked then re-granted", (ALLOW, R.CONSENT, "allow"),
         campaign=REQUIRES, consents=(consent(revoked=NOW - 5 * DAY, granted=NOW - 9 * DAY, id=1),
                                      consent(granted=NOW - 2 * DAY, id=2))),
    Case("require consent, the latest record decides", (BLOCK, R.CONSENT_REVOKED,
         "require-consent"), campaign=REQUIRES,
         consents=(consent(expires=NOW - 8 * DAY, granted=NOW - 20 * DAY, id=1),
                   consent(revoked=NOW - DAY, id=2))),
    Case("require consent, only for another campaign", (BLOCK, R.NO_CONSENT, "require-consent"),
         campaign=REQUIRES, consents=(consent(campaign="other"),)),
    Case("require consent, granted after now", (BLOCK, R.NO_CONSENT, "require-consent"),
         campaign=REQUIRES, consents=(consent(granted=NOW + DAY),)),
    Case("require consent, revoked only later", (ALLOW, R.CONSENT, "allow"),
         campaign=REQUIRES, consents=(consent(revoked=NOW + DAY),)),
    Case("require consent, an EBR is not consent", (BLOCK, R.NO_CONSENT, "require-consent"),
         campaign=REQUIRES, consents=(consent(EBR),)),
    Case("consent not required: consent held but not used", (ALLOW, R.NO_RESTRICTION, "allow"),
         consents=(consent(),)),
    # data-subject rights: nothing a campaign or a consent says lets the call through
    Case("objection", (BLOCK, R.SUBJECT_OBJECTION, "subject-rights"),
         facts=subject(OBJECT)),
    Case("objection beats express-written consent", (BLOCK, R.SUBJECT_OBJECTION,
         "subject-rights"), facts=subject(OBJECT, consents=(consent(EW),))),
    Case("restriction", (BLOCK, R.SUBJECT_RESTRICTED, "subject-rights"),
         facts=subject(RESTRICT)),
    Case("restriction and objection: the objection is told", (BLOCK, R.SUBJECT_OBJECTION,
         "subject-rights"), facts=subject(RESTRICT, OBJECT)),
    Case("erased", (BLOCK, R.SUBJECT_OBJECTION, "subject-rights"), facts=subject(ERASED)),
    Case("objection withdrawn", (ALLOW, R.NO_RESTRICTION, "allow"),
         facts=subject(OBJECT, lifted=True)),
    Case("objection to another number", (ALLOW, R.NO_RESTRICTION, "allow"),
         facts=subject(OBJECT, number="+14155550000")),
    Case("monitor: objection", (FLAG, R.SUBJECT_OBJECTION, "subject-rights"),
         facts=subject(OBJECT), policy=MONITOR),
    Case("911 for a number that objected", (ALLOW, R.EMERGENCY, "emergency"),
         dialled="911", callee=None, facts=subject(OBJECT)),
    # monitor mode: every block becomes a flag, allows stay allows
    Case("monitor: national", (FLAG, R.DNC_NATIONAL, "national-state-dnc"),
         lists=(on(ListKind.NATIONAL),), policy=MONITOR),
    Case("monitor: invalid", (FLAG, R.INVALID_NUMBER, "valid-number"), dialled="1", callee=None,
         policy=MONITOR),
    Case("monitor: allowed stays allowed", (ALLOW, R.NO_RESTRICTION, "allow"), policy=MONITOR),
    # tag mode: a tagged block flags only when no later rule blocks for an untagged reason
    Case("tag: litigator flagged", (FLAG, R.LITIGATOR, "litigator"),
         lists=(on(ListKind.LITIGATOR),), policy=TAG_LITIGATOR),
    Case("tag: the national list after it still blocks", (BLOCK, R.DNC_NATIONAL,
         "national-state-dnc"), lists=(on(ListKind.LITIGATOR), on(ListKind.NATIONAL)),
         policy=TAG_LITIGATOR),
    Case("tag: require-consent after it still blocks", (BLOCK, R.NO_CONSENT,
         "require-consent"), lists=(on(ListKind.LITIGATOR),), campaign=REQUIRES,
         policy=TAG_LITIGATOR),
    Case("tag: an untagged block before it decides", (BLOCK, R.DNC_INTERNAL, "internal-dnc"),
         lists=(on(ListKind.INTERNAL), on(ListKind.LITIGATOR)), policy=TAG_LITIGATOR),
    Case("tag: two tagged blocks flag with the first", (FLAG, R.DNC_CUSTOM, "custom-dnc"),
         lists=(on(ListKind.NATIONAL), on(ListKind.LITIGATOR), acme()),
         campaign=SUPPRESSES, policy=TAG_LISTS),
    Case("tag: an allowed call stays allowed", (ALLOW, R.CONSENT, "allow"),
         lists=(on(ListKind.NATIONAL),), consents=(consent(EW),), policy=TAG_LISTS),
    Case("tag: nothing to tag", (ALLOW, R.NO_RESTRICTION, "allow"), policy=TAG_LISTS),
    Case("tag: no-consent from a number the store does not know", (FLAG, R.NO_CONSENT,
         "require-consent"), campaign=REQUIRES, policy=TAG_NO_CONSENT),
    Case("tag: consent-revoked is another reason", (BLOCK, R.CONSENT_REVOKED,
         "require-consent"), campaign=REQUIRES, consents=(consent(revoked=NOW - DAY),),
         policy=TAG_NO_CONSENT),
    Case("tag set by the campaign", (FLAG, R.DNC_NATIONAL, "national-state-dnc"),
         lists=(on(ListKind.NATIONAL),), campaign=CampaignConfig(tag_reasons=("dnc-national",))),
    Case("tag: invalid-number is never tagged", (BLOCK, R.INVALID_NUMBER, "valid-number"),
         dialled="555", callee=None, policy=PolicyConfig(tag_reasons=("invalid-number",))),
    Case("tag and monitor: the later block is flagged", (FLAG, R.DNC_NATIONAL,
         "national-state-dnc"), lists=(on(ListKind.LITIGATOR), on(ListKind.NATIONAL)),
         policy=replace(TAG_LITIGATOR, mode="monitor")),
    Case("tag, then the store fails", (BLOCK, R.STORE_UNAVAILABLE, "store"),
         facts=CatalogueDown([(NUMBER, on(ListKind.LITIGATOR))]), policy=TAG_LITIGATOR),
    # the store cannot be read
    Case("store down, reject", (BLOCK, R.STORE_UNAVAILABLE, "store"), facts=DOWN),
    Case("store down, allow", (FLAG, R.STORE_UNAVAILABLE, "store"), facts=DOWN, policy=LENIENT),
    Case("store down, monitor", (FLAG, R.STORE_UNAVAILABLE, "store"), facts=DOWN, policy=MONITOR),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decide(case: Case) -> None:
    facts = case.facts or MemoryFacts([(NUMBER, m) for m in case.lists], case.consents)
    attempt = Attempt(case.dialled, case.callee, "+12125550100", CAMPAIGN, "call-1")
    decision = decide(attempt, facts, case.campaign, case.policy, NOW)
    assert (decision.action, decision.reason, decision.rule) == case.expect
    assert decision.trail[-1].rule == decision.rule
    assert decision.trail[-1].outcome == decision.action.value


def test_trail_names_every_rule_in_order() -> None:
    decision = decide(Attempt(NUMBER, NUMBER, None, CAMPAIGN, ""), MemoryFacts(), PLAIN, ENFORCE,
                      NOW)
    assert [(s.rule, s.outcome) for s in decision.trail] == [
        ("emergency", "pass"), ("valid-number", "pass"), ("subject-rights", "pass"),
        ("caller-id", "skip"), ("calling-window", "pass"), ("internal-dnc", "pass"),
        ("custom-dnc", "pass"), ("litigator", "pass"),
        ("national-state-dnc", "pass"), ("stale-list", "pass"), ("reassigned", "skip"),
        ("wireless", "skip"), ("require-consent", "skip"), ("frequency-cap", "skip"),
        ("allow", "allow"),
    ]


def test_override_is_in_the_trail_and_consent_id_reported() -> None:
    facts = MemoryFacts([(NUMBER, on(ListKind.NATIONAL))], [consent(EW, id=99)])
    decision = decide(Attempt(NUMBER, NUMBER, None, CAMPAIGN, ""), facts, PLAIN, ENFORCE, NOW)
    assert decision.consent_id == 99
    step = next(s for s in decision.trail if s.rule == "national-state-dnc")
    assert step.outcome == "override"
    assert "#99" in step.detail
    assert decision.as_dict()["trail"][8] == step.as_dict()


def test_store_error_keeps_the_trail_so_far() -> None:
    decision = decide(Attempt(NUMBER, NUMBER, None, CAMPAIGN, ""), DOWN, PLAIN, ENFORCE, NOW)
    # the first rule to ask the store: subject-rights
    assert [s.rule for s in decision.trail] == ["emergency", "valid-number", "store"]
    assert decision.trail[-1].detail == "disk I/O error"


def test_a_rule_can_be_inserted() -> None:
    def night(ctx: object) -> Step:
        return Step("night", "pass")

    rules = with_rule(RULES, Rule("night", night, "test"), before="require-consent")
    assert [r.name for r in rules][-3:] == ["night", "require-consent", "frequency-cap"]
    decision = decide(Attempt(NUMBER, NUMBER, None, CAMPAIGN, ""), MemoryFacts(), PLAIN, ENFORCE,
                      NOW, rules)
    assert "night" in [s.rule for s in decision.trail]
    with pytest.raises(ValueError, match="no rule named"):
        with_rule(RULES, Rule("x", night, "test"), before="nope")


def test_emergency_needs_no_facts_and_touches_none() -> None:
    decision = decide(Attempt("911", None, None, CAMPAIGN, ""), DOWN, PLAIN, ENFORCE, NOW)
    assert decision.reason is Reason.EMERGENCY
    assert replace(ENFORCE, emergency_numbers=()).emergency_numbers == ()
    decision = decide(Attempt("911", None, None, CAMPAIGN, ""), MemoryFacts(), PLAIN,
                      replace(ENFORCE, emergency_numbers=()), NOW)
    assert decision.reason is Reason.INVALID_NUMBER


def test_an_outcome_can_say_when_the_window_opens() -> None:
    opens = NOW.replace(hour=13)

    def window(ctx: object) -> Outcome:
        return Outcome(Action.BLOCK, Reason.OUTSIDE_CALLING_WINDOW, "21:00 local", opens_at=opens)

    rules = with_rule(RULES, Rule("calling-window", window, "47 CFR 64.1200(c)(1)"),
                      before="internal-dnc")
    decision = decide(Attempt(NUMBER, NUMBER, None, CAMPAIGN, ""), MemoryFacts(), PLAIN, ENFORCE,
                      NOW, rules)
    assert (decision.reason, decision.rule, decision.opens_at) == (
        Reason.OUTSIDE_CALLING_WINDOW, "calling-window", opens)


def test_campaigns_taking_turns_each_see_the_freshness_of_their_own_lists() -> None:
    facts = MemoryFacts(lists=[ListInfo("national", ListKind.NATIONAL, "US", NOW - 40 * DAY)])
    checks, ignores = PLAIN, INTERNAL_ONLY

    def stale_step(campaign: CampaignConfig, name: str, facts: MemoryFacts = facts) -> str:
        decision = decide(Attempt(NUMBER, NUMBER, None, name, ""), facts, campaign, ENFORCE, NOW)
        return next(s.detail for s in decision.trail if s.rule == "stale-list")

    for _ in range(3):
        assert stale_step(checks, "a").startswith("warning: ")
        assert stale_step(ignores, "b") == "national lists fresh"
    refreshed = MemoryFacts(lists=[ListInfo("national", ListKind.NATIONAL, "US", NOW)])
    assert stale_step(checks, "a", refreshed) == "national lists fresh"  # other facts
