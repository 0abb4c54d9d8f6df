"""Data-subject rights in the store and on the command line (GDPR Art. 15/20, 17, 18, 21):
real SQLite files, the CLI as a subprocess, the index as a running server keeps it."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sipguard.errors import StoreError
from sipguard.policy.model import (
    Action,
    ConsentType,
    Decision,
    DecisionRecord,
    ListKind,
    Reason,
    SubjectRight,
)
from sipguard.store import schema, subjects
from sipguard.store.audit import verify
from sipguard.store.db import Store
from sipguard.store.sync import load_index, refresh
from sipguard.store.writer import RecordWriter

from .conftest import Cli

NUMBER = "+12125551234"
OTHER = "+12125559999"


async def test_an_objection_is_in_the_index_until_withdrawn(store: Store) -> None:
    index = await load_index(store)
    request = await subjects.record(store, NUMBER, SubjectRight.OBJECT, "email 5")
    assert await refresh(store, index)
    assert tuple(index.subject_requests(NUMBER)) == (request,)
    assert not index.subject_requests(OTHER)
    (ended,) = await subjects.lift(store, NUMBER, SubjectRight.OBJECT, "withdrawn by phone")
    assert ended.lifted_at is not None and ended.lift_source == "withdrawn by phone"
    assert await refresh(store, index)
    assert not index.subject_requests(NUMBER)
    # the history stays, and a new index reads only what is in force
    assert [r.lifted_at is not None for r in await subjects.history(store, NUMBER)] == [True]
    assert not (await load_index(store)).subject_requests(NUMBER)


async def test_lifting_touches_only_requests_of_that_kind(store: Store) -> None:
    await subjects.record(store, NUMBER, SubjectRight.OBJECT, "a")
    await subjects.record(store, NUMBER, SubjectRight.RESTRICT, "b")
    assert [r.right for r in await subjects.lift(store, NUMBER, SubjectRight.RESTRICT, "c")] \
        == [SubjectRight.RESTRICT]
    assert [r.right for r in (await load_index(store)).subject_requests(NUMBER)] == [
        SubjectRight.OBJECT]
    assert await subjects.lift(store, NUMBER, SubjectRight.RESTRICT, "again") == []


async def test_an_erasure_cannot_be_recorded_or_lifted_as_a_plain_request(store: Store) -> None:
    with pytest.raises(StoreError, match="erase"):
        await subjects.record(store, NUMBER, SubjectRight.ERASE, "x")
    with pytest.raises(StoreError, match="cannot be lifted"):
        await subjects.lift(store, NUMBER, SubjectRight.ERASE, "x")
    with pytest.raises(StoreError, match=r"not an E\.164 number"):
        await subjects.record(store, "2125551234", SubjectRight.OBJECT, "x")


async def _hold_data(store: Store, number: str) -> None:
    await store.grant_consent(number, "default", ConsentType.EXPRESS, "form 1")
    await store.add_entry("internal", number, "add", source="opt-out", kind=ListKind.INTERNAL)
    await subjects.record(store, number, SubjectRight.RESTRICT, "ticket")
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    writer = RecordWriter(store)  # decisions only enter the store linked into its chain
    writer.submit([DecisionRecord(
        decision_id=f"d-{number}", ts=at, node="gw", call_id=f"call-{number}",
        campaign="default", callee=number, callee_raw=number, caller=None, source="udp:x",
        decision=Decision(Action.ALLOW, Reason.NO_RESTRICTION, "allow", ()), latency_us=5)])
    assert await writer.flush() == 2  # the decision and the attempt it counts


async def test_an_erasure_deletes_the_subject_s_data_and_keeps_what_stops_calls(
    store: Store,
) -> None:
    await _hold_data(store, NUMBER)
    await _hold_data(store, OTHER)
    index = await load_index(store)
    assert index.consents(NUMBER)
    done = await subjects.erase(store, NUMBER, "letter of 2026-11-20")
    assert done.as_dict() == {"request": done.request.id, "consents": 1, "list_entries": 1,
                              "attempts": 1, "subject_requests": 1, "decisions_redacted": 1}
    # nothing names the number but the erasure record itself
    with sqlite3.connect(store.path) as db:
        for table, column in (("consents", "number"), ("list_entries", "number"),
                              ("attempts", "number"), ("decisions", "callee"),
                              ("decisions", "call_id")):
            found = db.execute(f"SELECT count(*) FROM {table} WHERE {column} IN (?, ?)",
                               (NUMBER, f"call-{NUMBER}")).fetchone()[0]
            assert found == 0, table
        assert db.execute("SELECT kind FROM subject_requests WHERE number = ?",
                          (NUMBER,)).fetchall() == [("erase",)]
        # why the call was decided stays, and the other subject is untouched
        assert db.execute("SELECT reason FROM decisions WHERE decision_id = ?",
                          (f"d-{NUMBER}",)).fetchone() == ("no-restriction",)
        assert db.execute("SELECT count(*) FROM consents WHERE number = ?",
                          (OTHER,)).fetchone()[0] == 1
    # the decision records still prove what was decided: the chain verifies
    checked = await verify(store)
    assert checked.ok and checked.redacted == 1, checked
    # a running server forgets the consents and blocks the number from now on
    assert await refresh(store, index)
    assert not index.consents(NUMBER) and index.consents(OTHER)
    assert [r.right for r in index.subject_requests(NUMBER)] == [SubjectRight.ERASE]
    assert [r.right for r in (await load_index(store)).subject_requests(NUMBER)] == [
        SubjectRight.ERASE]


async def test_an_erasure_that_fails_changes_nothing(store: Store) -> None:
    await _hold_data(store, NUMBER)
    with sqlite3.connect(store.path) as db:
        db.execute("CREATE TRIGGER no BEFORE INSERT ON subject_requests WHEN NEW.kind = 'erase'"
                   " BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with pytest.raises(StoreError, match="disk says no"):
        await subjects.erase(store, NUMBER, "x")
    exported = await subjects.export(store, NUMBER)
    assert len(exported["consents"]) == 1 and len(exported["decisions"]) == 1


async def test_an_export_holds_everything_about_the_number(store: Store) -> None:
    await _hold_data(store, NUMBER)
    await _hold_data(store, OTHER)
    exported = await subjects.export(store, NUMBER)
    assert exported["number"] == NUMBER
    assert [c["source"] for c in exported["consents"]] == ["form 1"]
    assert [(e["list"], e["op"]) for e in exported["list_entries"]] == [("internal", "add")]
    assert [a["call_id"] for a in exported["attempts"]] == [f"call-{NUMBER}"]
    assert [(d["decision_id"], d["as"]) for d in exported["decisions"]] == [
        (f"d-{NUMBER}", "callee")]
    assert [r["right"] for r in exported["subject_requests"]] == ["restrict"]
    assert OTHER not in json.dumps(exported)


async def test_a_store_of_schema_2_keeps_its_change_log_through_the_migration(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for script in schema.MIGRATIONS[:2]:
            for statement in schema._statements(script):
                db.execute(statement)
        db.execute("PRAGMA user_version = 2")
        db.executemany("INSERT INTO changes (kind, ref) VALUES (?, ?)",
                       [("consent", 1), ("entry", 2), ("list", 3)])
    store = await Store.open(path)
    try:
        rows = await store.fetchall("SELECT seq, kind, ref FROM changes ORDER BY seq")
        assert [tuple(r) for r in rows] == [(1, "consent", 1), (2, "entry", 2), (3, "list", 3)]
        request = await subjects.record(store, NUMBER, SubjectRight.OBJECT, "x")
        rows = await store.fetchall("SELECT seq, kind, ref FROM changes ORDER BY seq")
        assert tuple(rows[-1]) == (4, "subject", request.id)  # the sequence goes on
    finally:
        await store.close()


def test_the_cli_records_ends_exports_and_erases(cli: Cli) -> None:
    assert cli("consent", "grant", "2125551234", "--campaign", "default", "--type", "express",
               "--source", "form 1").returncode == 0
    done = cli("subject", "object", "(212) 555-1234", "--source", "email 5")
    assert done.returncode == 0 and "object request #1 recorded for +12125551234" in done.stdout
    check = json.loads(cli("check", "2125551234").stdout)
    assert (check["decision"], check["reason"]) == ("block", "subject-objection")
    done = cli("subject", "object", "2125551234", "--source", "phone", "--withdraw")
    assert done.returncode == 0 and "ended" in done.stdout
    assert json.loads(cli("check", "2125551234").stdout)["reason"] != "subject-objection"
    assert cli("subject", "restrict", "2125551234", "--source", "dispute").returncode == 0
    assert json.loads(cli("check", "2125551234").stdout)["reason"] == "subject-restricted"

    exported = json.loads(cli("subject", "export", "2125551234").stdout)
    assert [r["right"] for r in exported["subject_requests"]] == ["object", "restrict"]
    assert len(exported["consents"]) == 1

    refused = cli("subject", "erase", "2125551234", "--source", "letter")
    assert refused.returncode == 2 and "give --yes" in refused.stderr
    assert len(json.loads(cli("subject", "export", "2125551234").stdout)["consents"]) == 1
    erased = cli("subject", "erase", "2125551234", "--source", "letter", "--yes")
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["consents"] == 1
    assert json.loads(cli("check", "2125551234").stdout)["reason"] == "subject-objection"
    bad = cli("subject", "object", "12", "--source", "x")
    assert bad.returncode != 0 and "not a valid phone number" in bad.stderr
    assert "Traceback" not in bad.stderr
