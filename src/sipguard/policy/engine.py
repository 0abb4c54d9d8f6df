"""The decision: attempt + facts + now -> Decision, as a pipeline of small rules.

Each rule looks at a `Context` and returns either a `Step` (it passed, skipped, or a
consent overrode it: the pipeline goes on) or an `Outcome` (allow or block: the
pipeline stops). The order is issue 3's with issue 5's compliance rules inserted where
`policy/rules.py` says (their adapters are in `policy/rule_steps.py`):

emergency, valid-number, subject-rights, caller-id, calling-window, internal-dnc, custom-dnc,
litigator, national-state-dnc, stale-list, reassigned, wireless, require-consent,
frequency-cap; then allow (`ebr` when an EBR let the call through the DNC lists, `consent`
when a consent applied, else `no-restriction`). Every rule names its legal or contractual
source in `RULES`; more can be inserted with `with_rule`.

Tag mode (CONTRACT §4, `tag_reasons` in `[policy]` and per campaign): a block whose reason
is in tag mode does not stop the pipeline. Its rule goes on the trail as "tag" and the
rules after it run; a later block for a reason not in tag mode decides the call (a tagged
calling window never hides a number on the national list), and when none comes the call
is flagged with the first tagged reason and rule (what enforce mode would have said), its
last step telling that no later rule blocked. A campaign without tags never takes that
path: its blocks cost one dict lookup more.

Frequency caps need the allowed attempts of the last days: `decide(..., counter=)`
takes the `caps.AttemptCounter` the gate keeps (none: the cap rule is skipped).

Speed (issue 4: >= 200,000 decisions/s on one core). The rules run from a `Plan` made once
per campaign (`policy/plans.py`): answers known for the whole campaign, or for a number
the store knows nothing about (most calls), are laid down without calling the rule, and
calls that take the same path through it share its trail and its Decision (the calling
window's block, made once per location and minute, too). The trail is the same as if every
rule had run.

`decide` is pure: no clock, no I/O. A `Facts` that cannot answer raises `StoreError`,
which becomes `store-unavailable` (blocked, or flagged when `on_store_error = "allow"`).
`monitor` mode turns every block into a flag: the call is flagged with what enforce mode
would have decided (with tags, that may be the reason of a later block not in tag mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

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
    Reason,
    Step,
    SubjectRight,
)
from sipguard.policy.numbers import emergency_dialled
from sipguard.policy.pipeline import (
    ALLOW,
    BLOCK,
    FLAG,
    LITIGATOR,
    Context,
    Outcome,
    Rule,
    RuleFn,
    shared_step,
)
from sipguard.policy.plans import Plan, Run, Segment, Trail, plan_for
from sipguard.policy.rule_steps import Prepared

AFFIRMATIVE = rs.AFFIRMATIVE

__all__ = ["AFFIRMATIVE", "RULES", "Context", "Outcome", "Rule", "RuleFn", "decide",
           "shared_step", "with_rule"]


# -- 1. emergency ----------------------------------------------------------------------
# 47 U.S.C. 227(b)(1)(A) and 47 CFR 64.1200(a)(1): calls made for emergency purposes are
# exempt; a gateway must never stand between a caller and 911 / 112 / 999 / 000.


def emergency(ctx: Context) -> Step | Outcome:
    prep = ctx.prepared
    raw = ctx.attempt.callee_raw
    if len(raw) <= prep.emergency_longest + 4:  # separators allowed; longer cannot match
        dialled = emergency_dialled(raw, prep.emergency, ctx.policy.strip_prefixes)
        if dialled is not None:
            return Outcome(ALLOW, Reason.EMERGENCY, dialled, dynamic=True)
    return _EMERGENCY_PASS


_EMERGENCY_PASS = shared_step("emergency", "pass")


# -- 2. invalid number ----------------------------------------------------------------
# A number that cannot be E.164 (ITU-T E.164; libphonenumber's metadata) cannot be checked
# against any list, so it is never called.


def valid_number(ctx: Context) -> Step | Outcome:
    if ctx.attempt.callee is None:
        return Outcome(
            BLOCK, Reason.INVALID_NUMBER, repr(ctx.attempt.callee_raw), dynamic=True
        )
    return _VALID_PASS


_VALID_PASS = shared_step("valid-number", "pass")


# -- 3. data-subject rights -----------------------------------------------------------
# GDPR Art. 21(3): once a subject objects to direct marketing, their data may no longer be
# processed for it, whatever the campaign or consent; Art. 18: a restricted subject's data
# may only be stored; Art. 17: an erased subject keeps only the record that stops calls.
# Asked of every call (the store's "nothing known" shortcut comes later): one dict lookup.


def subject_rights(ctx: Context) -> Step | Outcome:
    callee = ctx.attempt.callee
    requests = ctx.facts.subject_requests(callee) if callee is not None else ()
    if not requests:
        return _SUBJECT_PASS
    # An objection or erasure outranks a restriction: it does not end by being lifted.
    request = min(requests, key=lambda r: r.right is SubjectRight.RESTRICT)
    reason = (Reason.SUBJECT_RESTRICTED if request.right is SubjectRight.RESTRICT
              else Reason.SUBJECT_OBJECTION)
    return Outcome(BLOCK, reason, f"{request.right.value} request #{request.id}", dynamic=True)


_SUBJECT_PASS = shared_step("subject-rights", "pass")


# -- 4. litigator lists ---------------------------------------------------------------
# A business risk list, not a statute: numbers of serial TCPA plaintiffs. No consent
# overrides it (the campaign opts in by naming the list).


def litigator(ctx: Context) -> Step | Outcome:
    for m in ctx.memberships:
        if m.kind is LITIGATOR and ctx.applies(m):
            return Outcome(BLOCK, Reason.LITIGATOR, m.list_name)
    return _LITIGATOR_PASS


_LITIGATOR_PASS = shared_step("litigator", "pass")


def litigator_bare(prep: Prepared, counted: bool) -> Step:
    return _LITIGATOR_PASS


RULES: tuple[Rule, ...] = (
    Rule("emergency", emergency, "47 U.S.C. 227(b)(1)(A); 47 CFR 64.1200(a)(1)"),
    Rule("valid-number", valid_number, "ITU-T E.164"),
    Rule("subject-rights", subject_rights,
         "GDPR Art. 21(2)-(3) (objection to direct marketing), Art. 18 (restriction), "
         "Art. 17 (erasure); `sipguard subject`"),
    Rule("caller-id", rs.caller_id, "16 CFR 310.4(a)(8); campaign allowed_caller_ids",
         fixed=rs.caller_id_fixed),
    Rule("calling-window", rs.calling_window,
         "data/calling_windows.toml (47 CFR 64.1200(c)(1); 16 CFR 310.4(c); state statutes); "
         "campaign window"),
    Rule("internal-dnc", rs.internal_dnc, "47 CFR 64.1200(d)(3); 16 CFR 310.4(b)(1)(iii)(A)",
         bare=rs.internal_dnc_bare),
    Rule("custom-dnc", rs.custom_dnc,
         "the user's own suppression lists (kind custom) the campaign names, read as "
         "internal opt-outs: 47 CFR 64.1200(d)(3); 16 CFR 310.4(b)(1)(iii)(A)",
         bare=rs.custom_dnc_bare),
    Rule("litigator", litigator, "business risk list named by the campaign",
         bare=litigator_bare),
    Rule("national-state-dnc", rs.national_state_dnc,
         "47 CFR 64.1200(c)(2), (f)(5), (f)(15)(ii); 16 CFR 310.4(b)(1)(iii)(B); "
         "state DNC statutes; data/consent_rules.toml (EBR terms)",
         bare=rs.national_state_dnc_bare),
    Rule("stale-list", rs.stale_list,
         "47 CFR 64.1200(c)(2)(i)(D) (safe harbor: a registry copy at most 31 days old); "
         "data/consent_rules.toml; campaign lists missing from the store; policy stale_list"),
    Rule("reassigned", rs.reassigned, "47 CFR 64.1200(m) (RND safe harbor)",
         bare=rs.reassigned_bare),
    Rule("wireless", rs.wireless, "47 U.S.C. 227(b)(1)(A)(iii); 47 CFR 64.1200(a)(1)-(2)",
         fixed=rs.wireless_fixed),
    Rule("require-consent", rs.require_consent, "campaign config require_consent",
         fixed=rs.require_consent_fixed, bare=rs.require_consent_bare),
    Rule("frequency-cap", rs.frequency_cap,
         "data/frequency_caps.toml (state statutes; 12 CFR 1006.14(b)(2)); campaign/policy caps",
         fixed=rs.frequency_cap_fixed),
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
    plan = plan_for(rules, campaign_config, policy_config, attempt.campaign, counter is not None)
    ctx = Context(attempt, facts, campaign_config, policy_config, now, counter, plan.prepared)
    ctx.trail = plan.start
    try:
        runs = plan.first.runs
        stop = _run(ctx, runs)
        if stop is None and plan.rest is not None:
            # `_rest`, inlined: nearly every call gets here
            known, bare = plan.rest
            rest = known if ctx.memberships or ctx.consents else bare
            ctx.trail = ctx.trail.extend(rest.head)
            runs = rest.runs
            stop = _run(ctx, runs)
        if stop is not None and stop[1].reason in plan.prepared.tags:
            stop = _tagged(ctx, plan, runs, stop)
    except StoreError as exc:
        return _store_unavailable(policy_config, ctx.trail, str(exc))
    if stop is not None:
        return _final(ctx, stop[0], stop[1])
    consent = ctx.consent
    if consent is None:
        allowed = ctx.trail.allowed
        if allowed is None:
            allowed = ctx.trail.allowed = _final(ctx, "allow", _NO_RESTRICTION)
        return allowed
    reason = Reason.EBR if consent.type in EBR_TYPES else Reason.CONSENT
    what = consent.type.value if reason is Reason.EBR else "consent"
    return _final(ctx, "allow", Outcome(ALLOW, reason, f"{what} #{consent.id}", dynamic=True))


_NO_RESTRICTION = Outcome(ALLOW, Reason.NO_RESTRICTION)


def _rest(ctx: Context, rest: tuple[Segment, Segment]) -> tuple[Run, ...]:
    """At the first rule with a bare answer: the facts decide which way the rest goes
    (memberships first, as that rule would read them; then consents, which the calling
    window has fetched already). Lays the segment's head on the trail; its runs."""
    known, bare = rest
    segment = known if ctx.memberships or ctx.consents else bare
    ctx.trail = ctx.trail.extend(segment.head)
    return segment.runs


def _tagged(ctx: Context, plan: Plan, runs: tuple[Run, ...], stop: tuple[str, Outcome]) -> (
    tuple[str, Outcome]
):
    """`stop` (a rule of `runs`) blocks for a reason in tag mode: put it on the trail as
    tagged and run the rules after it. The first block for a reason not in tag mode is the
    answer; when none comes, the first tagged block, as a flag."""
    tags = plan.prepared.tags
    first = stop
    in_first = runs is plan.first.runs
    while True:
        name, outcome = stop
        i = 0
        while runs[i][1] != name:  # the rule that stopped: a plan's names are unique
            i += 1
        ctx.trail = ctx.trail.then(_tag_step(name, outcome, tags[outcome.reason]), runs[i][2])
        runs = runs[i + 1:]
        found = _run(ctx, runs)
        if found is None and in_first and plan.rest is not None:
            in_first = False
            runs = _rest(ctx, plan.rest)
            found = _run(ctx, runs)
        if found is None:
            return first[0], _flag(first[1], tags[first[1].reason])
        if found[1].reason not in tags:
            return found
        stop = found


def _tag_step(rule: str, outcome: Outcome, key: str) -> Step:
    """The trail step of a block in tag mode, always a shared one: with a detail made for
    the call (a calling window's local time) every call's trail after it would be its own,
    each rule's step a new tuple (~3x the cost). The flag that ends a tagged decision
    carries that detail (`_flag`)."""
    told = "" if outcome.dynamic else outcome.detail
    step = _TAG_STEPS.get((rule, outcome.reason, key, told))
    if step is None:
        detail = f"{outcome.reason.value} in tag mode ({key})"
        step = shared_step(rule, "tag", f"{detail}: {told}" if told else detail)
        if len(_TAG_STEPS) < _AGAIN_LIMIT:
            _TAG_STEPS[rule, outcome.reason, key, told] = step
    return step


_TAG_STEPS: dict[tuple[str, Reason, str, str], Step] = {}


def _flag(outcome: Outcome, key: str) -> Outcome:
    """The flag a tagged block ends as, made once per block Outcome and key: a rule hands
    the same Outcome out again (the calling window's, per location and minute), and the
    Decision `_final` keeps for it is found by the flag's identity."""
    found = _FLAGS.get((id(outcome), key))
    if found is not None and found[0] is outcome:
        return found[1]
    detail = f"{outcome.reason.value} in tag mode ({key}); no later rule blocks"
    if outcome.detail:
        detail = f"{detail}: {outcome.detail}"
    flag = Outcome(FLAG, outcome.reason, detail, outcome.dynamic, outcome.opens_at)
    if len(_FLAGS) >= _AGAIN_LIMIT:
        _FLAGS.clear()
    _FLAGS[id(outcome), key] = (outcome, flag)
    return flag


# (id(block Outcome), key) -> (it, its flag): kept with the block, so the id stays its own
_FLAGS: dict[tuple[int, str], tuple[Outcome, Outcome]] = {}


def _run(ctx: Context, runs: tuple[Run, ...]) -> tuple[str, Outcome] | None:
    """Run `runs` in order onto `ctx.trail`: the (rule name, Outcome) that stopped it, if
    any."""
    trail = ctx.trail
    try:
        for check, name, then in runs:
            result = check(ctx)
            if type(result) is Outcome:
                return name, result
            last = trail.last  # Trail.then's first guess, inlined: it runs for every step
            trail = (
                last[1] if last is not None and last[0] is result
                else trail.then(result, then)  # type: ignore[arg-type]
            )
    finally:
        ctx.trail = trail
    return None


def _final(ctx: Context, rule: str, outcome: Outcome) -> Decision:
    action = outcome.action
    if action is BLOCK and ctx.policy.mode == "monitor":
        action = FLAG
    consent = ctx.consent.id if ctx.consent is not None and action is ALLOW else None
    trail = ctx.trail
    if outcome.dynamic:
        # A rule may hand out the same dynamic Outcome again: the calling window makes one
        # per location and minute (at night it blocks nearly every call). Its Decision is
        # kept by the Outcome's identity (the entry holds both, so the id stays theirs).
        again = _AGAIN.get(id(outcome))
        if again is not None:
            seen, on, made = again
            if seen is outcome and on is trail and made.rule == rule and (
                made.action is action and made.consent_id == consent
            ):
                return made
        step = Step(rule, _ACTION_TEXT[action], outcome.detail)
        decision = _decision(trail, rule, action, outcome, step, consent)
        if len(_AGAIN) >= _AGAIN_LIMIT:
            _AGAIN.clear()
        _AGAIN[id(outcome)] = (outcome, trail, decision)
        return decision
    step = shared_step(rule, _ACTION_TEXT[action], outcome.detail)
    # The Decision an earlier call on this trail ended with the same shared step, when it
    # says the same (a frozen Decision costs more to build than most rules take to run).
    last = trail.decisions.get(id(step))
    if (
        last is not None and last.trail[-1] is step and last.reason is outcome.reason
        and last.action is action and last.consent_id == consent
        and last.opens_at == outcome.opens_at
    ):
        return last
    decision = _decision(trail, rule, action, outcome, step, consent)
    trail.remember(decision)
    return decision


def _decision(trail: Trail, rule: str, action: Action, outcome: Outcome, step: Step,
              consent: int | None) -> Decision:
    return Decision(action, outcome.reason, rule, (*trail.steps, step), outcome.opens_at,
                    consent)


# Dynamic outcomes whose Decision was made: id(outcome) -> (outcome, trail, Decision). Most
# are made for one call and never seen again; the bound drops them.
_AGAIN: dict[int, tuple[Outcome, Trail, Decision]] = {}
_AGAIN_LIMIT = 1024

_ACTION_TEXT = {a: a.value for a in Action}


def _store_unavailable(policy: PolicyConfig, trail: Trail, detail: str) -> Decision:
    """The store could not answer: 503 when on_store_error = "reject" (never a silent
    allow), else forwarded with a flag; monitor mode flags as it does every block."""
    if policy.on_store_error == "reject" and policy.mode != "monitor":
        action = Action.BLOCK
    else:
        action = Action.FLAG
    step = Step("store", action.value, detail)
    return Decision(action, Reason.STORE_UNAVAILABLE, "store", (*trail.steps, step))
