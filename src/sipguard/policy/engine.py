"""The decision: attempt + facts + now -> Decision, as a pipeline of small rules.

Each rule looks at a `Context` and returns either a `Step` (it passed, skipped, or a
consent overrode it: the pipeline goes on) or an `Outcome` (allow or block: the
pipeline stops). The order and semantics are those of issue 3; the rules issue inserts
windows, caps, EBR, wireless, reassigned numbers and caller ID into `RULES` (see
`with_rule`). Every rule names its legal or contractual source next to it.

`decide` is pure: no clock, no I/O. A `Facts` that cannot answer raises `StoreError`,
which becomes `store-unavailable` (blocked, or flagged when `on_store_error = "allow"`).
`monitor` mode turns every block into a flag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

from sipguard.config import CampaignConfig, PolicyConfig
from sipguard.errors import StoreError
from sipguard.policy.model import (
    Action,
    Attempt,
    Consent,
    ConsentType,
    Decision,
    Facts,
    ListKind,
    Membership,
    Reason,
    Step,
)
from sipguard.policy.numbers import strip_separators

# Consent types that are a person's affirmative "yes" (47 CFR 64.1200(f)(9) prior express
# written consent; prior express consent per the FCC's 1992 TCPA Order ¶31; GDPR Art. 4(11)).
# An established business relationship is not consent: it never overrides an opt-out
# (47 CFR 64.1200(f)(5)(i): a seller-specific do-not-call request terminates the EBR).
AFFIRMATIVE = frozenset(
    {ConsentType.EXPRESS, ConsentType.EXPRESS_WRITTEN, ConsentType.GDPR_CONSENT}
)


class Context:
    """What the rules read; facts are fetched once, on first use (emergency calls need none)."""

    __slots__ = ("_consents", "_memberships", "attempt", "campaign", "consent", "facts", "now",
                 "policy")

    def __init__(
        self,
        attempt: Attempt,
        facts: Facts,
        campaign: CampaignConfig,
        policy: PolicyConfig,
        now: datetime,
    ) -> None:
        self.attempt = attempt
        self.facts = facts
        self.campaign = campaign
        self.policy = policy
        self.now = now
        self.consent: Consent | None = None  # set by a rule that let a consent apply
        self._memberships: Sequence[Membership] | None = None
        self._consents: Sequence[Consent] | None = None

    @property
    def memberships(self) -> Sequence[Membership]:
        if self._memberships is None:
            self._memberships = self.facts.memberships(self.attempt.callee or "")
        return self._memberships

    @property
    def consents(self) -> Sequence[Consent]:
        if self._consents is None:
            self._consents = self.facts.consents(self.attempt.callee or "")
        return self._consents

    def applies(self, m: Membership) -> bool:
        """Internal opt-outs bind the whole company (47 CFR 64.1200(d)(3)); other lists
        count when the campaign names them, by list name or by kind."""
        kind = m.kind
        if kind is ListKind.INTERNAL:
            return True
        lists = self.campaign.lists
        return kind in lists or m.list_name in lists

    def active_consent(self, types: frozenset[ConsentType], after: datetime | None = None) -> (
        Consent | None
    ):
        """The newest consent of `types` for this campaign ('*' = all) active now."""
        best: Consent | None = None
        campaign, now = self.attempt.campaign, self.now
        for c in self.consents:
            if (
                c.type in types
                and c.campaign in (campaign, "*")
                and c.granted_at <= now
                and (c.revoked_at is None or c.revoked_at > now)
                and (c.expires_at is None or now < c.expires_at)
                and (after is None or c.granted_at > after)
                and (best is None or c.granted_at > best.granted_at)
            ):
                best = c
        return best


class Outcome(NamedTuple):
    """A rule's final word: the pipeline stops here (a tuple: made on every block)."""

    action: Action  # ALLOW or BLOCK (monitor mode turns BLOCK into FLAG later)
    reason: Reason
    detail: str = ""
    dynamic: bool = False  # the detail varies per call (dates, ids): never shared
    opens_at: datetime | None = None  # outside-calling-window: when the window opens next


RuleFn = Callable[[Context], "Step | Outcome"]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    check: RuleFn
    source: str  # the law, regulation or contract the rule carries out


# Decisions are immutable values, and most calls take one of a few paths (nothing found;
# on the national list; ...). Steps and Decisions of those paths are made once and shared:
# building frozen dataclasses is a large part of a decision's cost. Both tables only grow,
# up to a bound, so an id() in them always names the same live object.
_SHARED_LIMIT = 4096
_STEPS: dict[tuple[str, str, str], Step] = {}
_SHARED_IDS: set[int] = set()
_DECISIONS: dict[tuple[object, ...], Decision] = {}


def shared_step(rule: str, outcome: str, detail: str = "") -> Step:
    """A Step made once per (rule, outcome, detail), while the table has room."""
    key = (rule, outcome, detail)
    step = _STEPS.get(key)
    if step is None:
        step = Step(rule, outcome, detail)
        if len(_STEPS) < _SHARED_LIMIT:
            _STEPS[key] = step
            _SHARED_IDS.add(id(step))
    return step


def _ts(value: datetime | None) -> str:
    return value.isoformat() if value else "unknown"


# -- 1. emergency ----------------------------------------------------------------------
# 47 U.S.C. 227(b)(1)(A) and 47 CFR 64.1200(a)(1): calls made for emergency purposes are
# exempt; a gateway must never stand between a caller and 911 / 112 / 999 / 000.


@lru_cache(maxsize=8)
def _emergency_table(
    numbers: tuple[str, ...], prefixes: tuple[str, ...]
) -> tuple[frozenset[str], int]:
    longest = max((len(n) for n in numbers), default=0)
    longest += max((len(p) for p in prefixes), default=0)
    return frozenset(numbers), longest


_EMERGENCY_BY_POLICY: dict[int, tuple[PolicyConfig, frozenset[str], int]] = {}


def emergency(ctx: Context) -> Step | Outcome:
    policy = ctx.policy
    known = _EMERGENCY_BY_POLICY.get(id(policy))
    if known is None or known[0] is not policy:  # keyed by identity: no hashing per call
        known = (policy, *_emergency_table(policy.emergency_numbers, policy.strip_prefixes))
        if len(_EMERGENCY_BY_POLICY) > 64:
            _EMERGENCY_BY_POLICY.clear()
        _EMERGENCY_BY_POLICY[id(policy)] = known
    _, table, longest = known
    raw = ctx.attempt.callee_raw
    if len(raw) <= longest + 4:  # separators allowed; longer strings cannot match
        dialled = strip_separators(raw)
        if dialled in table:
            return Outcome(Action.ALLOW, Reason.EMERGENCY, dialled, dynamic=True)
        for prefix in policy.strip_prefixes:
            if prefix and dialled.startswith(prefix) and dialled[len(prefix) :] in table:
                return Outcome(Action.ALLOW, Reason.EMERGENCY, dialled, dynamic=True)
    return _EMERGENCY_PASS


_EMERGENCY_PASS = shared_step("emergency", "pass")


# -- 2. invalid number ----------------------------------------------------------------
# A number that cannot be E.164 (ITU-T E.164; libphonenumber's metadata) cannot be checked
# against any list, so it is never called.


def valid_number(ctx: Context) -> Step | Outcome:
    if ctx.attempt.callee is None:
        return Outcome(
            Action.BLOCK, Reason.INVALID_NUMBER, repr(ctx.attempt.callee_raw), dynamic=True
        )
    return _VALID_PASS


_VALID_PASS = shared_step("valid-number", "pass")


# -- 3. internal do-not-call ----------------------------------------------------------
# 47 CFR 64.1200(d)(3) and 16 CFR 310.4(b)(1)(iii)(A): a seller honours a person's request
# not to be called. Consent given after the opt-out overrides it; nothing given before does.


def internal_dnc(ctx: Context) -> Step | Outcome:
    memberships = ctx.memberships
    if not memberships:
        return _INTERNAL_PASS
    hits = [m for m in memberships if m.kind is ListKind.INTERNAL]
    if not hits:
        return _INTERNAL_PASS
    times = [m.listed_at for m in hits]
    # An opt-out of unknown date counts as the newest: it cannot be overridden.
    opt_out = None if any(t is None for t in times) else max(t for t in times if t is not None)
    names = ",".join(sorted({m.list_name for m in hits}))
    if opt_out is not None:
        consent = ctx.active_consent(AFFIRMATIVE, after=opt_out)
        if consent is not None:
            ctx.consent = consent
            return Step(
                "internal-dnc", "override",
                f"{names}: opt-out {_ts(opt_out)} before consent #{consent.id} "
                f"{_ts(consent.granted_at)}",
            )
    return Outcome(
        Action.BLOCK, Reason.DNC_INTERNAL, f"{names}: opt-out {_ts(opt_out)}", dynamic=True
    )


_INTERNAL_PASS = shared_step("internal-dnc", "pass")


# -- 4. litigator lists ---------------------------------------------------------------
# A business risk list, not a statute: numbers of serial TCPA plaintiffs. No consent
# overrides it (the campaign opts in by naming the list).


def litigator(ctx: Context) -> Step | Outcome:
    for m in ctx.memberships:
        if m.kind is ListKind.LITIGATOR and ctx.applies(m):
            return Outcome(Action.BLOCK, Reason.LITIGATOR, m.list_name)
    return _LITIGATOR_PASS


_LITIGATOR_PASS = shared_step("litigator", "pass")


# -- 5. national and state registries -------------------------------------------------
# 47 CFR 64.1200(c)(2) and 16 CFR 310.4(b)(1)(iii)(B): no telephone solicitation to a number
# on the National Do-Not-Call Registry, unless the person gave prior express written
# consent to this seller (64.1200(c)(2)(ii)); state registries (e.g. Fla. Stat. 501.059,
# Tex. Bus. & Com. Code 304) follow the same pattern. Consent is per campaign here.

_WRITTEN = frozenset({ConsentType.EXPRESS_WRITTEN})


def national_state_dnc(ctx: Context) -> Step | Outcome:
    national: Membership | None = None
    state: Membership | None = None
    for m in ctx.memberships:
        kind = m.kind
        if kind is ListKind.NATIONAL:
            if national is None and ctx.applies(m):
                national = m
        elif kind is ListKind.STATE and state is None and ctx.applies(m):
            state = m
    hit = national or state
    if hit is None:
        return _NATIONAL_PASS
    consent = ctx.active_consent(_WRITTEN)
    if consent is not None:
        ctx.consent = consent
        return Step(
            "national-state-dnc", "override",
            f"{hit.list_name}: express-written consent #{consent.id} {_ts(consent.granted_at)}",
        )
    where = f" ({hit.jurisdiction})" if hit.jurisdiction else ""
    reason = Reason.DNC_NATIONAL if hit is national else Reason.DNC_STATE
    return Outcome(Action.BLOCK, reason, hit.list_name + where)


_NATIONAL_PASS = shared_step("national-state-dnc", "pass")


# -- 6. campaigns that require consent ------------------------------------------------
# The campaign's own rule (config `campaigns.NAME.require_consent`), e.g. for autodialled
# or prerecorded calls that need prior express consent (47 CFR 64.1200(a)(1)-(3)) or for
# GDPR Art. 6(1)(a) processing. Why it fails is told apart: never given, revoked, expired.


def require_consent(ctx: Context) -> Step | Outcome:
    if not ctx.campaign.require_consent:
        return _CONSENT_SKIP
    consent = ctx.consent or ctx.active_consent(AFFIRMATIVE)
    if consent is not None:
        ctx.consent = consent
        return Step("require-consent", "pass", f"consent #{consent.id}")
    campaign, now = ctx.attempt.campaign, ctx.now
    given = [
        c for c in ctx.consents
        if c.type in AFFIRMATIVE and c.campaign in (campaign, "*") and c.granted_at <= now
    ]
    if not given:
        return Outcome(Action.BLOCK, Reason.NO_CONSENT)
    latest = max(given, key=lambda c: c.granted_at)
    if latest.revoked_at is not None and latest.revoked_at <= now:
        return Outcome(
            Action.BLOCK, Reason.CONSENT_REVOKED,
            f"consent #{latest.id} revoked {_ts(latest.revoked_at)} ({latest.revoke_source})",
            dynamic=True,
        )
    return Outcome(
        Action.BLOCK, Reason.CONSENT_EXPIRED,
        f"consent #{latest.id} expired {_ts(latest.expires_at)}",
        dynamic=True,
    )


_CONSENT_SKIP = shared_step("require-consent", "skip", "campaign does not require consent")


RULES: tuple[Rule, ...] = (
    Rule("emergency", emergency, "47 U.S.C. 227(b)(1)(A); 47 CFR 64.1200(a)(1)"),
    Rule("valid-number", valid_number, "ITU-T E.164"),
    Rule("internal-dnc", internal_dnc, "47 CFR 64.1200(d)(3); 16 CFR 310.4(b)(1)(iii)(A)"),
    Rule("litigator", litigator, "business risk list named by the campaign"),
    Rule("national-state-dnc", national_state_dnc,
         "47 CFR 64.1200(c)(2); 16 CFR 310.4(b)(1)(iii)(B); state DNC statutes"),
    Rule("require-consent", require_consent, "campaign config require_consent"),
)


def with_rule(rules: Sequence[Rule], rule: Rule, *, before: str) -> tuple[Rule, ...]:
    """`rules` with `rule` inserted before the one named `before` (for later rule modules)."""
    names = [r.name for r in rules]
    if before not in names:
        raise ValueError(f"no rule named {before!r} (have {', '.join(names)})")
    i = names.index(before)
    return (*rules[:i], rule, *rules[i:])


def decide(
    attempt: Attempt,
    facts: Facts,
    campaign_config: CampaignConfig,
    policy_config: PolicyConfig,
    now: datetime,
    rules: Sequence[Rule] = RULES,
) -> Decision:
    """The decision for one call attempt at `now` (timezone-aware), with its rule trail."""
    ctx = Context(attempt, facts, campaign_config, policy_config, now)
    trail: list[Step] = []
    shared = True  # every step so far is a long-lived one: the Decision may be shared too
    try:
        for rule in rules:
            result = rule.check(ctx)
            if type(result) is Outcome:
                return _final(ctx, trail, shared, rule.name, result)
            trail.append(result)  # type: ignore[arg-type]
            shared = shared and id(result) in _SHARED_IDS
    except StoreError as exc:
        return _store_unavailable(policy_config, trail, str(exc))
    if ctx.consent is not None:
        outcome = Outcome(Action.ALLOW, Reason.CONSENT, f"consent #{ctx.consent.id}", dynamic=True)
    else:
        outcome = _NO_RESTRICTION
    return _final(ctx, trail, shared, "allow", outcome)


_NO_RESTRICTION = Outcome(Action.ALLOW, Reason.NO_RESTRICTION)

def _final(ctx: Context, trail: list[Step], shared: bool, rule: str, outcome: Outcome) -> Decision:
    action = outcome.action
    if action is Action.BLOCK and ctx.policy.mode == "monitor":
        action = Action.FLAG
    text = _ACTION_TEXT[action]
    if outcome.dynamic:
        step = Step(rule, text, outcome.detail)
    else:
        step = shared_step(rule, text, outcome.detail)
    consent = ctx.consent.id if ctx.consent is not None and action is Action.ALLOW else None
    if outcome.opens_at is not None or not (shared and id(step) in _SHARED_IDS):
        trail.append(step)
        return Decision(
            action, outcome.reason, rule, tuple(trail), outcome.opens_at, consent_id=consent
        )
    key = (*map(id, trail), id(step), outcome.reason, consent)
    decision = _DECISIONS.get(key)
    if decision is None:
        trail.append(step)
        decision = Decision(action, outcome.reason, rule, tuple(trail), consent_id=consent)
        if len(_DECISIONS) < _SHARED_LIMIT:
            _DECISIONS[key] = decision
    return decision


_ACTION_TEXT = {a: a.value for a in Action}


def _store_unavailable(policy: PolicyConfig, trail: list[Step], detail: str) -> Decision:
    """The store could not answer: 503 when on_store_error = "reject" (never a silent
    allow), else forwarded with a flag; monitor mode flags as it does every block."""
    if policy.on_store_error == "reject" and policy.mode != "monitor":
        action = Action.BLOCK
    else:
        action = Action.FLAG
    trail.append(Step("store", action.value, detail))
    return Decision(action, Reason.STORE_UNAVAILABLE, "store", tuple(trail))
