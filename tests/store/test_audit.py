"""The decisions' hash chain (store/chain.py, store/audit.py): the writer builds it across
flushes, failures and restarts; verify catches each kind of tampering at the right row;
redaction, the retention purge and rows from before the chain keep it verifiable."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from sipguard.config import parse_config
from sipguard.errors import ConfigError, StoreError
from sipguard.housekeeping import Checkpoints
from sipguard.log import PSEUDONYM_ENV, Pseudonymizer
from sipguard.policy.model import Action, Decision, DecisionRecord, Reason, Step
from sipguard.store import schema
from sipguard.store.audit import export, naming, redact, redact_rows, verify
from sipguard.store.chain import GENESIS
from sipguard.store.db import Store
from sipguard.store.retention import purge
from sipguard.store.writer import RecordWriter

from .conftest import Cli

T0 = datetime(2030, 5, 1, 12, tzinfo=UTC)
BLOCKED = Decision(Action.BLOCK, Reason.CALLER_ID_NOT_ALLOWED, "caller-id",
                   (Step("valid-number", "pass"),
                    Step("caller-id", "block", "caller +12025559999 is not one of the "
                                               "campaign's 1 caller IDs")))
ALLOWED = Decision(Action.ALLOW, Reason.NO_RESTRICTION, "default", (Step("default", "allow"),))


def callee(i: int) -> str:
    return f"+1202555{i:04d}"


def record(i: int, *, ts: datetime | None = None, caller: str | None = "+12025559999",
           decision: Decision = BLOCKED) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"gw1-{i:08x}", ts=ts or T0 + timedelta(seconds=i), node="gw1",
        call_id=f"call-{i}@10.1.0.5", campaign="default", callee=callee(i),
        callee_raw=callee(i), caller=caller, source="udp:10.1.0.5:5060", decision=decision,
        latency_us=10,
    )


def ident(i: int) -> str:
    return f"gw1-{i:08x}"


async def write(store: Store, numbers: range, writer: RecordWriter | None = None) -> RecordWriter:
    writer = writer or RecordWriter(store)
    writer.submit(record(i) for i in numbers)
    await writer.flush()
    assert writer.pending == 0
    return writer


async def ok(store: Store) -> None:
    result = await verify(store)
    assert result.ok, result.detail


async def test_the_chain_spans_flushes_and_restarts(store: Store) -> None:
    writer = await write(store, range(3))
    await write(store, range(3, 5), writer)
    restarted = await write(store, range(5, 9))  # a new writer reads the tip
    result = await verify(store)
    assert result.ok and result.rows == 9 and result.unchained == 0 and result.redacted == 0
    assert result.first_ts == "2030-05-01T12:00:00+00:00"
    assert result.last_ts == "2030-05-01T12:00:08+00:00"
    assert restarted.tip is not None and result.head == restarted.tip.link
    assert (restarted.tip.rows, restarted.tip.decision_id) == (9, ident(8))
    links = await store.fetchall("SELECT link FROM decisions ORDER BY rowid")
    assert links[-1][0] == result.head and len({bytes(r[0]) for r in links}) == 9


async def test_a_failed_flush_is_retried_into_a_valid_chain(store: Store) -> None:
    writer = await write(store, range(2))
    await store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON decisions "
                           "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    writer.submit(record(i) for i in range(2, 5))
    assert await writer.flush() == 0 and writer.tip is None and writer.pending == 3
    await store.db.execute("DROP TRIGGER refuse")
    writer.submit(record(i) for i in range(5, 7))
    assert await writer.flush() == 5
    result = await verify(store)
    assert result.ok and result.rows == 7, result.detail


async def test_rows_dropped_while_the_store_was_down_leave_no_gap(store: Store) -> None:
    writer = RecordWriter(store, max_pending=3)
    await write(store, range(2), writer)
    await store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON decisions "
                           "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    writer.submit(record(i) for i in range(2, 7))
    assert await writer.flush() == 0 and writer.dropped == 2
    await store.db.execute("DROP TRIGGER refuse")
    assert await writer.flush() == 3
    result = await verify(store)
    assert result.ok and result.rows == 5, result.detail


async def test_rows_a_failed_commit_stored_after_all_are_not_linked_twice(store: Store) -> None:
    """A COMMIT reported failed may have landed: the writer, not knowing its tip, reads it
    and leaves out the rows already stored rather than chaining them a second time."""
    await write(store, range(4))
    again = RecordWriter(store)
    again.submit(record(i) for i in range(2, 6))
    assert await again.flush() == 4
    rows = await store.fetchall("SELECT decision_id FROM decisions ORDER BY rowid")
    assert [r[0] for r in rows] == [ident(i) for i in range(6)]
    await ok(store)


async def test_no_row_gets_in_without_a_link(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="chain link"):
        await store.db.execute(
            "INSERT INTO decisions (decision_id, ts, call_id, campaign, action, reason, rule,"
            " trail) VALUES ('x', 't', 'c', 'default', 'allow', 'r', 'r', '[]')")


async def sql(store: Store, statement: str, *params: object) -> None:
    await store.db.execute(statement, params)


async def redact_then_forge_digest(store: Store) -> None:
    assert await redact(store, callee(3)) == 1
    await sql(store, "UPDATE decisions SET personal = randomblob(32) WHERE decision_id = ?",
              ident(3))


async def swap_rows(store: Store) -> None:
    for old, new in ((3, -1), (4, 3), (-1, 4)):
        await sql(store, "UPDATE decisions SET rowid = ? WHERE rowid = ?", new, old)


async def insert_forged_row(store: Store) -> None:
    await sql(store, "UPDATE decisions SET rowid = rowid * 10")  # room between rows
    await ok(store)  # the chain follows rowid order only (as VACUUM may renumber)
    await sql(store,
              "INSERT INTO decisions (rowid, decision_id, ts, call_id, campaign, callee, caller,"
              " action, reason, rule, trail, salt, personal, link) SELECT 35, 'forged', ts,"
              " call_id, campaign, callee, caller, 'allow', 'consent', rule, trail, salt,"
              " personal, link FROM decisions WHERE rowid = 30")


async def put_back(store: Store) -> None:
    await redact(store, callee(3))
    await sql(store, "UPDATE decisions SET callee = ? WHERE decision_id = ?", callee(3), ident(3))


Tamper = Callable[[Store], Awaitable[None]]
TAMPERING: list[tuple[str, Tamper, str]] = [
    ("reason", lambda s: sql(s, "UPDATE decisions SET reason = 'consent' WHERE rowid = 4"),
     ident(3)),
    ("ts", lambda s: sql(s, "UPDATE decisions SET ts = '2030-05-02' WHERE rowid = 1"), ident(0)),
    ("callee", lambda s: sql(s, "UPDATE decisions SET callee = '+12025550000' WHERE rowid = 4"),
     ident(3)),
    ("caller", lambda s: sql(s, "UPDATE decisions SET caller = NULL WHERE rowid = 6"), ident(5)),
    ("trail detail", lambda s: sql(s, "UPDATE decisions SET trail = replace(trail, '9999',"
                                      " '9998') WHERE rowid = 4"), ident(3)),
    ("trail step", lambda s: sql(s, "UPDATE decisions SET trail = '[]' WHERE rowid = 4"),
     ident(3)),
    ("middle row deleted", lambda s: sql(s, "DELETE FROM decisions WHERE rowid = 4"), ident(4)),
    ("row inserted", insert_forged_row, "forged"),
    ("rows swapped", swap_rows, ident(3)),  # rowids 3 and 4: ident(3) now comes first
    ("stored link", lambda s: sql(s, "UPDATE decisions SET link = randomblob(32) WHERE rowid = 4"),
     ident(3)),
    ("anchor", lambda s: sql(s, "UPDATE audit_chain SET anchor = randomblob(32)"), ident(0)),
    ("redacted digest", redact_then_forge_digest, ident(3)),
    ("number put back into a redacted row", put_back, ident(3)),
    ("link removed", lambda s: sql(s, "UPDATE decisions SET link = NULL WHERE rowid = 5"),
     ident(4)),
]


@pytest.mark.parametrize(("what", "tamper", "broken_at"), TAMPERING,
                         ids=[t[0] for t in TAMPERING])
async def test_tampering_is_caught_at_its_row(
    store: Store, what: str, tamper: Tamper, broken_at: str
) -> None:
    await write(store, range(6))
    await ok(store)
    await tamper(store)
    result = await verify(store)
    assert not result.ok and result.broken_at == broken_at, (what, result.detail)
    assert result.detail and result.detail.startswith(f"decision {broken_at}: ")


async def test_rows_cut_from_the_end_are_caught_by_the_counters(store: Store) -> None:
    await write(store, range(6))
    await sql(store, "DELETE FROM decisions WHERE rowid > 4")
    result = await verify(store)
    assert not result.ok and result.broken_at is None
    assert result.detail and "4 rows where its counters say 6" in result.detail


async def test_a_checkpoint_head_must_be_in_the_chain(store: Store) -> None:
    writer = await write(store, range(3))
    assert writer.tip is not None
    checkpoint = writer.tip.link
    await write(store, range(3, 6), writer)
    assert (await verify(store, checkpoint)).ok
    # rebuilt by someone with write access: a fresh chain from the genesis, consistent
    # counters, but the head shipped off the machine is not in it
    await sql(store, "DELETE FROM decisions")
    await sql(store, "UPDATE audit_chain SET appended = 0")
    await write(store, range(6))
    assert (await verify(store)).ok
    result = await verify(store, checkpoint)
    assert not result.ok and "not in the chain" in (result.detail or "")


async def test_redaction_erases_the_number_and_keeps_the_chain(store: Store) -> None:
    writer = RecordWriter(store)
    writer.submit([record(1), record(2), record(3, caller=callee(1)), record(4)])
    await writer.flush()
    assert await redact(store, callee(1)) == 2  # as callee of one, caller of another
    result = await verify(store)
    assert result.ok and result.redacted == 2 and result.rows == 4, result.detail
    # every text and blob column: no trace of the number, in clear or in a trail detail
    hits = await store.fetchall(
        "SELECT decision_id FROM decisions WHERE instr(coalesce(callee, '') ||"
        " coalesce(caller, '') || call_id || trail, ?)", (callee(1).removeprefix("+"),))
    assert hits == []
    rows = await store.fetchall(
        "SELECT callee, caller, call_id, salt, trail FROM decisions WHERE decision_id = ?",
        (ident(1),))
    assert tuple(rows[0]) == (None, None, "", None,
                              '[{"rule":"valid-number","outcome":"pass","detail":""},'
                              '{"rule":"caller-id","outcome":"block","detail":""}]')
    assert await redact(store, callee(1)) == 0
    writer.submit([record(5)])  # the chain goes on after a redaction
    await writer.flush()
    assert (await verify(store)).ok


async def test_the_scan_for_a_number_holds_no_write_lock(store: Store) -> None:
    """A running server's record writer must be able to write while an erasure looks for
    the number through years of decisions: SQLite's write lock is taken for the redaction
    only, not for the scan (no index on callee or caller: an index would cost every call)."""
    await write(store, range(20_000))
    other = sqlite3.connect(store.path, timeout=0, isolation_level=None,
                            check_same_thread=False)
    seen = {"free": 0, "held": 0}

    def try_the_write_lock() -> int:
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # database is locked
            seen["held"] += 1
        else:
            other.execute("ROLLBACK")
            seen["free"] += 1
        return 0

    await store.db.set_progress_handler(try_the_write_lock, 1000)
    try:
        assert await redact(store, callee(7)) == 1
    finally:
        await store.db.set_progress_handler(None, 1000)  # type: ignore[arg-type]
        other.close()
    assert seen["free"] > 50  # the scan: the lock was there for the writer to take
    assert seen["held"] < 10, seen  # the redaction of one row: a few statements


async def test_rows_added_or_gone_after_the_scan(store: Store) -> None:
    await write(store, range(4))
    writer = RecordWriter(store)
    writer.submit([record(5, caller=callee(2))])
    await writer.flush()
    found = await naming(store, callee(2))
    assert [r[0] for r in found.rows] == [3, 5]
    writer.submit([record(6, caller=callee(2))])  # a call made after the scan
    await writer.flush()
    await sql(store, "DELETE FROM decisions WHERE rowid = 3")  # purged meanwhile
    async with store.transaction() as db:
        assert await redact_rows(db, callee(2), found) == 2  # rowids 5 and 6
    left = await store.fetchall("SELECT rowid FROM decisions WHERE ? IN (callee, caller)",
                                (callee(2),))
    assert left == []


async def test_purge_deletes_a_prefix_and_moves_the_anchor(store: Store) -> None:
    now = T0 + timedelta(days=40)
    writer = RecordWriter(store)
    writer.submit([record(i, ts=T0) for i in range(5)])
    writer.submit([record(5, ts=now), record(6, ts=T0), record(7, ts=now)])  # 6: after 5
    await writer.flush()
    links = await store.fetchall("SELECT link FROM decisions ORDER BY rowid")
    result = await purge(store, parse_config({"retention": {"decisions_days": 30}}), now,
                         batch=2)
    assert result.decisions == 5
    kept = await store.fetchall("SELECT decision_id FROM decisions ORDER BY rowid")
    assert [r[0] for r in kept] == [ident(5), ident(6), ident(7)]
    chain = await store.fetchall("SELECT anchor, anchor_rowid, appended, purged FROM audit_chain")
    assert tuple(chain[0]) == (links[4][0], 5, 8, 5)
    report = await verify(store)
    assert report.ok and report.rows == 3, report.detail
    await write(store, range(8, 10), writer)
    assert (await verify(store)).ok
    everything = await purge(store, parse_config({"retention": {"decisions_days": 1}}),
                             now + timedelta(days=400))
    assert everything.decisions == 5
    report = await verify(store)
    assert report.ok and report.rows == 0 and report.head != GENESIS


async def test_a_purge_dry_run_counts_the_same_prefix(store: Store) -> None:
    now = T0 + timedelta(days=40)
    writer = RecordWriter(store)
    writer.submit([record(0, ts=T0), record(1, ts=now), record(2, ts=T0)])
    await writer.flush()
    config = parse_config({"retention": {"decisions_days": 30}})
    assert (await purge(store, config, now, dry_run=True)).decisions == 1
    assert (await purge(store, config, now)).decisions == 1


async def test_rows_from_before_the_chain_are_counted_as_unchained(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    for script in schema.MIGRATIONS[:2]:
        for statement in schema._statements(script):
            db.execute(statement)
    db.execute("PRAGMA user_version = 2")
    db.executemany(
        "INSERT INTO decisions (decision_id, ts, call_id, campaign, callee, caller, action,"
        " reason, rule, trail) VALUES (?, ?, 'c', 'default', '+12025550100', NULL, 'allow',"
        " 'no-restriction', 'default', '[]')", [(f"old-{i}", "2029-01-01") for i in range(3)])
    db.commit()
    db.close()
    async with await Store.open(path) as store:
        await write(store, range(4))
        result = await verify(store)
        assert result.ok and (result.unchained, result.rows) == (3, 4), result.detail
        assert result.first_ts == "2030-05-01T12:00:00+00:00"
        await sql(store, "UPDATE decisions SET link = NULL WHERE decision_id = ?", ident(0))
        broken = await verify(store)  # the first linked row cannot pass for an old one
        assert not broken.ok and broken.broken_at == ident(1)


async def test_export_streams_a_verified_stretch(store: Store) -> None:
    await write(store, range(6))
    since, until = "2030-05-01T12:00:02+00:00", "2030-05-01T12:00:05+00:00"
    lines = [line async for line in export(store, since, until)]
    assert [line.get("decision_id") for line in lines[:-1]] == [ident(i) for i in (2, 3, 4)]
    assert lines[0]["callee"] == callee(2) and lines[0]["trail"][1]["rule"] == "caller-id"
    assert len(bytes.fromhex(lines[0]["salt"])) == 16 and lines[0]["redacted"] is False
    links = await store.fetchall("SELECT link FROM decisions ORDER BY rowid")
    assert lines[-1] == {"event": "audit.export", "rows": 3, "head": bytes(links[4][0]).hex(),
                         "ok": True, "broken_at": None, "detail": None}
    await sql(store, "UPDATE decisions SET rule = 'x' WHERE rowid = 4")
    summary = [line async for line in export(store, since)][-1]
    assert summary["ok"] is False and summary["broken_at"] == ident(3)


async def test_checkpoints_log_the_writers_tip_when_it_moved(store: Store) -> None:
    writer = RecordWriter(store)
    handed: list[dict[str, object]] = []
    with capture_logs() as logs:
        checkpoints = Checkpoints(writer, structlog.get_logger(), handed.append)
        assert not checkpoints.log_if_moved()  # nothing written yet
        await write(store, range(3), writer)
        task = asyncio.create_task(checkpoints.run(0.01))
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    head = (await verify(store)).head
    assert logs == [{"event": "audit.checkpoint", "log_level": "info", "rows": 3,
                     "head": head.hex(), "decision_id": ident(2)}]
    # the same, once, to the MQTT bus (kept retained at the broker)
    assert handed == [{"rows": 3, "head": head.hex(), "decision_id": ident(2)}]


def test_checkpoint_every_must_be_positive() -> None:
    assert parse_config({}).audit.checkpoint_every == 300.0
    with pytest.raises(ConfigError) as caught:
        parse_config({"audit": {"checkpoint_every": 0}})
    assert caught.value.key == "audit.checkpoint_every"


async def test_a_store_that_cannot_be_read_is_a_store_error(store: Store) -> None:
    await sql(store, "DROP TABLE audit_chain")
    with pytest.raises(StoreError):
        await verify(store)


async def test_cli_verify_end_to_end(cli: Cli, store: Store) -> None:
    writer = await write(store, range(4))
    assert writer.tip is not None
    done = cli("audit", "verify", "--head", writer.tip.link.hex())
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {"ok": True, "rows": 4, "redacted": 0, "unchained": 0,
                      "first_ts": "2030-05-01T12:00:00+00:00",
                      "last_ts": "2030-05-01T12:00:03+00:00", "head": writer.tip.link.hex(),
                      "broken_at": None, "detail": None}
    await sql(store, "UPDATE decisions SET action = 'allow' WHERE rowid = 2")
    broken = cli("audit", "verify")
    assert broken.returncode == 1 and json.loads(broken.stdout)["broken_at"] == ident(1)
    assert broken.stderr.count("\n") == 1 and broken.stderr.startswith(
        f"error: the decision chain is broken: decision {ident(1)}: ")
    bad = cli("audit", "verify", "--head", "xyz")
    assert bad.returncode == 2 and "--head" in bad.stderr and "Traceback" not in bad.stderr


async def test_cli_export_end_to_end(
    cli: Cli, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await write(store, range(4))
    await redact(store, callee(3))
    done = cli("audit", "export", "--since", "2030-05-01T12:00:01Z")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line.get("decision_id") for line in lines] == [ident(1), ident(2), ident(3), None]
    assert lines[0]["callee"] == callee(1) and lines[0]["caller"] == "+12025559999"
    assert lines[2]["redacted"] is True and lines[2]["callee"] is None
    assert lines[-1]["event"] == "audit.export" and lines[-1]["ok"] is True
    assert lines[-1]["rows"] == 3 and lines[-1]["head"] == (await verify(store)).head.hex()
    monkeypatch.setenv(PSEUDONYM_ENV, "export-test-key")
    masked = cli("audit", "export", "--pseudonymize", "--until", "2030-05-01T12:00:01")
    assert masked.returncode == 0, masked.stderr
    assert "2025550000" not in masked.stdout and "2025559999" not in masked.stdout
    first = json.loads(masked.stdout.splitlines()[0])
    pseudonym = Pseudonymizer(b"export-test-key")
    assert (first["callee"], first["caller"]) == (pseudonym(callee(0)), pseudonym("+12025559999"))
    assert first["salt"] is None and first["trail"][1]["detail"] == ""
    assert json.loads(masked.stdout.splitlines()[-1])["rows"] == 1
