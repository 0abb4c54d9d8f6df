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
    FLAG = "flag"  # monitor mode: forwarded, marked as what enforce mode would block


class Reason(StrEnum):
    # block
    DNC_INTERNAL = "dnc-internal"
    DNC_NATIONAL = "dnc-national"
    DNC_STATE = "dnc-state"
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


class ListKind(StrEnum):
    INTERNAL = "internal"
    NATIONAL = "national"
    STATE = "state"
    LITIGATOR = "litigator"
    WIRELESS = "wireless"
    REASSIGNED = "reassigned"
    CUSTOM = "custom"


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


@dataclass(frozen=True, slots=True)
class Membership:
    """A number found on a list."""

    list_name: str
    kind: ListKind
    jurisdiction: str | None  # e.g. "US-FL"
    listed_at: datetime | None  # when this number was added (opt-out time for internal lists)
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


class Facts(Protocol):
    """What the in-memory store indexes answer on the hot path (never touches disk)."""

    def memberships(self, number: str) -> Sequence[Membership]: ...

    def consents(self, number: str) -> Sequence[Consent]: ...


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the rule trail: the rule looked at, what it found."""

    rule: str
    outcome: str  # "pass", "block", "allow", "skip", "override"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: Reason
    rule: str
    trail: tuple[Step, ...]
    opens_at: datetime | None = None  # outside-calling-window: when the window opens next
