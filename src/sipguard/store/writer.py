"""Decision and attempt records, written in batches off the call path.

The app hands `RecordWriter.submit(records)` the gate's decision records, a loop turn's
worth at a time: their rows are queued as ready statement parameters (a `decisions` row
each, an `attempts` row for a call that was placed), no await, no I/O. `run()` (a task
owned by the app) flushes every `interval` seconds or as soon as `batch` rows wait, each
flush one transaction in which each table gets its rows `CHUNK` at a time, in multi-row
INSERTs. If the store fails, rows stay queued and are retried; beyond `max_pending` the
oldest are dropped and counted rather than letting memory grow without bound or blocking
a call.

Nothing of that is silent: the first failed flush logs `store.write_failed` (again every
`REPORT_EVERY` seconds while it lasts, with what waits and what was lost), the first lost
row `store.records_dropped`, and the flush that works again `store.write_recovered`.
`on_loss(why)` is told when rows start being lost and `on_loss(None)` when the store takes
them again: the app makes new calls `store-unavailable` in between (a call placed then
would leave no record; `on_store_error` says whether it is refused or flagged).

Each flush also extends the decisions' hash chain (`sipguard.store.chain`): in row order,
a salt, personal digest and link per row, from the chain's tip. The tip is kept in
memory (`tip`, what `serve` logs as `audit.checkpoint`) and read from the store in the
write's own transaction when it is not known: at start, and after any write that did not
end in a commit. Links are made anew on each attempt, from the last committed tip, so a
retried batch links the same rows the same way and rows dropped while the store was down
simply never enter the chain. A failed COMMIT may still have landed; the re-read after it
also leaves out rows whose decision id is stored already.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import chain
from typing import Any, TypeVar, cast

import aiosqlite
import structlog

from sipguard.errors import StoreError
from sipguard.policy.model import Action, Decision, DecisionRecord, Step
from sipguard.store.audit import count_appended, read_tip, stored_ids
from sipguard.store.chain import SALT_BYTES, ChainTip, link, personal_digest
from sipguard.store.codec import text_time, time_text
from sipguard.store.db import Store

Params = tuple[str | bytes | None, ...]
# A queued decisions row: decision_id, ts, call_id, campaign, callee, caller, action,
# reason, rule, trail (its salt, personal digest and link are added when it is written).
DecisionParams = tuple[str, str, str, str, str | None, str | None, str, str, str, str]


@dataclass(frozen=True, slots=True)
class _Table:
    """Where a queued row goes: an INSERT up to its VALUES, and the row's width."""

    insert: str
    width: int


_DECISIONS = _Table(
    "INSERT INTO decisions (decision_id, ts, call_id, campaign, callee, caller,"
    " action, reason, rule, trail, salt, personal, link) VALUES ",
    13,
)
_ATTEMPTS = _Table("INSERT INTO attempts (number, campaign, at, call_id) VALUES ", 4)
Row = tuple[_Table, Params]
KEPT = 4096  # trails and steps kept by TrailJson, each
# Rows per INSERT. sqlite3 releases the GIL around every statement step, so one step per
# row made the writer thread and the event loop trade the GIL (and futex calls) for each
# row; one step per CHUNK rows does it once. 64 x 10 parameters stays far below SQLite's
# 32,766 (SQLITE_MAX_VARIABLE_NUMBER since 3.32) with 13 columns.
CHUNK = 64
REPORT_EVERY = 10.0  # seconds between store.write_failed lines while the store stays down
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One allowed call attempt (what frequency caps count), as read back."""

    number: str
    campaign: str
    at: datetime
    call_id: str


class TrailJson:
    """A decision's rule trail as the `decisions.trail` column holds it: the JSON list of
    its steps' `as_dict()`, compact.

    decide() hands most calls shared objects: the same Decision for a common outcome, or
    at least the same Steps. So the text is kept by identity, a shared Decision's whole
    trail and each Step's own part (a trail of new steps' parts is then a join, not an
    encoding). An entry keeps its object alive: no other object can come to have its id.
    """

    __slots__ = ("_decisions", "_steps")

    def __init__(self) -> None:
        self._decisions: dict[int, tuple[Decision, str]] = {}
        self._steps: dict[int, tuple[Step, str]] = {}

    def __call__(self, decision: Decision) -> str:
        entry = self._decisions.get(id(decision))
        if entry is None:
            entry = _keep(self._decisions, decision, self._join(decision.trail))
        return entry[1]

    def _join(self, trail: tuple[Step, ...]) -> str:
        parts = []
        for step in trail:
            entry = self._steps.get(id(step))
            if entry is None:
                entry = _keep(self._steps, step,
                              json.dumps(step.as_dict(), separators=(",", ":")))
            parts.append(entry[1])
        return f"[{','.join(parts)}]"  # json.dumps of the list, same separators


def _keep(kept: dict[int, tuple[T, str]], obj: T, text: str) -> tuple[T, str]:
    if len(kept) >= KEPT:  # details that vary per call make new objects: stay bounded
        kept.clear()
    entry = kept[id(obj)] = (obj, text)
    return entry


class RecordWriter:
    """Batches records into the store. `submit` never blocks; `run` does the writing."""

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 0.1,
        batch: int = 1000,
        max_pending: int = 200_000,
        log: Any = None,
        on_loss: Callable[[str | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self.dropped = 0  # rows lost because the store stayed unwritable too long
        self.written = 0
        self.last_error: str | None = None
        self._pending: deque[Row] = deque()
        self._wake: asyncio.Event | None = None
        self._trail_json = TrailJson()
        self._log = log if log is not None else structlog.get_logger("sipguard.store")
        self._on_loss = on_loss
        self._clock = clock
        self._failing_since: float | None = None
        self._reported_at = 0.0
        self._losing = False
        self._tip: ChainTip | None = None

    @property
    def tip(self) -> ChainTip | None:
        """The chain's newest end as last committed (None until this writer wrote)."""
        return self._tip

    def submit(self, records: Iterable[DecisionRecord]) -> None:
        """Queue the rows of these decisions (from the event loop thread; never awaits).
        Numbers are stored in clear: the store is the system of record; pseudonyms are
        for logs and MQTT."""
        pending, trail_json = self._pending, self._trail_json
        for record in records:
            decision = record.decision
            ts = time_text(record.ts)
            callee = record.callee
            pending.append((_DECISIONS, (
                record.decision_id, ts, record.call_id, record.campaign, callee, record.caller,
                str(decision.action), str(decision.reason), decision.rule,
                trail_json(decision),
            )))
            if decision.action is not Action.BLOCK and callee is not None:  # placed
                pending.append((_ATTEMPTS, (callee, record.campaign, ts, record.call_id)))
        if len(pending) > self.max_pending:
            self._drop_oldest()
        if len(pending) >= self.batch and self._wake is not None:
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
        """Write everything queued now, in transactions of at most `batch` rows."""
        written = 0
        while self._pending:
            taken = [self._pending.popleft() for _ in range(min(self.batch, len(self._pending)))]
            try:
                await self._write(taken)
            except StoreError as exc:
                self._pending.extendleft(reversed(taken))  # keep order, retry next round
                self._failed(str(exc))
                if len(self._pending) > self.max_pending:
                    self._drop_oldest()
                return written
            written += len(taken)
            self.last_error = None
        self.written += written
        if self._failing_since is not None or self._losing:
            self._recovered(written)
        return written

    def _failed(self, error: str) -> None:
        self.last_error = error
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._reported_at < REPORT_EVERY:
            return
        self._reported_at = now
        self._log.warning("store.write_failed", detail=error, pending=len(self._pending),
                          dropped=self.dropped, failing_s=round(now - self._failing_since, 1))

    def _recovered(self, written: int) -> None:
        since, self._failing_since = self._failing_since, None
        self._log.info("store.write_recovered", written=written, dropped=self.dropped,
                       failed_s=None if since is None else round(self._clock() - since, 1))
        if self._losing:
            self._losing = False
            if self._on_loss is not None:
                self._on_loss(None)

    def _drop_oldest(self) -> None:
        """Make room: the oldest rows go, counted; the first loss is said and signalled."""
        pending = self._pending
        for _ in range(len(pending) - self.max_pending):
            pending.popleft()
            self.dropped += 1
        if not self._losing:
            self._losing = True
            why = (f"decision records cannot be written ({self.last_error or 'store too slow'})"
                   f"; {self.dropped} lost")
            self._log.error("store.records_dropped", detail=why, pending=len(pending))
            if self._on_loss is not None:
                self._on_loss(why)

    async def _write(self, rows: list[Row]) -> None:
        by_table: dict[_Table, list[Params]] = {}
        for table, params in rows:
            by_table.setdefault(table, []).append(params)
        # Unknown until this write commits: a failure or a cancellation at any await below
        # leaves it to be read again from what the store holds.
        tip, self._tip = self._tip, None
        async with self.store.transaction() as db:
            if tip is None:
                tip = await read_tip(db)
                if _DECISIONS in by_table:
                    by_table[_DECISIONS] = await _unstored(db, by_table[_DECISIONS])
            if by_table.get(_DECISIONS):
                by_table[_DECISIONS], tip = _linked(
                    cast(list[DecisionParams], by_table[_DECISIONS]), tip)
                await count_appended(db, len(by_table[_DECISIONS]))
            for table, params_list in by_table.items():
                whole = len(params_list) - len(params_list) % CHUNK
                if whole:
                    await db.executemany(_insert(table, CHUNK), [
                        tuple(chain.from_iterable(params_list[i : i + CHUNK]))
                        for i in range(0, whole, CHUNK)
                    ])
                if whole < len(params_list):
                    rest = params_list[whole:]
                    await db.execute(_insert(table, len(rest)),
                                     tuple(chain.from_iterable(rest)))
        self._tip = tip


def _linked(rows: list[DecisionParams], tip: ChainTip) -> tuple[list[Params], ChainTip]:
    """The rows with their salt, personal digest and link, in order, and the new tip."""
    salts = os.urandom(SALT_BYTES * len(rows))  # one call: a syscall per row costs more
    head = tip.link
    out: list[Params] = []
    for i, row in enumerate(rows):
        decision_id, ts, call_id, campaign, callee, caller, action, reason, rule, trail = row
        salt = salts[i * SALT_BYTES : (i + 1) * SALT_BYTES]
        personal = personal_digest(salt, callee, caller, call_id, trail)
        head = link(head, decision_id, ts, campaign, action, reason, rule, trail, personal)
        out.append((*row, salt, personal, head))
    return out, ChainTip(head, tip.rows + len(rows), rows[-1][0])


async def _unstored(db: aiosqlite.Connection, rows: list[Params]) -> list[Params]:
    """The rows whose decision id the store does not hold yet."""
    stored = await stored_ids(db, [cast(str, r[0]) for r in rows])
    return [r for r in rows if r[0] not in stored] if stored else rows


@lru_cache(maxsize=2 * CHUNK)
def _insert(table: _Table, rows: int) -> str:
    """The INSERT of `rows` rows into `table`, in order."""
    one = f"({', '.join('?' * table.width)})"
    return table.insert + ", ".join([one] * rows)


async def attempts_since(store: Store, since: datetime) -> list[AttemptRow]:
    """Attempts at or after `since`, oldest first (to rebuild frequency counters at start)."""
    rows = await store.fetchall(
        "SELECT number, campaign, at, call_id FROM attempts WHERE at >= ? ORDER BY at",
        (time_text(since),),
    )
    return [AttemptRow(str(r[0]), str(r[1]), text_time(r[2]) or since, str(r[3])) for r in rows]
