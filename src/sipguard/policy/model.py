"""Value types of the policy decision: what goes in, what the store knows, what comes out.

Reason codes are the stable vocabulary of CONTRACT §5; they appear on the wire, in the
log, on MQTT and in `sipguard check`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Action(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    # forwarded, marked as what enforce mode would block: monitor mode, or a block reason
    # in tag mode (`tag_reasons`) that no later rule turned into a block
    FLAG = "flag"


class Reason(StrEnum):
    # block
    DNC_INTERNAL = "dnc-internal"
    DNC_NATIONAL = "dnc-national"
    DNC_STATE = "dnc-state"
    DNC_CUSTOM = "dnc-custom"  # a list of kind `custom` the campaign names
    LITIGATOR = "litigator"
    NO_CONSENT = "no-consent"
    CONSENT_REVOKED = "consent-revoked"
    CONSENT_EXPIRED = "consent-expired"
    REASSIGNED_NUMBER = "reassigned-number"
    OUTSIDE_CALLING_WINDOW = "outside-calling-window"
    FREQUENCY_CAP = "frequency-cap"
    SUBJECT_OBJECTION = "subject-objection"
    SUBJECT_RESTRICTED = "subject-restricted"
    INVALID_NUMBER = "invalid-number"
    CALLER_ID_NOT_ALLOWED = "caller-id-not-allowed"
    STORE_UNAVAILABLE = "store-unavailable"
    # allow
    CONSENT = "consent"
    EBR = "ebr"
    EMERGENCY = "emergency"
    NO_RESTRICTION = "no-restriction"


ALLOW_REASONS = frozenset(
    {Reason.CONSENT, Reason.EBR, Reason.EMERGENCY, Reason.NO_RESTRICTION}
)
BLOCK_REASONS = frozenset(Reason) - ALLOW_REASONS
# Block reasons that `tag_reasons` may not name, and why (config validation says so):
UNTAGGABLE = {
    Reason.STORE_UNAVAILABLE: (
        "no rule decides it: `policy.on_store_error = \"allow\"` forwards such calls flagged"
    ),
    Reason.INVALID_NUMBER: (
        "a number that cannot be read is checked against no list and no consent: tagging "
        "it would forward calls no rule has looked at (monitor mode flags it, for a trial)"
    ),
}
# Block reasons a rule in tag mode may flag instead of blocking (`tag_reasons`).
TAGGABLE = BLOCK_REASONS.difference(UNTAGGABLE)


class ListKind(StrEnum):
    INTERNAL = "internal"
    NATIONAL = "national"
    STATE = "state"
    LITIGATOR = "litigator"
    WIRELESS = "wireless"
    REASSIGNED = "reassigned"
    CUSTOM = "custom"

    @classmethod
    def of_list(cls, name: str, given: str | None = None) -> ListKind | None:
        """The kind a list gets: `given`, else its name when the name is a kind."""
        if given:
            return cls(given)
        return cls(name) if name in cls._value2member_map_ else None


class ConsentType(StrEnum):
    EXPRESS = "express"
    EXPRESS_WRITTEN = "express-written"
    EBR_PURCHASE = "ebr-purchase"
    EBR_INQUIRY = "ebr-inquiry"
    GDPR_CONSENT = "gdpr-consent"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One outbound call attempt, as the gate read it off the INVITE."""

    callee_raw: str
    callee: str | None  # E.164, or None when the number is invalid
    caller: str | None  # E.164 from P-Asserted-Identity else From, when it parses
    campaign: str
    call_id: str

    def __init__(self, callee_raw: str, callee: str | None, caller: str | None, campaign: str,
                 call_id: str) -> None:
        # Written out: see sip.message.Via (the compiled build runs a generated one interpreted).
        object.__setattr__(self, "callee_raw", callee_raw)
        object.__setattr__(self, "callee", callee)
        object.__setattr__(self, "caller", caller)
        object.__setattr__(self, "campaign", campaign)
        object.__setattr__(self, "call_id", call_id)


@dataclass(frozen=True, slots=True)
class Membership:
    """A number found on a list."""

    list_name: str
    kind: ListKind
    jurisdiction: str | None  # e.g. "US-FL"
    # When this number was added: the opt-out time for internal lists; for kind
    # `reassigned`, the number's disconnection date (FCC RND / carrier file), which
    # `consent_rules.reassigned_at` reads (unknown -> refreshed_at -> now: stricter).
    listed_at: datetime | None
    refreshed_at: datetime | None  # when the whole list was last refreshed


@dataclass(frozen=True, slots=True)
class Consent:
    """One consent record; revocation is a later fact on the same record, never a deletion."""

    id: int
    number: str
    campaign: str  # "*" for every campaign
    type: ConsentType
    granted_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoke_source: str | None
    source: str  # the proof: form id, recording reference, IP, wording version
    # The subscriber's known address, when the consent recorded one: its calling window
    # and state caps apply as well as those of the number (issue 5).
    location_region: str | None = None  # ISO 3166-2, e.g. "US-FL"
    location_zone: str | None = None  # IANA zone, e.g. "America/Chicago"


class SubjectRight(StrEnum):
    """A data subject's request that stops calls to the number while it is in force."""

    OBJECT = "object"  # GDPR Art. 21(2)-(3): objection to direct marketing (absolute)
    RESTRICT = "restrict"  # GDPR Art. 18: restriction of processing
    # GDPR Art. 17: what remains of an erased subject; kept so that the number is never
    # called again (Art. 17(3)(b), (e): the opt-out must be honoured, claims defended)
    ERASE = "erase"


@dataclass(frozen=True, slots=True)
class SubjectRequest:
    """One data-subject request; lifting it (a restriction ended, an objection withdrawn)
    is a later fact on the same record."""

    id: int
    number: str
    right: SubjectRight
    at: datetime  # when the subject made it
    source: str  # how it came in: ticket, letter, recording
    lifted_at: datetime | None = None
    lift_source: str | None = None


class ListMeta(Protocol):
    """What the rules read about a list (its freshness): the store's own row type and
    `ListInfo` below both have it."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> ListKind: ...
    @property
    def jurisdiction(self) -> str | None: ...
    @property
    def refreshed_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class ListInfo:
    """A list as the rules see it (for `Facts` implementations without a store)."""

    name: str
    kind: ListKind
    jurisdiction: str | None  # "US", "GB", "AU", "CA" for national lists; "US-FL" for state
    refreshed_at: datetime | None


class Facts(Protocol):
    """What the in-memory store indexes answer on the hot path (never touches disk).

    `number` is E.164. An index that cannot answer (not loaded, failed, stale beyond use)
    raises `sipguard.errors.StoreError`; the engine turns that into `store-unavailable`.
    """

    def memberships(self, number: str) -> Sequence[Membership]: ...

    def consents(self, number: str) -> Sequence[Consent]: ...

    def subject_requests(self, number: str) -> Sequence[SubjectRequest]:
        """The number's data-subject requests in force (objection, restriction, erasure)."""
        ...

    def lists(self) -> Sequence[ListMeta]:
        """Every list the store holds, also those the number is not on (freshness)."""
        ...


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the rule trail: the rule looked at, what it found."""

    rule: str
    outcome: str  # "pass", "block", "allow", "flag", "skip", "override", "tag"
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: Reason
    rule: str
    trail: tuple[Step, ...]
    opens_at: datetime | None = None  # outside-calling-window: when the window opens next
    consent_id: int | None = None  # the consent record that applied, when one did

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (used by `sipguard check` and the audit trail)."""
        return {
            "decision": self.action.value,
            "reason": self.reason.value,
            "rule": self.rule,
            "consent_id": self.consent_id,
            "opens_at": self.opens_at.isoformat() if self.opens_at else None,
            "trail": [step.as_dict() for step in self.trail],
        }


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One decision as the gate hands it to `emit` (log, store writer, MQTT).

    Numbers are kept in clear here; whoever writes them out decides on pseudonyms
    (`sipguard.log.decision_event`).
    """

    decision_id: str  # unique, sortable within a node: "<node>-<ms time hex><counter hex>"
    ts: datetime  # wall clock (UTC) when the decision was made
    node: str
    call_id: str
    campaign: str
    callee: str | None  # E.164, None when the number is invalid
    callee_raw: str  # the dialled string as read off the INVITE
    caller: str | None  # E.164 or None
    source: str  # the dialer, e.g. "udp:10.1.2.3:5060"; "cli" for `sipguard check`
    decision: Decision
    latency_us: int  # time spent in the gate, normalisation included

    def __init__(self, decision_id: str, ts: datetime, node: str, call_id: str, campaign: str,
                 callee: str | None, callee_raw: str, caller: str | None, source: str,
                 decision: Decision, latency_us: int) -> None:
        # Written out: see sip.message.Via (the compiled build runs a generated one interpreted).
        object.__setattr__(self, "decision_id", decision_id)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "node", node)
        object.__setattr__(self, "call_id", call_id)
        object.__setattr__(self, "campaign", campaign)
        object.__setattr__(self, "callee", callee)
        object.__setattr__(self, "callee_raw", callee_raw)
        object.__setattr__(self, "caller", caller)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "decision", decision)
        object.__setattr__(self, "latency_us", latency_us)

    @property
    def action(self) -> Action:
        return self.decision.action

    @property
    def reason(self) -> Reason:
        return self.decision.reason
