"""What `engine.decide` runs: the rules of one campaign laid out once (`Plan`), and the
trails the calls of a plan take (`Trail`).

A plan is made once per (rules, campaign config, policy, campaign name, counter or not):
the steps a rule's `fixed` answer gives for the whole campaign are laid down without
calling it, and a number the store knows nothing about (most calls) takes the rules'
`bare` answers from the first rule that has one. The trail is the same as if every rule
had run.

Most calls take one of a few paths through a plan, made of the same shared steps (see
`pipeline.shared_step`): the plan keeps those paths as a tree of `Trail`s, each with its
steps as a tuple made once and the Decisions that end it. A call then costs its rules and
a dict lookup per step they give, no trail built and no Decision made (a frozen dataclass
costs more to build than most rules take to run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sipguard.config import CampaignConfig, PolicyConfig
from sipguard.policy.model import Decision, Step
from sipguard.policy.pipeline import Outcome, Rule, RuleFn, is_shared
from sipguard.policy.rule_steps import Prepared, prepared_for

Run = tuple[RuleFn, str, tuple[Step, ...]]  # a rule to call, its name, the fixed steps after it


class Segment(NamedTuple):
    head: tuple[Step, ...]  # known steps before the first rule to call
    runs: tuple[Run, ...]


class Trail:
    """The steps of a decision so far. Calls that get the same shared steps from the rules
    of a plan reach the same Trail: a child is found by the identity of the step (or the
    plan's tuple of known steps) that led to it. Only children led to by what lives as long
    as the tree are kept (a shared step; the plan's own tuples); a trail not kept (a step
    made for one call led to it) keeps nothing either."""

    __slots__ = ("allowed", "decisions", "kept", "last", "next", "steps")

    def __init__(self, steps: tuple[Step, ...], kept: bool) -> None:
        self.steps = steps
        self.kept = kept  # in its plan's tree
        self.next: dict[int, tuple[object, Trail]] = {}  # id(what led on) -> (it, the trail)
        # The entry of `next` taken last, asked first: calls come in streaks down one path.
        self.last: tuple[object, Trail] | None = None
        self.decisions: dict[int, Decision] = {}  # id(shared last step) -> a Decision
        # The Decision of a call that passes every rule with no consent, the same for every
        # call on this trail: most calls end here, and need no step or Decision looked up.
        self.allowed: Decision | None = None

    def then(self, step: Step, known: tuple[Step, ...]) -> Trail:
        """This trail, then a rule's `step` and the `known` steps after it."""
        return self._taken(step) or self._child(step, (*self.steps, step, *known),
                                                is_shared(step))

    def extend(self, known: tuple[Step, ...]) -> Trail:
        """This trail, then the plan's `known` steps."""
        return self._taken(known) or self._child(known, (*self.steps, *known), True)

    def _taken(self, led_by: object) -> Trail | None:
        """The kept child `led_by` leads to, if any (the one taken last is asked first)."""
        found = self.last
        if found is None or found[0] is not led_by:
            found = self.next.get(id(led_by))
            if found is None or found[0] is not led_by:
                return None
            self.last = found
        return found[1]

    def remember(self, decision: Decision) -> None:
        """Keep a Decision that ends this trail with a shared step, for the next call."""
        last = decision.trail[-1]
        if self.kept and is_shared(last) and _room():
            self.decisions[id(last)] = decision

    def _child(self, led_by: object, steps: tuple[Step, ...], lasting: bool) -> Trail:
        after = Trail(steps, self.kept and lasting and _room())
        if after.kept:
            self.next[id(led_by)] = self.last = (led_by, after)
        return after


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """`rules` for one campaign (compared by identity: it holds what it was made from)."""

    rules: Sequence[Rule]
    campaign: CampaignConfig
    policy: PolicyConfig
    name: str
    counted: bool  # a frequency-cap counter is given
    prepared: Prepared
    first: Segment  # up to the first rule with a bare answer (every rule when none has one)
    rest: tuple[Segment, Segment] | None  # the others: (number with facts, bare number)
    start: Trail  # first.head: the root of the trails this plan's calls take


def _answer(outcome: Outcome) -> RuleFn:
    """A rule whose answer is a known Outcome: it stops the pipeline like the rule would."""
    return lambda ctx: outcome


def _segment(entries: Sequence[tuple[str, RuleFn | Step | Outcome]]) -> Segment:
    head: list[Step] = []
    runs: list[Run] = []
    for name, entry in entries:
        if isinstance(entry, Step):
            if runs:
                check, at, then = runs[-1]
                runs[-1] = (check, at, (*then, entry))
            else:
                head.append(entry)
        else:
            runs.append((_answer(entry) if isinstance(entry, Outcome) else entry, name, ()))
    return Segment(tuple(head), tuple(runs))


def _build(
    rules: Sequence[Rule], campaign: CampaignConfig, policy: PolicyConfig, name: str,
    counted: bool,
) -> Plan:
    prep = prepared_for(campaign, policy, name)
    known: list[tuple[str, RuleFn | Step | Outcome]] = []
    bare: list[tuple[str, RuleFn | Step | Outcome]] = []
    split = None
    for rule in rules:
        fixed = rule.fixed(prep, counted) if rule.fixed is not None else None
        answer = rule.bare(prep, counted) if rule.bare is not None and fixed is None else None
        if answer is not None and split is None:
            split = len(known)
        known.append((rule.name, fixed or rule.check))
        bare.append((rule.name, fixed or answer or rule.check))
    if split is None:
        first, rest = _segment(known), None
    else:
        first = _segment(known[:split])
        rest = (_segment(known[split:]), _segment(bare[split:]))
    return Plan(rules, campaign, policy, name, counted, prep, first, rest, Trail(first.head, True))


# By campaign name: a dialer's calls of several campaigns come mixed, and each name has one
# config (a plan made for other inputs under the same name is made again).
_PLANS: dict[str, Plan] = {}
# Trails and Decisions kept by every plan together. The paths are few, but a shared step
# that changes now and then (a list's age in a stale-list warning) adds new ones; past the
# bound the plans are dropped with their trees and made again.
TRAIL_LIMIT = 65536
_trails_kept = 0


def plan_for(
    rules: Sequence[Rule], campaign: CampaignConfig, policy: PolicyConfig, name: str,
    counted: bool,
) -> Plan:
    """The plan for these inputs, made once."""
    plan = _PLANS.get(name)
    if (
        plan is not None and plan.rules is rules and plan.campaign is campaign
        and plan.policy is policy and plan.counted is counted
    ):
        return plan
    if len(_PLANS) > 1024:  # campaign names come off the wire: keep the table bounded
        _drop_plans()
    plan = _PLANS[name] = _build(rules, campaign, policy, name, counted)
    return plan


def _room() -> bool:
    """Whether the trees may keep one more Trail or Decision (counted); past the bound
    every plan is dropped, and the calls after this one make new ones."""
    global _trails_kept  # noqa: PLW0603 (counts what the module's plans hold)
    if _trails_kept >= TRAIL_LIMIT:
        _drop_plans()
        return False
    _trails_kept += 1
    return True


def _drop_plans() -> None:
    global _trails_kept  # noqa: PLW0603
    _PLANS.clear()
    _trails_kept = 0
