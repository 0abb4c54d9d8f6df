"""The decision: attempt + facts + now -> Decision, as a pipeline of small rules.

Each rule looks at a `Context` and returns either a `Step` (it passed, skipped, or a
consent overrode it: the pipeline goes on) or an `Outcome` (allow or block: the
pipeline stops). The order is issue 3's with issue 5's compliance rules inserted where
`policy/rules.py` says (their adapters are in `policy/rule_steps.py`):

emergency, valid-number, caller-id, calling-window, internal-dnc, litigator,
national-state-dnc, stale-list, reassigned, wireless, require-consent, frequency-cap;
then allow (`ebr` when an EBR let the call through the DNC lists, `consent` when a
consent applied, else `no-restriction`). Every rule names its legal or contractual
source in `RULES`; more can be inserted with `with_rule`.

Frequency caps need the allowed attempts of the last days: `decide(..., counter=)`
takes the `caps.AttemptCounter` the gate keeps (none: the cap rule is skipped).

`decide` is pure: no clock, no I/O. A `Facts` that cannot answer raises `StoreError`,
which becomes `store-unavailable` (blocked, or flagged when `on_store_error = "allow"`).
`monitor` mode turns every block into a flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from sipguard.config import CampaignConfig, PolicyConfig
from sipguard.errors import StoreError
from sipguard.policy import rule_steps as rs
from sipguard.policy.caps import AttemptCounter
from sipguard.policy.consent_rules import EBR_TYPES
from sipguard.policy.model import (
    Action,
    Attempt,
    Decision,
    Facts,
    ListKind,
    Reason,
    Step,
)
from sipguard.policy.numbers import strip_separators
from sipguard.policy.pipeline import (
    SHARED_IDS,
    SHARED_LIMIT,
    Context,
    Outcome,
    Rule,
    RuleFn,
    shared_step,
)

AFFIRMATIVE = rs.AFFIRMATIVE
_SHARED_IDS = SHARED_IDS
_SHARED_LIMIT = SHARED_LIMIT
_DECISIONS: dict[tuple[object, ...], Decision] = {}

__all__ = ["AFFIRMATIVE", "RULES", "Context", "Outcome", "Rule", "RuleFn", "decide",
           "shared_step", "with_rule"]


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


# -- 4. litigator lists ---------------------------------------------------------------
# A business risk list, not a statute: numbers of serial TCPA plaintiffs. No consent
# overrides it (the campaign opts in by naming the list).


def litigator(ctx: Context) -> Step | Outcome:
    for m in ctx.memberships:
        if m.kind is ListKind.LITIGATOR and ctx.applies(m):
            return Outcome(Action.BLOCK, Reason.LITIGATOR, m.list_name)
    return _LITIGATOR_PASS


_LITIGATOR_PASS = shared_step("litigator", "pass")


RULES: tuple[Rule, ...] = (
    Rule("emergency", emergency, "47 U.S.C. 227(b)(1)(A); 47 CFR 64.1200(a)(1)"),
    Rule("valid-number", valid_number, "ITU-T E.164"),
    Rule("caller-id", rs.caller_id, "16 CFR 310.4(a)(8); campaign allowed_caller_ids"),
    Rule("calling-window", rs.calling_window,
         "data/calling_windows.toml (47 CFR 64.1200(c)(1); 16 CFR 310.4(c); state statutes); "
         "campaign window"),
    Rule("internal-dnc", rs.internal_dnc, "47 CFR 64.1200(d)(3); 16 CFR 310.4(b)(1)(iii)(A)"),
    Rule("litigator", litigator, "business risk list named by the campaign"),
    Rule("national-state-dnc", rs.national_state_dnc,
         "47 CFR 64.1200(c)(2), (f)(5), (f)(15)(ii); 16 CFR 310.4(b)(1)(iii)(B); "
         "state DNC statutes; data/consent_rules.toml (EBR terms)"),
    Rule("stale-list", rs.stale_list,
         "47 CFR 64.1200(c)(2)(i)(D) (safe harbor: a registry copy at most 31 days old); "
         "data/consent_rules.toml; policy stale_list"),
    Rule("reassigned", rs.reassigned, "47 CFR 64.1200(m) (RND safe harbor)"),
    Rule("wireless", rs.wireless, "47 U.S.C. 227(b)(1)(A)(iii); 47 CFR 64.1200(a)(1)-(2)"),
    Rule("require-consent", rs.require_consent, "campaign config require_consent"),
    Rule("frequency-cap", rs.frequency_cap,
         "data/frequency_caps.toml (state statutes; 12 CFR 1006.14(b)(2)); campaign/policy caps"),
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
    counter: AttemptCounter | None = None,
) -> Decision:
    """The decision for one call attempt at `now` (timezone-aware), with its rule trail.

    `counter`: the allowed attempts the frequency caps count (None skips the caps)."""
    ctx = Context(attempt, facts, campaign_config, policy_config, now, counter)
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
    consent = ctx.consent
    if consent is not None:
        reason = Reason.EBR if consent.type in EBR_TYPES else Reason.CONSENT
        what = consent.type.value if reason is Reason.EBR else "consent"
        outcome = Outcome(Action.ALLOW, reason, f"{what} #{consent.id}", dynamic=True)
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
