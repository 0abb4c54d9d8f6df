"""The tamper-evident decision record in the store: its tip, purge, redaction, verify, export.

How links are made and checked is `sipguard.store.chain`; this module is the SQL around it.
Every walk reads pages of `PAGE` rows by rowid inside one read transaction: memory stays
flat however many rows there are, and the walk sees one consistent snapshot (WAL lets the
record writer go on meanwhile).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from sipguard.store.chain import (
    GENESIS,
    BadTrail,
    ChainTip,
    StoredRow,
    Verifier,
    redacted_trail,
)
from sipguard.store.db import Store

PAGE = 1000
COLUMNS = ("rowid, decision_id, ts, call_id, campaign, callee, caller, action, reason, rule,"
           " trail, salt, personal, link")
_MIN_ROWID = -(2**63)
_IDS_PER_QUERY = 500


# -- the writer's side --------------------------------------------------------------------


async def read_tip(db: aiosqlite.Connection) -> ChainTip:
    """The chain's tip as stored: the newest row's link, else the anchor."""
    async with db.execute("SELECT anchor, appended FROM audit_chain") as cur:
        anchor, appended = await cur.fetchone() or (GENESIS, 0)
    async with db.execute(
        "SELECT link, decision_id FROM decisions ORDER BY rowid DESC LIMIT 1"
    ) as cur:
        newest = await cur.fetchone()
    # rows without a link come before the chain only: the newest without one means none has
    if newest is None or newest[0] is None:
        return ChainTip(bytes(anchor), int(appended), None)
    return ChainTip(bytes(newest[0]), int(appended), str(newest[1]))


async def stored_ids(db: aiosqlite.Connection, ids: Sequence[str]) -> set[str]:
    """Which of these decision ids the table holds already."""
    found: set[str] = set()
    for i in range(0, len(ids), _IDS_PER_QUERY):
        part = ids[i : i + _IDS_PER_QUERY]
        marks = ", ".join("?" * len(part))
        async with db.execute(
            f"SELECT decision_id FROM decisions WHERE decision_id IN ({marks})", part
        ) as cur:
            found.update(str(r[0]) for r in await cur.fetchall())
    return found


async def count_appended(db: aiosqlite.Connection, rows: int) -> None:
    await db.execute("UPDATE audit_chain SET appended = appended + ?", (rows,))


# -- retention ------------------------------------------------------------------------------


async def purge_decisions(store: Store, before: str, *, batch: int, dry_run: bool) -> int:
    """Delete the decisions older than `before` that start the chain: the oldest rows up to
    the first one at or after it (a younger row keeps every row after it). Each batch
    moves the anchor to its last row, in the same transaction. Returns the rows deleted."""
    # Bound once: rows the writer appends meanwhile come after it.
    rows = await store.fetchall(
        "SELECT coalesce((SELECT rowid FROM decisions NOT INDEXED WHERE ts >= ?"
        " ORDER BY rowid LIMIT 1), (SELECT coalesce(max(rowid), 0) + 1 FROM decisions))",
        (before,),
    )
    keep_from = int(rows[0][0])
    if dry_run:
        found = await store.fetchall("SELECT count(*) FROM decisions WHERE rowid < ?",
                                     (keep_from,))
        return int(found[0][0])
    deleted = 0
    while True:
        async with store.transaction() as db:
            async with db.execute(
                "SELECT rowid, link FROM decisions WHERE rowid < ? ORDER BY rowid LIMIT ?",
                (keep_from, batch),
            ) as cur:
                going = list(await cur.fetchall())
            if going:
                await db.execute("DELETE FROM decisions WHERE rowid <= ?", (going[-1][0],))
                linked = [r for r in going if r[1] is not None]
                if linked:
                    await db.execute(
                        "UPDATE audit_chain SET anchor = ?, anchor_rowid = ?,"
                        " purged = purged + ?", (linked[-1][1], linked[-1][0], len(linked)),
                    )
        deleted += len(going)
        if len(going) < batch:
            return deleted
        await asyncio.sleep(0)  # let the record writer have the lock between batches


# -- erasure --------------------------------------------------------------------------------


async def redact(store: Store, number: str) -> int:
    """GDPR Art. 17: erase `number` from every decision naming it as callee or caller.
    Returns the rows. (`subjects.erase` does the same inside its own transaction.)"""
    found = await naming(store, number)
    async with store.transaction() as db:
        return await redact_rows(db, number, found)


@dataclass(frozen=True, slots=True)
class Naming:
    """The decisions that named a number when `naming` looked: (rowid, trail) each."""

    rows: list[tuple[int, str]]
    upto: int  # the newest rowid it looked at


async def naming(store: Store, number: str) -> Naming:
    """Find the decisions naming `number`, outside any write transaction.

    There is no index on callee or caller (one would cost every call's write), so this is
    a full scan: minutes over years of decisions. Done inside the erasure's write
    transaction, it held SQLite's write lock all that time, and a running server's record
    writer could write no row (its busy timeout is 10 s). Read first, then write briefly:
    `redact_rows` takes only the rows added since."""
    async with store.transaction(write=False) as db:
        async with db.execute("SELECT coalesce(max(rowid), ?) FROM decisions",
                              (_MIN_ROWID,)) as cur:
            upto = int((await cur.fetchone() or (_MIN_ROWID,))[0])
        async with db.execute(
            "SELECT rowid, trail FROM decisions WHERE rowid <= ? AND (callee = ? OR caller = ?)",
            (upto, number, number),
        ) as cur:
            rows = [(int(r[0]), str(r[1])) for r in await cur.fetchall()]
    return Naming(rows, upto)


async def redact_rows(db: aiosqlite.Connection, number: str, found: Naming) -> int:
    """Redact the `found` rows and any newer row naming `number`, inside a write
    transaction the caller holds. Returns the rows redacted.

    Callee, caller and salt become NULL, call_id '' (the column is NOT NULL) and every
    trail step's detail '' (details may quote numbers); the personal digest and the link
    stay, so the chain still verifies while the salt's loss makes the digest unguessable.
    A found row the retention purge deleted or another erasure redacted meanwhile no
    longer names the number, and is left alone."""
    async with db.execute(
        "SELECT rowid, trail FROM decisions WHERE rowid > ? AND (callee = ? OR caller = ?)",
        (found.upto, number, number),
    ) as cur:
        newer = [(int(r[0]), str(r[1])) for r in await cur.fetchall()]
    async with await db.executemany(
        "UPDATE decisions SET callee = NULL, caller = NULL, call_id = '', salt = NULL,"
        " trail = ? WHERE rowid = ? AND (callee = ? OR caller = ?)",
        [(_erased_trail(trail), rowid, number, number) for rowid, trail in found.rows + newer],
    ) as cur:
        return max(int(cur.rowcount), 0)


def _erased_trail(trail: str) -> str:
    try:
        return redacted_trail(trail)
    except BadTrail:  # a damaged trail (verify reports it) still must not keep the number
        return "[]"


# -- walking the chain ----------------------------------------------------------------------


async def _rows(db: aiosqlite.Connection, after: int = _MIN_ROWID) -> AsyncIterator[StoredRow]:
    """The rows after rowid `after`, in rowid order, a page at a time."""
    while True:
        async with db.execute(
            f"SELECT {COLUMNS} FROM decisions WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after, PAGE),
        ) as cur:
            page = list(await cur.fetchall())
        for r in page:
            yield StoredRow(*r)
        if len(page) < PAGE:
            return
        after = page[-1][0]


async def _counters(db: aiosqlite.Connection) -> tuple[bytes, int]:
    """The anchor, and how many linked rows the chain must hold."""
    async with db.execute("SELECT anchor, appended - purged FROM audit_chain") as cur:
        anchor, expected = await cur.fetchone() or (GENESIS, 0)
    return bytes(anchor), int(expected)


async def verify(store: Store, head: bytes | None = None) -> Verifier:
    """Walk the whole chain from the anchor (and look for the checkpoint `head`)."""
    async with store.transaction(write=False) as db:
        anchor, expected = await _counters(db)
        verifier = Verifier(anchor, want_head=head)
        async for row in _rows(db):
            if not verifier.feed(row):
                break
        verifier.finish(expected)
    return verifier


async def export(
    store: Store, since: str | None = None, until: str | None = None,
    pseudonymize: Callable[[str], str] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The rows from the first at or after `since` up to the first at or after `until`
    (a stretch of the chain, oldest first) as JSON-ready dicts, then a summary whose `ok`
    says whether each exported row's link follows from the one before it."""
    async with store.transaction(write=False) as db:
        anchor, _expected = await _counters(db)
        start = _MIN_ROWID
        if since is not None:
            async with db.execute(
                "SELECT rowid FROM decisions NOT INDEXED WHERE ts >= ? ORDER BY rowid LIMIT 1",
                (since,),
            ) as cur:
                first = await cur.fetchone()
            start = int(first[0]) - 1 if first else 2**63 - 1
        async with db.execute(
            "SELECT link FROM decisions WHERE rowid <= ? ORDER BY rowid DESC LIMIT 1", (start,)
        ) as cur:
            before = await cur.fetchone()
        prev = None if before is None else before[0]
        verifier = Verifier(anchor if prev is None else bytes(prev), started=prev is not None)
        count = 0
        async for row in _rows(db, start):
            if until is not None and row.ts >= until:
                break
            verifier.feed(row)
            count += 1
            yield _exported(row, pseudonymize)
    yield {"event": "audit.export", "rows": count, "head": verifier.head.hex(),
           "ok": verifier.ok, "broken_at": verifier.broken_at, "detail": verifier.detail}


def _exported(row: StoredRow, pseudonymize: Callable[[str], str] | None) -> dict[str, Any]:
    callee, caller, trail, salt = row.callee, row.caller, row.trail, row.salt
    if pseudonymize is not None:
        callee = pseudonymize(callee) if callee is not None else None
        caller = pseudonymize(caller) if caller is not None else None
        trail = _erased_trail(trail)
        salt = None  # with the salt, the personal digest would confirm a guessed number
    try:
        steps: Any = json.loads(trail)
    except ValueError:
        steps = trail  # as stored; the summary's verification names the row
    return {
        "decision_id": row.decision_id, "ts": row.ts, "call_id": row.call_id,
        "campaign": row.campaign, "callee": callee, "caller": caller, "action": row.action,
        "reason": row.reason, "rule": row.rule, "trail": steps,
        "salt": None if salt is None else salt.hex(),
        "personal": None if row.personal is None else row.personal.hex(),
        "link": None if row.link is None else row.link.hex(),
        "redacted": row.redacted,
    }
