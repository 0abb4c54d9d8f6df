"""Consent records: grant, revoke (never delete), history, and the index kept in step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sipguard.errors import StoreError
from sipguard.policy.model import ConsentType
from sipguard.store.db import Store

N = "+12025550123"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_grant_then_revoke_keeps_history(store: Store) -> None:
    index = await store.load_index()
    first = await store.grant_consent(
        N, "default", ConsentType.EXPRESS_WRITTEN, "form 12 v3, 203.0.113.7",
        granted_at=T0, expires_at=T0 + timedelta(days=365),
    )
    await store.refresh(index)
    (seen,) = index.consents(N)
    assert seen == first and seen.revoked_at is None

    revoked = await store.revoke_consent(N, None, "call 2026-02-01", at=T0 + timedelta(days=31))
    assert [c.id for c in revoked] == [first.id]
    await store.refresh(index)
    (seen,) = index.consents(N)
    assert seen.revoked_at == T0 + timedelta(days=31)
    assert seen.revoke_source == "call 2026-02-01"
    assert seen.source == "form 12 v3, 203.0.113.7"  # the grant's proof is kept

    again = await store.grant_consent(N, "default", ConsentType.EXPRESS, "web form 99",
                                      granted_at=T0 + timedelta(days=40))
    history = await store.consent_history(N)
    assert [c.id for c in history] == [first.id, again.id]
    await store.refresh(index)
    assert [c.id for c in index.consents(N)] == [first.id, again.id]


async def test_revoke_one_campaign_also_ends_blanket_consent(store: Store) -> None:
    blanket = await store.grant_consent(N, "*", ConsentType.EXPRESS, "f1", granted_at=T0)
    sales = await store.grant_consent(N, "sales", ConsentType.EXPRESS, "f2", granted_at=T0)
    other = await store.grant_consent(N, "surveys", ConsentType.EXPRESS, "f3", granted_at=T0)
    revoked = await store.revoke_consent(N, "sales", "sms STOP")
    assert sorted(c.id for c in revoked) == sorted([blanket.id, sales.id])
    active = [c.id for c in await store.consent_history(N) if c.revoked_at is None]
    assert active == [other.id]


async def test_revoke_twice_keeps_the_first_revocation(store: Store) -> None:
    await store.grant_consent(N, "default", ConsentType.EXPRESS, "f1", granted_at=T0)
    await store.revoke_consent(N, None, "first", at=T0 + timedelta(days=1))
    assert await store.revoke_consent(N, None, "second") == []
    (record,) = await store.consent_history(N)
    assert record.revoke_source == "first"


async def test_bad_consents_are_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="expire before"):
        await store.grant_consent(N, "default", ConsentType.EXPRESS, "f", granted_at=T0,
                                  expires_at=T0 - timedelta(days=1))
    with pytest.raises(StoreError, match=r"E\.164"):
        await store.grant_consent("12025550123", "default", ConsentType.EXPRESS, "f")
