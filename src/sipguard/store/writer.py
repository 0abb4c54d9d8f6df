"""Decision and attempt records, written in batches off the call path.

The gate calls `RecordWriter.submit(record)` from the hot path: an append to a deque, no
await, no I/O. `run()` (a task owned by the app) flushes every `interval` seconds or as
soon as `batch` records wait, each flush one transaction. If the store fails, records stay
queued and are retried; beyond `max_pending` the oldest are dropped and counted rather
than letting memory grow without bound or blocking a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from sipguard.errors import StoreError
from sipguard.policy.model import DecisionRecord
from sipguard.store.codec import text_time, time_text
from sipguard.store.db import Store


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One row of the `decisions` table."""

    decision_id: str
    ts: datetime
    call_id: str
    campaign: str
    callee: str | None
    caller: str | None
    action: str
    reason: str
    rule: str
    trail: tuple[dict[str, str], ...]  # [{"rule", "outcome", "detail"}, ...]


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One allowed call attempt (what frequency caps count)."""

    number: str
    campaign: str
    at: datetime
    call_id: str


Record = DecisionRow | AttemptRow


def decision_row(record: DecisionRecord) -> DecisionRow:
    """A policy decision record as a table row (numbers in clear: the store is the
    system of record; pseudonyms are for logs and MQTT)."""
    decision = record.decision
    return DecisionRow(
        decision_id=record.decision_id,
        ts=record.ts,
        call_id=record.call_id,
        campaign=record.campaign,
        callee=record.callee,
        caller=record.caller,
        action=str(decision.action),
        reason=str(decision.reason),
        rule=decision.rule,
        trail=tuple(
            {"rule": s.rule, "outcome": s.outcome, "detail": s.detail} for s in decision.trail
        ),
    )


class RecordWriter:
    """Batches records into the store. `submit` never blocks; `run` does the writing."""

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 0.1,
        batch: int = 1000,
        max_pending: int = 200_000,
    ) -> None:
        self.store = store
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self.dropped = 0  # records lost because the store stayed unwritable too long
        self.written = 0
        self.last_error: str | None = None
        self._pending: deque[Record] = deque()
        self._wake: asyncio.Event | None = None

    def submit(self, record: Record) -> None:
        """Queue one record (from the event loop thread; never awaits)."""
        if len(self._pending) >= self.max_pending:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(record)
        if len(self._pending) >= self.batch and self._wake is not None:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Flush until cancelled; on cancel, write what is queued (best effort)."""
        self._wake = asyncio.Event()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
                self._wake.clear()
                await self.flush()
        finally:
            await asyncio.shield(self._final_flush())

    async def _final_flush(self) -> None:
        # a failure is already in last_error; nothing more to do on the way out
        with contextlib.suppress(StoreError):
            await self.flush()

    async def flush(self) -> int:
        """Write everything queued now, in transactions of at most `batch` records."""
        written = 0
        while self._pending:
            taken = [self._pending.popleft() for _ in range(min(self.batch, len(self._pending)))]
            try:
                await self._write(taken)
            except StoreError as exc:
                self.last_error = str(exc)
                self._pending.extendleft(reversed(taken))  # keep order, retry next round
                while len(self._pending) > self.max_pending:
                    self._pending.popleft()
                    self.dropped += 1
                return written
            written += len(taken)
            self.last_error = None
        self.written += written
        return written

    async def _write(self, records: list[Record]) -> None:
        decisions = [
            (
                r.decision_id, time_text(r.ts), r.call_id, r.campaign, r.callee, r.caller,
                r.action, r.reason, r.rule, json.dumps(r.trail, separators=(",", ":")),
            )
            for r in records
            if isinstance(r, DecisionRow)
        ]
        attempts = [
            (r.number, r.campaign, time_text(r.at), r.call_id)
            for r in records
            if isinstance(r, AttemptRow)
        ]
        async with self.store.transaction() as db:
            if decisions:
                await db.executemany(
                    "INSERT OR IGNORE INTO decisions (decision_id, ts, call_id, campaign, callee,"
                    " caller, action, reason, rule, trail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    decisions,
                )
            if attempts:
                await db.executemany(
                    "INSERT INTO attempts (number, campaign, at, call_id) VALUES (?, ?, ?, ?)",
                    attempts,
                )


async def attempts_since(store: Store, since: datetime) -> list[AttemptRow]:
    """Attempts at or after `since`, oldest first (to rebuild frequency counters at start)."""
    rows = await store.fetchall(
        "SELECT number, campaign, at, call_id FROM attempts WHERE at >= ? ORDER BY at",
        (time_text(since),),
    )
    return [AttemptRow(str(r[0]), str(r[1]), text_time(r[2]) or since, str(r[3])) for r in rows]
