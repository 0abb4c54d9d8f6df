"""EBR terms, revocation scope, reassigned and wireless numbers, caller ID."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from rules.helpers_rules import utc
from sipguard.policy.consent_rules import (
    check_caller_id,
    check_reassigned,
    check_wireless,
    dnc_override,
    in_number_blocks,
    is_wireless,
    normalise_caller_ids,
    overrides_opt_out,
    reassigned_at,
    screen_consents,
)
from sipguard.policy.model import Consent, ConsentType, ListKind, Membership, Reason

NUMBER = "+12125551234"
GRANTED = utc("2024-01-01 12:00:00")


def consent(
    kind: ConsentType,
    granted: datetime = GRANTED,
    *,
    id: int = 1,
    campaign: str = "promo",
    revoked: datetime | None = None,
    expires: datetime | None = None,
) -> Consent:
    return Consent(id, NUMBER, campaign, kind, granted, expires, revoked, None, "form-1")


@pytest.mark.parametrize(
    ("kind", "country", "day", "usable"),
    [
        (ConsentType.EBR_PURCHASE, "US", 540, True),
        (ConsentType.EBR_PURCHASE, "US", 541, False),
        (ConsentType.EBR_INQUIRY, "US", 90, True),
        (ConsentType.EBR_INQUIRY, "US", 91, False),
        (ConsentType.EBR_PURCHASE, "CA", 540, True),
        (ConsentType.EBR_PURCHASE, "CA", 541, False),
        (ConsentType.EBR_INQUIRY, "CA", 180, True),
        (ConsentType.EBR_INQUIRY, "CA", 181, False),
        (ConsentType.EXPRESS_WRITTEN, "US", 5000, True),  # no term for express consent
    ],
)
def test_ebr_terms(kind: ConsentType, country: str, day: int, usable: bool) -> None:
    # the call at 23:59 of day N: whole UTC days count, not hours
    now = utc("2024-01-01 23:59:00") + timedelta(days=day)
    screen = screen_consents([consent(kind)], "promo", now, country=country)
    assert bool(screen.usable) is usable
    if not usable:
        assert screen.failure_reason() is Reason.CONSENT_EXPIRED
        assert "days old" in screen.failure_detail()


def test_ebr_overrides_dnc_with_reason_ebr() -> None:
    now = GRANTED + timedelta(days=10)
    screen = screen_consents([consent(ConsentType.EBR_PURCHASE)], "promo", now)
    found = dnc_override(screen)
    assert found is not None and found[1] is Reason.EBR
    both = screen_consents(
        [consent(ConsentType.EBR_PURCHASE), consent(ConsentType.EXPRESS_WRITTEN, id=2)],
        "promo", now,
    )
    found = dnc_override(both)
    assert found is not None and found[1] is Reason.CONSENT and found[0].id == 2
    express_only = screen_consents([consent(ConsentType.EXPRESS)], "promo", now)
    assert dnc_override(express_only) is None


def test_ebr_never_beats_a_later_opt_out() -> None:
    ebr = consent(ConsentType.EBR_PURCHASE)
    assert not overrides_opt_out(ebr, GRANTED + timedelta(days=1))
    assert overrides_opt_out(ebr, GRANTED - timedelta(days=1))


DISCONNECTED = utc("2026-03-10 00:00:00")


@pytest.mark.parametrize(
    ("granted", "blocked"),
    [
        (DISCONNECTED - timedelta(days=1), True),  # from the previous subscriber: void
        (DISCONNECTED, True),  # at the disconnection itself: void (stricter)
        (DISCONNECTED + timedelta(days=1), False),  # from the new subscriber
    ],
)
def test_reassigned_number(granted: datetime, blocked: bool) -> None:
    now = DISCONNECTED + timedelta(days=30)
    memberships = [
        Membership("reassigned", ListKind.REASSIGNED, "US", DISCONNECTED, DISCONNECTED)
    ]
    when = reassigned_at(memberships, now)
    assert when == DISCONNECTED
    screen = screen_consents(
        [consent(ConsentType.EXPRESS_WRITTEN, granted)], "promo", now, disconnected_at=when
    )
    result = check_reassigned(when, screen)
    assert result.blocked is blocked
    if blocked:
        assert result.reason is Reason.REASSIGNED_NUMBER
        assert screen.failure_reason() is Reason.REASSIGNED_NUMBER


def test_not_reassigned_is_skipped() -> None:
    screen = screen_consents([], "promo", DISCONNECTED)
    assert check_reassigned(None, screen).step.outcome == "skip"
    assert reassigned_at([], DISCONNECTED) is None


def test_revoke_scope() -> None:
    now = GRANTED + timedelta(days=20)
    revoked_x = consent(ConsentType.EXPRESS, id=1, campaign="x", revoked=GRANTED + timedelta(5))
    for_y = consent(ConsentType.EXPRESS, id=2, campaign="y")
    by_campaign = screen_consents([revoked_x, for_y], "y", now, revoke_scope="campaign")
    assert [c.id for c in by_campaign.usable] == [2]
    by_all = screen_consents([revoked_x, for_y], "y", now, revoke_scope="all")
    assert by_all.usable == () and by_all.failure_reason() is Reason.CONSENT_REVOKED
    # a revocation for every campaign ("*") voids them all, whatever the scope
    revoked_all = consent(ConsentType.EXPRESS, id=3, campaign="*", revoked=GRANTED + timedelta(5))
    assert screen_consents([revoked_all, for_y], "y", now).usable == ()
    # ... but not a consent granted after it
    later = consent(ConsentType.EXPRESS, GRANTED + timedelta(days=6), id=4, campaign="y")
    assert [c.id for c in screen_consents([revoked_all, later], "y", now).usable] == [4]
    # own revocation
    own = screen_consents([revoked_x], "x", now)
    assert own.failure_reason() is Reason.CONSENT_REVOKED


def test_expiry_and_failure_order() -> None:
    now = GRANTED + timedelta(days=20)
    expired = consent(ConsentType.EXPRESS, expires=GRANTED + timedelta(days=10))
    assert screen_consents([expired], "promo", now).failure_reason() is Reason.CONSENT_EXPIRED
    assert screen_consents([], "promo", now).failure_reason() is Reason.NO_CONSENT
    other = consent(ConsentType.EXPRESS, campaign="other")
    assert screen_consents([other], "promo", now).failure_reason() is Reason.NO_CONSENT


@pytest.mark.parametrize(
    ("wireless", "autodialed", "purpose", "kinds", "blocked"),
    [
        (True, True, "telemarketing", [ConsentType.EXPRESS], True),
        (True, True, "telemarketing", [ConsentType.EXPRESS_WRITTEN], False),
        (True, True, "telemarketing", [ConsentType.EBR_PURCHASE], True),
        (True, True, "informational", [ConsentType.EXPRESS], False),
        (True, True, "informational", [], True),
        (True, False, "telemarketing", [], False),
        (False, True, "telemarketing", [], False),
    ],
)
def test_wireless(
    wireless: bool, autodialed: bool, purpose: str, kinds: list[ConsentType], blocked: bool
) -> None:
    now = GRANTED + timedelta(days=1)
    screen = screen_consents(
        [consent(k, id=i) for i, k in enumerate(kinds)], "promo", now
    )
    result = check_wireless(wireless, autodialed, purpose, screen)
    assert result.blocked is blocked, result.step.detail
    if blocked:
        assert result.reason is Reason.NO_CONSENT


def test_wireless_facts() -> None:
    on_list = [Membership("wireless", ListKind.WIRELESS, "US", None, None)]
    assert is_wireless(NUMBER, on_list)
    assert not is_wireless(NUMBER, [])  # NANP: phonenumbers cannot tell
    assert is_wireless("+33612345678", [])  # French mobile range
    assert not is_wireless("+33612345678", [], mobile_type=False)
    blocks = frozenset({"+12125551", "+1646555"})
    assert in_number_blocks("+12125551234", blocks)
    assert in_number_blocks("+16465559999", blocks)
    assert not in_number_blocks("+12125561234", blocks)


def test_caller_id() -> None:
    allowed = normalise_caller_ids(["(212) 555-0100", "+1 646 555 0199"], "US")
    assert allowed == {"+12125550100", "+16465550199"}
    assert check_caller_id("+12125550100", allowed).step.outcome == "pass"
    for caller in (None, "+12125550101"):
        result = check_caller_id(caller, allowed)
        assert result.blocked and result.reason is Reason.CALLER_ID_NOT_ALLOWED
    assert check_caller_id(None, frozenset()).step.outcome == "skip"
    with pytest.raises(ValueError, match="not a valid"):
        normalise_caller_ids(["+1 212 000 0000"], "US")
