"""Batched decision and attempt records: submit never waits, run() flushes in batches."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from sipguard.policy.model import Action, Decision, DecisionRecord, Reason, Step
from sipguard.store.db import Store
from sipguard.store.writer import CHUNK, KEPT, AttemptRow, RecordWriter, TrailJson, attempts_since

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
BLOCKED = Decision(Action.BLOCK, Reason.DNC_NATIONAL, "national-dnc",
                   (Step("national-dnc", "block", "national"),))
ALLOWED = Decision(Action.ALLOW, Reason.NO_RESTRICTION, "default",
                   (Step("valid-number", "pass"), Step("default", "allow", 'a "quoted" é')))


def record(i: int, decision: Decision = BLOCKED, callee: str | None = "+12025550100",
           ts: datetime = T0) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"gw1-{i:08x}", ts=ts, node="gw1", call_id=f"call-{i}",
        campaign="default", callee=callee, callee_raw="2025550100", caller=None,
        source="udp:127.0.0.1:5070", decision=decision, latency_us=12,
    )


async def test_run_flushes_on_interval_and_on_batch(store: Store) -> None:
    writer = RecordWriter(store, interval=0.05, batch=100)
    task = asyncio.create_task(writer.run())
    try:
        writer.submit(record(i) for i in range(250))
        writer.submit([record(250, ALLOWED)])  # a placed call: its attempt row too
        for _ in range(100):
            if writer.written == 252:
                break
            await asyncio.sleep(0.02)
        assert writer.written == 252 and writer.pending == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    rows = await store.fetchall("SELECT count(*), min(trail) FROM decisions")
    assert rows[0][0] == 251
    assert json.loads(rows[0][1])[0]["outcome"] == "block"
    attempts = await attempts_since(store, T0 - timedelta(hours=1))
    assert attempts == [AttemptRow("+12025550100", "default", T0, "call-250")]


async def test_cancel_flushes_what_is_queued(store: Store) -> None:
    writer = RecordWriter(store, interval=60, batch=10_000)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)
    writer.submit(record(i) for i in range(10))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert (await store.fetchall("SELECT count(*) FROM decisions"))[0][0] == 10


async def test_a_failing_store_keeps_records_and_bounds_memory(store: Store) -> None:
    writer = RecordWriter(store, batch=5, max_pending=8)
    await store.db.execute("DROP TABLE decisions")
    writer.submit(record(i) for i in range(10))
    assert writer.dropped == 2 and writer.pending == 8
    assert await writer.flush() == 0
    assert writer.last_error and writer.pending == 8


async def test_rows_of_decision_records(store: Store) -> None:
    """Every column as stored; only placed calls (not blocked, a valid number) get an
    attempt row; a shared Decision gives every record the same columns."""
    writer = RecordWriter(store)
    later = T0 + timedelta(microseconds=250)
    writer.submit([
        record(1, ALLOWED), record(2, ALLOWED, ts=later), record(3),
        record(4, ALLOWED, callee=None),
    ])
    assert await writer.flush() == 6
    rows = await store.fetchall("SELECT * FROM decisions ORDER BY decision_id")
    trail = ('[{"rule":"valid-number","outcome":"pass","detail":""},'
             '{"rule":"default","outcome":"allow","detail":"a \\"quoted\\" \\u00e9"}]')
    assert [tuple(r) for r in rows] == [
        ("gw1-00000001", "2026-05-01T12:00:00+00:00", "call-1", "default", "+12025550100",
         None, "allow", "no-restriction", "default", trail),
        ("gw1-00000002", "2026-05-01T12:00:00.000250+00:00", "call-2", "default",
         "+12025550100", None, "allow", "no-restriction", "default", trail),
        ("gw1-00000003", "2026-05-01T12:00:00+00:00", "call-3", "default", "+12025550100",
         None, "block", "dnc-national", "national-dnc",
         '[{"rule":"national-dnc","outcome":"block","detail":"national"}]'),
        ("gw1-00000004", "2026-05-01T12:00:00+00:00", "call-4", "default", None, None,
         "allow", "no-restriction", "default", trail),
    ]
    attempts = await store.fetchall("SELECT number, campaign, at, call_id FROM attempts")
    assert [tuple(r) for r in attempts] == [
        ("+12025550100", "default", "2026-05-01T12:00:00+00:00", "call-1"),
        ("+12025550100", "default", "2026-05-01T12:00:00.000250+00:00", "call-2"),
    ]


async def test_flushes_of_every_size_keep_every_row_in_order(store: Store) -> None:
    """Rows go in CHUNK at a time: a flush below, at and across that size writes each row
    once, and the attempts (read back in insertion order) in the order they were decided."""
    writer = RecordWriter(store, batch=10_000)
    sizes = (1, CHUNK - 1, CHUNK, 2 * CHUNK + 1)
    n = 0
    for size in sizes:
        writer.submit(
            record(n + i, ALLOWED, callee=f"+1202555{n + i:04d}", ts=T0 + timedelta(seconds=n + i))
            for i in range(size)
        )
        n += size
        assert await writer.flush() == 2 * size
    assert writer.written == 2 * n
    ids = await store.fetchall("SELECT decision_id FROM decisions ORDER BY rowid")
    assert [r[0] for r in ids] == [f"gw1-{i:08x}" for i in range(n)]
    numbers = await store.fetchall("SELECT number, call_id FROM attempts ORDER BY id")
    assert [tuple(r) for r in numbers] == [(f"+1202555{i:04d}", f"call-{i}") for i in range(n)]


def test_trail_json_is_json_dumps_whatever_is_shared() -> None:
    """The same text for a shared Decision, for new Decisions of shared Steps and of new
    Steps, also once the tables were emptied for being full."""
    trail_json = TrailJson()

    def expected(decision: Decision) -> str:
        return json.dumps([s.as_dict() for s in decision.trail], separators=(",", ":"))

    for _ in range(2):
        assert trail_json(ALLOWED) == expected(ALLOWED)
    for i in range(KEPT + 10):
        step = Step("consent", "allow", f"consent #{i} \u2014 \"ok\"")
        decision = Decision(Action.ALLOW, Reason.CONSENT, "consent", (*ALLOWED.trail, step))
        assert trail_json(decision) == expected(decision)
    assert trail_json(Decision(Action.BLOCK, Reason.INVALID_NUMBER, "valid-number", ())) == "[]"
