"""Batched decision and attempt records: submit never waits, run() flushes in batches."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import structlog
from structlog.testing import capture_logs

from sipguard.config import Config
from sipguard.policy.gate import Gate
from sipguard.policy.model import Action, Decision, DecisionRecord, Reason, Step
from sipguard.sip.message import Request
from sipguard.sip.parser import parse_message
from sipguard.sip.peer import Peer
from sipguard.sip.verdict import Allow, Block
from sipguard.store.db import Store
from sipguard.store.sync import load_index
from sipguard.store.writer import (
    CHUNK,
    KEPT,
    REPORT_EVERY,
    AttemptRow,
    RecordWriter,
    TrailJson,
    attempts_since,
)

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


def _invite(call: int) -> Request:
    message = parse_message(
        b"INVITE sip:2025550143@gw SIP/2.0\r\nVia: SIP/2.0/UDP 10.1.0.5;branch=z9hG4bK1\r\n"
        b"To: <sip:2025550143@gw>\r\nFrom: <sip:d@10.1.0.5>;tag=x\r\n"
        b"Call-ID: w-%d@10.1.0.5\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n" % call)
    assert isinstance(message, Request)
    return message


async def test_a_store_that_refuses_rows_is_said_and_calls_are_not_placed_unrecorded(
    store: Store,
) -> None:
    """Every INSERT fails: the first failed flush is logged, then one line per
    REPORT_EVERY, and the first lost row; from that loss new calls are store-unavailable
    (503 under on_store_error = reject); when the store takes rows again, the rows kept
    are written, it says so, and calls are decided again."""
    index = await load_index(store)
    gate = Gate(Config(), index, emit=lambda r: None, wall_clock=lambda: 1_780_000_000.0)
    src = Peer("udp", "10.1.0.5", 5060)
    assert isinstance(gate(_invite(1), src, 0.0), Allow)
    clock = [0.0]
    losses: list[str | None] = []

    def on_loss(why: str | None) -> None:
        losses.append(why)
        index.recording_lost(why)

    await store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON decisions "
                           "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with capture_logs() as logs:
        writer = RecordWriter(store, batch=5, max_pending=8, log=structlog.get_logger(),
                              on_loss=on_loss, clock=lambda: clock[0])
        writer.submit(record(i) for i in range(4))
        for clock[0] in (0.0, REPORT_EVERY / 2, REPORT_EVERY + 1):
            assert await writer.flush() == 0
        assert losses == [] and index.healthy and index.error is None
        writer.submit(record(i) for i in range(4, 10))  # 10 rows wait, room for 8
        assert writer.dropped == 2 and writer.pending == 8
        assert losses and losses[0] and "disk says no" in losses[0]
        refused = gate(_invite(2), src, 1.0)
        assert isinstance(refused, Block) and refused.status == 503
        await store.db.execute("DROP TRIGGER refuse")
        clock[0] = 20.0
        assert await writer.flush() == 8
        assert isinstance(gate(_invite(3), src, 2.0), Allow)
    assert losses[1:] == [None] and index.error is None
    assert [e["event"] for e in logs] == [
        "store.write_failed", "store.write_failed", "store.records_dropped",
        "store.write_recovered",
    ]
    assert logs[1]["failing_s"] == REPORT_EVERY + 1 and logs[3]["dropped"] == 2
    rows = await store.fetchall("SELECT decision_id FROM decisions ORDER BY decision_id")
    assert [r[0] for r in rows] == [f"gw1-{i:08x}" for i in range(2, 10)]


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
    rows = await store.fetchall(
        "SELECT decision_id, ts, call_id, campaign, callee, caller, action, reason, rule, trail"
        " FROM decisions ORDER BY decision_id")
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
    chained = await store.fetchall("SELECT salt, personal, link FROM decisions")
    assert [tuple(map(len, r)) for r in chained] == [(16, 32, 32)] * 4
    assert len({bytes(r[0]) for r in chained}) == 4  # a salt of its own per row
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
