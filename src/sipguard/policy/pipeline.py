"""The pieces a decision pipeline is made of: the `Context` rules read, a rule's `Outcome`,
the `Rule` entry, and the shared (made-once) trail steps.

`engine.py` puts the rules of issues 3 and 5 in order and runs them; `rule_steps.py` adapts
the compliance rule modules (windows, caps, consent semantics, caller ID, freshness) to
this shape. Both import from here, so neither imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from sipguard.config import CampaignConfig, PolicyConfig
from sipguard.policy.model import (
    Action,
    Attempt,
    Consent,
    ConsentType,
    Facts,
    ListKind,
    Membership,
    Reason,
    Step,
)

if TYPE_CHECKING:
    from sipguard.policy.caps import AttemptCounter
    from sipguard.policy.consent_rules import ConsentScreen
    from sipguard.policy.geo import Location
    from sipguard.policy.plans import Trail
    from sipguard.policy.rule_steps import Prepared


# Enum members read on every call, bound once: on CPython 3.11 `ListKind.NATIONAL` is a
# lookup through the enum's metaclass (~70 ns, as much as a whole dict probe and a compare
# together), a module global is a dict read.
ALLOW, BLOCK, FLAG = Action.ALLOW, Action.BLOCK, Action.FLAG
INTERNAL, NATIONAL, STATE = ListKind.INTERNAL, ListKind.NATIONAL, ListKind.STATE
LITIGATOR, REASSIGNED, CUSTOM = ListKind.LITIGATOR, ListKind.REASSIGNED, ListKind.CUSTOM


class Context:
    """What the rules read; facts are fetched once, on first use (emergency calls need none).

    `prepared` holds the campaign's settings parsed once (`rule_steps.Prepared`). The
    compliance rules add lazily computed slots: where the number rings (`location`), the
    known addresses of its consent records (`addresses`) and its consents screened for this
    call (`screen`); `rule_steps` fills them on first use. `trail` is the steps so far (the
    engine moves it on).
    """

    __slots__ = ("_consents", "_memberships", "addresses", "attempt", "campaign", "consent",
                 "counter", "facts", "location", "now", "policy", "prepared", "screen", "trail")

    def __init__(
        self,
        attempt: Attempt,
        facts: Facts,
        campaign: CampaignConfig,
        policy: PolicyConfig,
        now: datetime,
        counter: AttemptCounter | None,
        prepared: Prepared,
    ) -> None:
        self.attempt = attempt
        self.facts = facts
        self.campaign = campaign
        self.policy = policy
        self.now = now
        self.counter = counter  # allowed attempts per number (frequency caps); None = none kept
        self.consent: Consent | None = None  # set by a rule that let a consent apply
        self._memberships: Sequence[Membership] | None = None
        self._consents: Sequence[Consent] | None = None
        self.location: Location | None = None
        self.addresses: tuple[Location, ...] | None = None
        self.screen: ConsentScreen | None = None
        self.prepared = prepared
        self.trail: Trail  # set by the engine before the first rule runs

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
        if kind is INTERNAL:
            return True
        lists = self.campaign.lists
        return kind in lists or m.list_name in lists

    def active_consent(self, types: frozenset[ConsentType], after: datetime | None = None) -> (
        Consent | None
    ):
        """The newest consent of `types` for this campaign ('*' = all) active now (issue 3's
        reading, without EBR terms, revocation scope or reassignment: see `rule_steps`)."""
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

    # ALLOW or BLOCK from a rule (monitor mode turns BLOCK into FLAG later); FLAG from the
    # engine when a block reason in tag mode ends the decision
    action: Action
    reason: Reason
    detail: str = ""
    dynamic: bool = False  # the detail varies per call (dates, ids): never shared
    opens_at: datetime | None = None  # outside-calling-window: when the window opens next


RuleFn = Callable[[Context], "Step | Outcome"]
# A rule's answer known before the call is seen, or None: (campaign settings, whether the
# frequency caps have a counter) -> the Step or Outcome `check` would return.
KnownFn = Callable[["Prepared", bool], "Step | Outcome | None"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of the pipeline. `fixed` and `bare` let the engine skip calling `check`
    where its answer is known in advance (each must return exactly what `check` would):

    * `fixed(prepared, counted)`: the same for every call of a campaign (caller ID when the
      campaign lists none, wireless when it is not autodialed, ...);
    * `bare(prepared, counted)`: for a number the store knows nothing about, neither a list
      membership nor a consent record (most calls: every DNC rule passes).
    """

    name: str
    check: RuleFn
    source: str  # the law, regulation or contract the rule carries out
    fixed: KnownFn | None = None
    bare: KnownFn | None = None


# Steps are immutable values, and most calls take one of a few paths (nothing found; on
# the national list; ...). The steps of those paths are made once and shared: building
# frozen dataclasses is a large part of a decision's cost. The table only grows, up to a
# bound.
SHARED_LIMIT = 4096
_STEPS: dict[tuple[str, str, str], Step] = {}


def shared_step(rule: str, outcome: str, detail: str = "") -> Step:
    """A Step made once per (rule, outcome, detail), while the table has room."""
    key = (rule, outcome, detail)
    step = _STEPS.get(key)
    if step is None:
        step = Step(rule, outcome, detail)
        if len(_STEPS) < SHARED_LIMIT:
            _STEPS[key] = step
    return step


def is_shared(step: Step) -> bool:
    """Whether `step` is the one `shared_step` keeps (it lives as long as the process)."""
    return _STEPS.get((step.rule, step.outcome, step.detail)) is step
