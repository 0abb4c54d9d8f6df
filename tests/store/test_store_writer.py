"""Batched decision and attempt records: submit never waits, run() flushes in batches."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from sipguard.policy.model import Action, Decision, DecisionRecord, Reason, Step
from sipguard.store.db import Store
from sipguard.store.writer import (
    AttemptRow,
    DecisionRow,
    RecordWriter,
    attempts_since,
    decision_row,
)

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)


def decision(i: int) -> DecisionRow:
    return DecisionRow(
        decision_id=f"gw1-{i:08x}", ts=T0, call_id=f"call-{i}", campaign="default",
        callee="+12025550100", caller=None, action=str(Action.BLOCK),
        reason=str(Reason.DNC_NATIONAL), rule="national-dnc",
        trail=({"rule": "national-dnc", "outcome": "block", "detail": "national"},),
    )


async def test_run_flushes_on_interval_and_on_batch(store: Store) -> None:
    writer = RecordWriter(store, interval=0.05, batch=100)
    task = asyncio.create_task(writer.run())
    try:
        for i in range(250):
            writer.submit(decision(i))
        writer.submit(AttemptRow("+12025550100", "default", T0, "call-1"))
        for _ in range(100):
            if writer.written == 251:
                break
            await asyncio.sleep(0.02)
        assert writer.written == 251 and writer.pending == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    rows = await store.fetchall("SELECT count(*), min(trail) FROM decisions")
    assert rows[0][0] == 250
    assert json.loads(rows[0][1])[0]["outcome"] == "block"
    attempts = await attempts_since(store, T0 - timedelta(hours=1))
    assert attempts == [AttemptRow("+12025550100", "default", T0, "call-1")]


async def test_cancel_flushes_what_is_queued(store: Store) -> None:
    writer = RecordWriter(store, interval=60, batch=10_000)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)
    for i in range(10):
        writer.submit(decision(i))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert (await store.fetchall("SELECT count(*) FROM decisions"))[0][0] == 10


async def test_a_failing_store_keeps_records_and_bounds_memory(store: Store) -> None:
    writer = RecordWriter(store, batch=5, max_pending=8)
    await store.db.execute("DROP TABLE decisions")
    for i in range(10):
        writer.submit(decision(i))
    assert writer.dropped == 2 and writer.pending == 8
    assert await writer.flush() == 0
    assert writer.last_error and writer.pending == 8


def test_decision_row_from_a_policy_record() -> None:
    record = DecisionRecord(
        decision_id="gw1-1", ts=T0, node="gw1", call_id="c1", campaign="default",
        callee="+12025550100", callee_raw="2025550100", caller="+12025550199",
        source="udp:127.0.0.1:5070",
        decision=Decision(Action.ALLOW, Reason.NO_RESTRICTION, "default",
                          (Step("valid-number", "pass"),)),
        latency_us=12,
    )
    row = decision_row(record)
    assert row.action == "allow" and row.reason == "no-restriction"
    assert row.trail == ({"rule": "valid-number", "outcome": "pass", "detail": ""},)
