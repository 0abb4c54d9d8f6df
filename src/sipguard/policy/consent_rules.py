"""Consent semantics: EBR terms, revocation scope, reassigned and wireless numbers, caller ID.

`screen_consents` sorts a number's consent records into the ones usable for this call and
the ones void, each with the reason it is void; the engine uses `usable` wherever issue 3
looks for "an active consent", and `failure_reason()` when none is left. The check functions
return `RuleResult`s for the trail.

EBR terms are in `data/consent_rules.toml` (US 18 months / 3 months, Canada 18 / 6), counted
in whole UTC days: an EBR granted on day 0 is valid on day 540 and void on day 541.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Literal

import phonenumbers

from sipguard.policy.model import Consent, ConsentType, ListKind, Membership, Reason
from sipguard.policy.rules_data import (
    RuleResult,
    blocked,
    elapsed_days,
    load_toml,
    passed,
    require_aware,
    skipped,
)

RevokeScope = Literal["campaign", "all"]
EBR_TYPES = frozenset({ConsentType.EBR_PURCHASE, ConsentType.EBR_INQUIRY})
EXPRESS_TYPES = frozenset({ConsentType.EXPRESS, ConsentType.EXPRESS_WRITTEN})
WRITTEN_TYPES = frozenset({ConsentType.EXPRESS_WRITTEN})
# Priority when no consent is usable: the most specific explanation wins.
FAILURE_ORDER = (
    Reason.REASSIGNED_NUMBER,
    Reason.CONSENT_REVOKED,
    Reason.CONSENT_EXPIRED,
    Reason.NO_CONSENT,
)


@dataclass(frozen=True, slots=True)
class EbrTerm:
    country: str  # "*" = default
    type: ConsentType
    max_days: int
    source: str


@cache
def ebr_terms() -> tuple[EbrTerm, ...]:
    return tuple(
        EbrTerm(row["country"], ConsentType(row["type"]), int(row["max_days"]), row["source"])
        for row in load_toml("consent_rules.toml").get("ebr", [])
    )


def ebr_term(kind: ConsentType, country: str) -> EbrTerm | None:
    """The EBR term for the called party's country (the "*" row when it has none)."""
    fallback = None
    for term in ebr_terms():
        if term.type == kind:
            if term.country == country:
                return term
            if term.country == "*":
                fallback = term
    return fallback


def in_scope(consent: Consent, campaign: str) -> bool:
    return consent.campaign in ("*", campaign)


@dataclass(frozen=True, slots=True)
class ConsentScreen:
    """A number's consents for one call: usable ones, and void ones with why."""

    usable: tuple[Consent, ...]
    void: tuple[tuple[Consent, Reason, str], ...]

    def failure_reason(self) -> Reason:
        """Why no consent applies: reassigned > revoked > expired > none at all."""
        reasons = {reason for _, reason, _ in self.void}
        return next((r for r in FAILURE_ORDER if r in reasons), Reason.NO_CONSENT)

    def failure_detail(self) -> str:
        reason = self.failure_reason()
        return next((d for _, r, d in self.void if r == reason), "no consent on record")

    def best(self, types: Iterable[ConsentType] | None = None) -> Consent | None:
        """The most recently granted usable consent of these types (any type when None)."""
        if not self.usable:  # most numbers on a list have no consent: nothing to look at
            return None
        wanted = frozenset(types) if types is not None else None
        pool = [c for c in self.usable if wanted is None or c.type in wanted]
        return max(pool, key=lambda c: c.granted_at, default=None)


def _void_reason(
    consent: Consent,
    consents: Sequence[Consent],
    now: datetime,
    country: str,
    revoke_scope: RevokeScope,
    disconnected_at: datetime | None,
) -> tuple[Reason, str] | None:
    if disconnected_at is not None and consent.granted_at <= disconnected_at:
        return Reason.REASSIGNED_NUMBER, (
            f"consent #{consent.id} granted {consent.granted_at.isoformat()} before the number "
            f"was disconnected {disconnected_at.isoformat()} (reassigned)"
        )
    if consent.revoked_at is not None and consent.revoked_at <= now:
        return (
            Reason.CONSENT_REVOKED,
            f"consent #{consent.id} revoked {consent.revoked_at.isoformat()}",
        )
    for other in consents:
        if other.revoked_at is None or other.revoked_at > now or other.id == consent.id:
            continue  # a revocation still to come (`check --at` in the past) voids nothing
        if (
            other.campaign == "*" or revoke_scope == "all"
        ) and consent.granted_at <= other.revoked_at:
            return Reason.CONSENT_REVOKED, (
                f"consent #{consent.id} voided by revocation of #{other.id} "
                f"({'all campaigns' if other.campaign == '*' else 'revoke_scope = all'})"
            )
    if consent.expires_at is not None and now >= consent.expires_at:
        return (
            Reason.CONSENT_EXPIRED,
            f"consent #{consent.id} expired {consent.expires_at.isoformat()}",
        )
    if consent.type in EBR_TYPES:
        term = ebr_term(consent.type, country)
        days = elapsed_days(consent.granted_at, now)
        if term is not None and days > term.max_days:
            return Reason.CONSENT_EXPIRED, (
                f"{consent.type.value} #{consent.id} is {days} days old, valid {term.max_days} "
                f"[{term.source}]"
            )
    if consent.granted_at > now:
        return (
            Reason.NO_CONSENT,
            f"consent #{consent.id} is granted only from {consent.granted_at.isoformat()}",
        )
    return None


def screen_consents(
    consents: Sequence[Consent],
    campaign: str,
    now: datetime,
    *,
    country: str = "US",
    revoke_scope: RevokeScope = "campaign",
    disconnected_at: datetime | None = None,
) -> ConsentScreen:
    """Usable consents for `campaign` at `now`, and the void ones with their reason.

    - revoked records are void; a revocation on a "*" record (CLI/MQTT revoke without a
      campaign) voids every consent granted before it; with `revoke_scope = "all"` any
      revocation does;
    - expired records (expires_at) and EBRs past their term (per `country`) are void;
    - when the number was reassigned (`disconnected_at`), consent granted at or before the
      disconnection is void (it came from the previous subscriber).
    """
    require_aware(now)
    usable: list[Consent] = []
    void: list[tuple[Consent, Reason, str]] = []
    for consent in consents:
        if not in_scope(consent, campaign):
            continue
        why = _void_reason(consent, consents, now, country, revoke_scope, disconnected_at)
        if why is None:
            usable.append(consent)
        else:
            void.append((consent, *why))
    return ConsentScreen(tuple(usable), tuple(void))


def dnc_override(screen: ConsentScreen) -> tuple[Consent, Reason] | None:
    """What lets a call through national/state DNC: express-written consent (reason
    `consent`, issue 3) or a live EBR (reason `ebr`; 47 CFR 64.1200(f)(15)(ii))."""
    written = screen.best(WRITTEN_TYPES)
    if written is not None:
        return written, Reason.CONSENT
    ebr = screen.best(EBR_TYPES)
    if ebr is not None:
        return ebr, Reason.EBR
    return None


def overrides_opt_out(consent: Consent, opted_out_at: datetime | None) -> bool:
    """A consent (EBR included) beats an internal opt-out only when given after it."""
    return opted_out_at is not None and consent.granted_at > opted_out_at


def reassigned_at(memberships: Sequence[Membership], now: datetime) -> datetime | None:
    """When the number was disconnected, from `reassigned` list memberships.

    The latest disconnection wins. A listing without a date voids every consent given
    before the list's refresh (or before now when that is unknown too): stricter.
    """
    found: list[datetime] = []
    for m in memberships:
        if m.kind == ListKind.REASSIGNED:
            found.append(m.listed_at or m.refreshed_at or now)
    return max(found, default=None)


def check_reassigned(disconnected_at: datetime | None, screen: ConsentScreen) -> RuleResult:
    """Block `reassigned-number` when the only consent this call could rest on is void
    because it predates the number's disconnection."""
    rule = "reassigned"
    if disconnected_at is None:
        return skipped(rule, "not on a reassigned-numbers list")
    voided = [c for c, r, _ in screen.void if r == Reason.REASSIGNED_NUMBER]
    if voided and not screen.usable:
        return blocked(
            rule,
            Reason.REASSIGNED_NUMBER,
            f"number disconnected {disconnected_at.isoformat()}; consent "
            f"{', '.join(f'#{c.id}' for c in voided)} given before that is void",
        )
    return passed(rule, f"disconnected {disconnected_at.isoformat()}; no earlier consent relied on")


def is_wireless(e164: str, memberships: Sequence[Membership], *, mobile_type: bool = True) -> bool:
    """On a `wireless` list (numbers or blocks, as the store indexes them), or, when
    `mobile_type`, a number phonenumbers types MOBILE (outside NANP only)."""
    if any(m.kind == ListKind.WIRELESS for m in memberships):
        return True
    if not mobile_type:
        return False
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE)


def in_number_blocks(e164: str, blocks: frozenset[str]) -> bool:
    """Whether an E.164 number falls in a block given by its prefix ("+1212555" for an
    NPA-NXX, "+12125551" for an NPA-NXX-X thousands block, or a whole number)."""
    return any(e164[:n] in blocks for n in range(2, len(e164) + 1))


def check_wireless(
    wireless: bool, autodialed: bool, purpose: str, screen: ConsentScreen
) -> RuleResult:
    """Autodialed calls to wireless numbers need express consent, express-written when the
    purpose is telemarketing (47 U.S.C. 227(b)(1)(A)(iii); 47 CFR 64.1200(a)(1)-(2))."""
    rule = "wireless"
    if not wireless:
        return skipped(rule, "not a wireless number")
    if not autodialed:
        return passed(rule, "wireless, campaign not autodialed")
    needed = (
        WRITTEN_TYPES if purpose == "telemarketing" else EXPRESS_TYPES
    )
    consent = screen.best(needed)
    if consent is not None:
        return passed(rule, f"wireless + autodialed: {consent.type.value} consent #{consent.id}")
    names = " or ".join(sorted(t.value for t in needed))
    return blocked(
        rule,
        Reason.NO_CONSENT,
        f"wireless number, autodialed {purpose} campaign needs {names} consent "
        "[47 U.S.C. 227(b)(1)(A)(iii); 47 CFR 64.1200(a)(1)-(2)]",
    )


def normalise_caller_ids(numbers: Iterable[str], region: str) -> frozenset[str]:
    """Configured caller IDs to E.164 (raises ValueError naming the first bad one)."""
    out = set()
    for text in numbers:
        try:
            parsed = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException as exc:
            raise ValueError(f"{text!r} is not a phone number: {exc}") from None
        if not phonenumbers.is_valid_number(parsed):
            raise ValueError(f"{text!r} is not a valid phone number")
        out.add(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    return frozenset(out)


def check_caller_id(caller: str | None, allowed: frozenset[str]) -> RuleResult:
    """A campaign with allowed caller IDs: a missing, invalid or unlisted caller blocks
    `caller-id-not-allowed` (16 CFR 310.4(a)(8): transmit a truthful caller ID)."""
    rule = "caller-id"
    if not allowed:
        return skipped(rule, "campaign lists no caller IDs")
    if caller is None:
        return blocked(
            rule, Reason.CALLER_ID_NOT_ALLOWED, "caller ID missing or invalid [16 CFR 310.4(a)(8)]"
        )
    if caller not in allowed:
        return blocked(
            rule,
            Reason.CALLER_ID_NOT_ALLOWED,
            f"caller {caller} is not one of the campaign's {len(allowed)} caller IDs "
            "[16 CFR 310.4(a)(8)]",
        )
    return passed(rule, f"caller {caller} allowed")
