"""Data-subject requests in the store (GDPR Art. 15, 17, 18, 20, 21; `sipguard subject`).

* An objection (Art. 21) or a restriction (Art. 18) is a row of `subject_requests` that
  blocks every call to the number while it is in force; withdrawing or lifting it fills
  `lifted_at` (the history stays, as consents' does).
* An erasure (Art. 17) deletes, in one transaction, the number's consents, single list
  entries, counted attempts and other requests, and takes the number out of the decision
  records (`audit.redact_rows`: the hash chain still verifies; the scan that finds them
  runs before, without the write lock). What stays is one `erase`
  request, the record that keeps the number from being called again (Art. 17(3)(b), (e):
  an opt-out must be honoured, and a complaint answered). The number stays in bulk list
  copies (a national registry is not data sipguard holds about its subject).
* An export (Art. 15, 20) is everything the store holds about the number, as JSON.

Each write logs a `subject` change, so a running server applies it before the command
returns (`sync.refresh`; for an erasure it also forgets the number's consents).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sipguard.errors import StoreError
from sipguard.policy.model import SubjectRequest, SubjectRight
from sipguard.store.audit import naming, redact_rows
from sipguard.store.codec import number_key, time_text, utcnow
from sipguard.store.db import Store
from sipguard.store.rows import (
    ENTRY_COLUMNS,
    SUBJECT_COLUMNS,
    entry_row,
    subject_row,
)


async def record(
    store: Store, number: str, right: SubjectRight, source: str, *, at: datetime | None = None
) -> SubjectRequest:
    """Record an objection or a restriction (an erasure is `erase`)."""
    _check(number)
    if right is SubjectRight.ERASE:
        raise StoreError("an erasure is recorded by erase(), which also deletes")
    when = at or utcnow()
    async with store.transaction():
        request_id = await _insert(store, number, right, source, when)
    return SubjectRequest(request_id, number, right, when, source)


async def lift(
    store: Store, number: str, right: SubjectRight, source: str, *, at: datetime | None = None
) -> list[SubjectRequest]:
    """End the number's requests of this kind that are in force; the records they were."""
    if right is SubjectRight.ERASE:
        raise StoreError("an erasure cannot be lifted: the data it deleted is gone")
    when = at or utcnow()
    async with store.transaction():
        rows = await store.fetchall(
            "SELECT id FROM subject_requests WHERE number = ? AND kind = ? AND lifted_at IS NULL",
            (number, right.value),
        )
        ids = [int(r[0]) for r in rows]
        for request_id in ids:
            await store.run(
                "UPDATE subject_requests SET lifted_at = ?, lift_source = ? WHERE id = ?",
                (time_text(when), source, request_id),
            )
            await store.note_change("subject", request_id)
    return [r for r in await history(store, number) if r.id in ids]


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure deleted, table by table, and the request that stays."""

    request: SubjectRequest
    consents: int
    list_entries: int
    attempts: int
    requests: int
    decisions_redacted: int

    def as_dict(self) -> dict[str, Any]:
        return {"request": self.request.id, "consents": self.consents,
                "list_entries": self.list_entries, "attempts": self.attempts,
                "subject_requests": self.requests, "decisions_redacted": self.decisions_redacted}


async def erase(
    store: Store, number: str, source: str, *, at: datetime | None = None
) -> Erasure:
    """Delete what the store holds about `number`, keeping the one record that stops calls;
    all in one transaction (a failure leaves everything as it was)."""
    _check(number)
    when = at or utcnow()
    found = await naming(store, number)  # the long scan, before the write lock
    async with store.transaction() as db:
        deleted: dict[str, int] = {}
        for table in ("consents", "list_entries", "attempts", "subject_requests"):
            async with db.execute(f"DELETE FROM {table} WHERE number = ?", (number,)) as cur:
                deleted[table] = cur.rowcount
        redacted = await redact_rows(db, number, found)
        request_id = await _insert(store, number, SubjectRight.ERASE, source, when)
    return Erasure(SubjectRequest(request_id, number, SubjectRight.ERASE, when, source),
                   deleted["consents"], deleted["list_entries"], deleted["attempts"],
                   deleted["subject_requests"], redacted)


async def history(store: Store, number: str) -> list[SubjectRequest]:
    rows = await store.fetchall(
        f"SELECT {SUBJECT_COLUMNS} FROM subject_requests WHERE number = ? ORDER BY at, id",
        (number,),
    )
    return [subject_row(r) for r in rows]


async def export(store: Store, number: str) -> dict[str, Any]:
    """Everything the store holds about `number` (Art. 15 access, Art. 20 portability)."""
    _check(number)
    async with store.transaction(write=False):
        consents = await store.consent_history(number)
        entries = await store.fetchall(
            f"SELECT {', '.join('e.' + c for c in ENTRY_COLUMNS.split(', '))}, l.name"
            " FROM list_entries e JOIN lists l ON l.id = e.list_id WHERE e.number = ?"
            " ORDER BY e.id", (number,))
        attempts = await store.fetchall(
            "SELECT at, campaign, call_id FROM attempts WHERE number = ? ORDER BY at", (number,))
        decisions = await store.fetchall(
            "SELECT decision_id, ts, call_id, campaign, callee, caller, action, reason, rule"
            " FROM decisions WHERE callee = ? OR caller = ? ORDER BY ts", (number, number))
        requests = await history(store, number)
    return {
        "number": number,
        "subject_requests": [_request_json(r) for r in requests],
        "consents": [{
            "id": c.id, "campaign": c.campaign, "type": c.type.value,
            "granted_at": c.granted_at.isoformat(), "source": c.source,
            "expires_at": _iso(c.expires_at), "revoked_at": _iso(c.revoked_at),
            "revoke_source": c.revoke_source, "location_region": c.location_region,
            "location_zone": c.location_zone} for c in consents],
        "list_entries": [{
            "list": str(r[6]), "op": e.op, "at": e.at.isoformat(), "source": e.source}
            for r in entries for e in (entry_row(r),)],
        "attempts": [{"at": str(r[0]), "campaign": str(r[1]), "call_id": str(r[2])}
                     for r in attempts],
        "decisions": [{
            "decision_id": str(r[0]), "ts": str(r[1]), "call_id": str(r[2]),
            "campaign": str(r[3]), "as": "callee" if r[4] == number else "caller",
            "decision": str(r[6]), "reason": str(r[7]), "rule": str(r[8])} for r in decisions],
    }


def _request_json(r: SubjectRequest) -> dict[str, Any]:
    return {"id": r.id, "right": r.right.value, "at": r.at.isoformat(), "source": r.source,
            "lifted_at": _iso(r.lifted_at), "lift_source": r.lift_source}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _check(number: str) -> None:
    if number_key(number) is None:
        raise StoreError(f"{number!r} is not an E.164 number")


async def _insert(
    store: Store, number: str, right: SubjectRight, source: str, when: datetime
) -> int:
    request_id = await store.run(
        "INSERT INTO subject_requests (number, kind, at, source, recorded_at)"
        " VALUES (?, ?, ?, ?, ?)", (number, right.value, time_text(when), source,
                                    time_text(utcnow())),
    )
    await store.note_change("subject", request_id)
    return request_id
