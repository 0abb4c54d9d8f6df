"""Retention (store/retention.py, `[retention]`): what goes, what must stay, and the two ways
it runs (the CLI, and the task `serve` runs)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyroaring import BitMap64

from sipguard.config import Config, parse_config
from sipguard.errors import ConfigError
from sipguard.housekeeping import run_retention
from sipguard.policy.consent_rules import screen_consents
from sipguard.policy.model import Action, ConsentType, Decision, DecisionRecord, ListKind, Reason
from sipguard.store.audit import verify
from sipguard.store.codec import number_key, time_text, utcnow
from sipguard.store.db import Store
from sipguard.store.retention import purge
from sipguard.store.writer import RecordWriter

from .conftest import Cli

NOW = datetime(2031, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
A, B, C, D, X, Y = (f"+1212555000{i}" for i in range(1, 7))
BLOCKED = Decision(Action.BLOCK, Reason.DNC_INTERNAL, "internal-dnc", ())


def config(**retention: Any) -> Config:
    return parse_config({"retention": retention})


async def add_decision(store: Store, decision_id: str, ts: datetime) -> None:
    """Through a record writer (the only way in: rows need their chain link)."""
    writer = RecordWriter(store)
    writer.submit([DecisionRecord(
        decision_id=decision_id, ts=ts, node="gw1", call_id="c", campaign="default",
        callee=A, callee_raw=A, caller=None, source="udp:127.0.0.1:5070", decision=BLOCKED,
        latency_us=1,
    )])
    assert await writer.flush() == 1


async def add_attempt(store: Store, at: datetime) -> None:
    await store.run("INSERT INTO attempts (number, campaign, at, call_id) VALUES (?, ?, ?, ?)",
                    (A, "default", time_text(at), "c"))


async def count(store: Store, table: str) -> int:
    return int((await store.fetchall(f"SELECT count(*) FROM {table}"))[0][0])


@pytest.mark.parametrize(
    ("key", "value"),
    [("decisions_days", 0), ("consents_days", -1), ("lists_days", 0),
     ("lists_days", 10**7), ("purge_every", 0.0)],
)
def test_config_errors_name_the_key(key: str, value: float) -> None:
    with pytest.raises(ConfigError) as caught:
        config(**{key: value})
    assert caught.value.key == f"retention.{key}"


def test_defaults_are_five_years() -> None:
    kept = config().retention
    assert (kept.decisions_days, kept.consents_days, kept.lists_days) == (1826, 1826, 1826)
    assert not kept.hold


async def test_old_decisions_and_attempts_go_young_ones_stay(store: Store) -> None:
    await add_decision(store, "old", NOW - 1827 * DAY)
    await add_decision(store, "young", NOW - 1825 * DAY)
    await add_attempt(store, NOW - 2 * DAY)  # no shipped cap of the default counts 2 days
    await add_attempt(store, NOW - timedelta(hours=23))  # kept: at least a day
    result = await purge(store, config(), NOW)
    assert (result.decisions, result.attempts) == (1, 1)
    assert [r[0] for r in await store.fetchall("SELECT decision_id FROM decisions")] == ["young"]
    assert await count(store, "attempts") == 1


async def test_attempts_are_kept_for_the_longest_cap(store: Store) -> None:
    with_cap = parse_config({"policy": {"caps": [{"max_calls": 3, "period": "30d"}]}})
    await add_attempt(store, NOW - 29 * DAY)
    await add_attempt(store, NOW - 31 * DAY)
    assert (await purge(store, with_cap, NOW)).attempts == 1
    assert (await purge(store, config(), NOW)).attempts == 1  # 1 day without that cap


async def test_ended_consents_go_in_force_ones_stay(store: Store) -> None:
    ancient = NOW - 4000 * DAY
    await store.grant_consent(A, "default", ConsentType.EXPRESS_WRITTEN, "form 1",
                              granted_at=ancient)  # never ends: in force for ever
    await store.grant_consent(B, "default", ConsentType.EXPRESS, "form 2", granted_at=ancient,
                              expires_at=ancient + DAY)
    await store.grant_consent(B, "default", ConsentType.EXPRESS, "form 3", granted_at=ancient,
                              expires_at=NOW - 100 * DAY)  # ended, but recently
    await store.grant_consent(C, "default", ConsentType.EXPRESS, "form 4", granted_at=ancient)
    await store.revoke_consent(C, None, "call", at=ancient + DAY)
    result = await purge(store, config(), NOW)
    assert result.consents == 2
    assert [c.source for c in await store.consent_history(A)] == ["form 1"]
    assert [c.source for c in await store.consent_history(B)] == ["form 3"]
    assert await store.consent_history(C) == []


async def test_an_ebr_ends_with_its_longest_term(store: Store) -> None:
    """An EBR has no expiry date: it ends 540 days after a purchase and 180 after an
    inquiry (Canada's, longer than the US 90), and is kept consents_days after that."""
    kept = 1826 * DAY
    for kind, term, source in ((ConsentType.EBR_PURCHASE, 540, "purchase"),
                               (ConsentType.EBR_INQUIRY, 180, "inquiry")):
        for extra, tag in ((2 * DAY, "ended"), (-2 * DAY, "kept")):
            await store.grant_consent(A, "default", kind, f"{source} {tag}",
                                      granted_at=NOW - kept - term * DAY - extra)
    assert (await purge(store, config(), NOW)).consents == 2
    assert sorted(c.source for c in await store.consent_history(A)) == [
        "inquiry kept", "purchase kept"]


async def test_a_revocation_that_voids_a_consent_in_force_stays(store: Store) -> None:
    """A '*' consent revoked for one campaign voids the number's other consents granted
    before (consent_rules): deleting it would turn them back into an allow."""
    ancient = NOW - 4000 * DAY
    await store.grant_consent(A, "*", ConsentType.EXPRESS_WRITTEN, "blanket", granted_at=ancient)
    await store.grant_consent(A, "renewals", ConsentType.EXPRESS_WRITTEN, "form",
                              granted_at=ancient)
    await store.revoke_consent(A, "sales", "call", at=ancient + DAY)  # revokes the '*' one
    assert (await purge(store, config(), NOW)).consents == 0
    index = await store.load_index()
    assert screen_consents(index.consents(A), "renewals", NOW).usable == ()


async def lists_with_history(store: Store) -> dict[str, int]:
    """national: two replace-imports (the first superseded, and with it a single entry);
    internal: one replace-import, then an ancient opt-out and an add-mode import; litigator:
    single entries only. Returns entry ids by name."""
    ancient = datetime(1999, 1, 1, tzinfo=UTC)
    await store.write_generation("national", BitMap64([number_key(A), number_key(B)]),
                                 "replace", kind=ListKind.NATIONAL)
    superseded = await store.add_entry("national", A, "remove", at=ancient)
    await store.write_generation("national", BitMap64([number_key(A), number_key(C)]),
                                 "replace")
    kept = await store.add_entry("national", D, "add", at=ancient)
    await store.write_generation("internal", BitMap64([number_key(B)]), "replace",
                                 kind=ListKind.INTERNAL)
    opt_out = await store.add_entry("internal", X, "add", at=ancient)
    await store.write_generation("internal", BitMap64([number_key(C)]), "add")
    await store.add_entry("litigator", Y, "add", at=ancient, kind=ListKind.LITIGATOR)
    return {"superseded": superseded.id, "kept": kept.id, "opt_out": opt_out.id}


async def memberships(store: Store) -> dict[str, list[str]]:
    index = await store.load_index()
    return {n: sorted(m.list_name for m in index.memberships(n)) for n in (A, B, C, D, X, Y)}


async def test_list_history_no_longer_in_effect_goes(store: Store) -> None:
    ids = await lists_with_history(store)
    # a superseded generation whose chunks were left (they go with it)
    await store.run("INSERT INTO generation_chunks (generation_id, seq, data) VALUES (1, 0, x'00')")
    before = await memberships(store)
    assert before[X] == ["internal"] and before[A] == ["national"]
    later = utcnow() + 1827 * DAY
    result = await purge(store, config(), later)
    # national's first generation, internal's first (replaced by the add-mode import)
    assert (result.generations, result.generation_chunks, result.list_entries) == (2, 1, 1)
    current = {r[0] for r in await store.fetchall("SELECT generation FROM lists")}
    assert {r[0] for r in await store.fetchall("SELECT id FROM generations")} == current - {None}
    left = {r[0] for r in await store.fetchall("SELECT id FROM list_entries")}
    assert ids["superseded"] not in left and {ids["kept"], ids["opt_out"]} <= left
    assert await memberships(store) == before  # the ancient internal opt-out still blocks
    assert (await purge(store, config(), later + 3650 * DAY)).total == 0  # the rest is in effect


async def test_the_current_generation_stays_even_with_a_later_one(store: Store) -> None:
    """No import makes this state (a list pointing at an older generation), but an
    operator's repair could; the current generation is the list, so it never goes."""
    await lists_with_history(store)
    await store.run("UPDATE lists SET generation = 1 WHERE name = 'national'")
    result = await purge(store, config(), utcnow() + 1827 * DAY)
    left = {r[0] for r in await store.fetchall("SELECT id FROM generations")}
    assert 1 in left and result.generations == 1


async def test_list_history_is_kept_from_when_it_stopped_being_in_effect(store: Store) -> None:
    """The 1999 entry was superseded today: kept lists_days from today, not from 1999."""
    await lists_with_history(store)
    result = await purge(store, config(), utcnow() + 1825 * DAY)
    assert (result.generations, result.list_entries) == (0, 0)


async def test_hold_purges_nothing(store: Store) -> None:
    await add_decision(store, "old", NOW - 4000 * DAY)
    await lists_with_history(store)
    result = await purge(store, config(hold=True), utcnow() + 4000 * DAY)
    assert result.held and result.total == 0 and result.as_json()["hold"] is True
    assert await count(store, "decisions") == 1
    assert await count(store, "generations") == 4


async def test_dry_run_counts_and_deletes_nothing(store: Store) -> None:
    await add_decision(store, "old", NOW - 4000 * DAY)
    await add_attempt(store, NOW - 4000 * DAY)
    await lists_with_history(store)
    later = utcnow() + 4000 * DAY
    dry = await purge(store, config(), later, dry_run=True)
    assert await count(store, "decisions") == 1 and await count(store, "generations") == 4
    done = await purge(store, config(), later)
    assert dry.counts() == done.counts() and dry.total == 5


@pytest.mark.parametrize("rows", [10, 11])
async def test_more_rows_than_a_batch(store: Store, rows: int) -> None:
    for i in range(rows):
        await add_decision(store, f"old-{i}", NOW - 2000 * DAY)
        await add_attempt(store, NOW - 2000 * DAY)
    await add_decision(store, "young", NOW)
    result = await purge(store, config(), NOW, batch=5)
    assert (result.decisions, result.attempts) == (rows, rows)
    assert await count(store, "decisions") == 1 and await count(store, "attempts") == 0
    chain = await verify(store)  # each batch moved the anchor: what is left still verifies
    assert chain.ok and chain.rows == 1, chain.detail


def append(config_file: Path, text: str) -> None:
    config_file.write_text(config_file.read_text() + text)


async def test_cli_prints_the_counts(cli: Cli, config_file: Path, store: Store) -> None:
    await add_decision(store, "old", utcnow() - 2000 * DAY)
    await add_decision(store, "young", utcnow())
    dry = cli("retention", "purge", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["decisions"] == 1 and await count(store, "decisions") == 2
    done = cli("retention", "purge")
    out = json.loads(done.stdout)
    assert (out["hold"], out["dry_run"], out["decisions"]) == (False, False, 1)
    assert await count(store, "decisions") == 1
    append(config_file, "[retention]\nhold = true\n")
    await add_decision(store, "old-2", utcnow() - 2000 * DAY)
    held = json.loads(cli("retention", "purge").stdout)
    assert held["hold"] is True and held["decisions"] == 0
    assert await count(store, "decisions") == 2


def test_cli_config_error_is_one_line(cli: Cli, config_file: Path) -> None:
    append(config_file, "[retention]\nconsents_days = 0\n")
    proc = cli("retention", "purge")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "config error: retention.consents_days: must be between 1 and 36500 (days)"
    ]


class Recorder:
    """A logger that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.events.append(("warning", event, kw))

    def named(self, event: str) -> list[dict[str, Any]]:
        return [kw for _, name, kw in self.events if name == event]


async def run_until(log: Recorder, event: str, times: int, task: asyncio.Task[None]) -> None:
    for _ in range(200):
        if len(log.named(event)) >= times or task.done():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_serve_task_purges_on_schedule(store: Store) -> None:
    await add_decision(store, "old", utcnow() - 2000 * DAY)
    log = Recorder()
    task = asyncio.create_task(run_retention(store, config(purge_every=0.02), log, 0.0))
    await run_until(log, "retention.purged", 2, task)
    first, second = log.named("retention.purged")[:2]
    assert (first["decisions"], second["decisions"]) == (1, 0)
    assert first["took_ms"] >= 0 and "decisions" in first["cutoffs"]
    assert await count(store, "decisions") == 0


async def test_purged_consents_leave_a_running_server_s_index(store: Store) -> None:
    """A purge that deleted consents logs a `consents-of` change per number, and a
    server's next refresh reads those numbers' consents again (the CLI's purge tells it
    at once, through the control socket; serve's own is seen by its store watch)."""
    ancient = utcnow() - 4000 * DAY
    await store.grant_consent(A, "sales", ConsentType.EXPRESS_WRITTEN, "old form",
                              granted_at=ancient)
    await store.revoke_consent(A, "sales", "call", at=ancient + DAY)
    await store.grant_consent(B, "sales", ConsentType.EXPRESS_WRITTEN, "form", granted_at=ancient)
    index = await store.load_index()
    assert len(index.consents(A)) == 1
    assert (await purge(store, config(), utcnow(), dry_run=True)).consents == 1
    assert not await store.refresh(index)  # a dry run changes nothing
    assert (await purge(store, config(), utcnow())).consents == 1
    told = await store.fetchall("SELECT kind, ref FROM changes WHERE kind = 'consents-of'")
    assert [tuple(r) for r in told] == [("consents-of", int(A.removeprefix("+")))]
    assert await store.refresh(index)
    assert index.consents(A) == () and [c.source for c in index.consents(B)] == ["form"]
    assert (await purge(store, config(), utcnow())).consents == 0
    assert not await store.refresh(index)  # nothing deleted: no reload asked for


async def test_serve_task_logs_a_store_failure_and_goes_on(store: Store) -> None:
    await store.run("DROP TABLE attempts")
    log = Recorder()
    task = asyncio.create_task(run_retention(store, config(purge_every=0.02), log, 0.0))
    await run_until(log, "retention.failed", 2, task)
    assert len(log.named("retention.failed")) >= 2
    assert "attempts" in log.named("retention.failed")[0]["detail"]


async def test_serve_task_under_hold_says_so_once(store: Store) -> None:
    await add_decision(store, "old", utcnow() - 2000 * DAY)
    log = Recorder()
    task = asyncio.create_task(run_retention(store, config(hold=True, purge_every=0.02),
                                             log, 0.0))
    await run_until(log, "retention.purged", 1, task)
    assert [e for _, e, _ in log.events] == ["retention.held"]
    assert await count(store, "decisions") == 1


async def test_the_change_log_keeps_its_newest_rows(store: Store) -> None:
    for number in (A, B, C, D):
        await store.add_entry("internal", number, "add", kind=ListKind.INTERNAL)
    last = (await store.fetchall("SELECT max(seq) FROM changes"))[0][0]
    logged = await count(store, "changes")
    assert logged >= 4
    dry = await purge(store, config(), NOW, dry_run=True, keep_changes=2)
    done = await purge(store, config(), NOW, keep_changes=2)
    assert dry.changes == done.changes == logged - 2
    kept = [r[0] for r in await store.fetchall("SELECT seq FROM changes ORDER BY seq")]
    assert kept == [last - 1, last]
    with_hold = await purge(store, config(hold=True), NOW, keep_changes=0)
    assert with_hold.changes == 0 and await count(store, "changes") == 2


async def test_a_server_behind_a_purged_change_log_reads_the_whole_store(store: Store) -> None:
    """Changes this server had not read were purged: its next refresh must not apply only
    what is left (the opt-out and the consent would never reach it)."""
    await store.add_entry("internal", X, "add", kind=ListKind.INTERNAL)
    index = await store.load_index()
    before = index.seq
    await store.add_entry("internal", A, "add")  # an opt-out this server has not read
    await store.grant_consent(B, "sales", ConsentType.EXPRESS_WRITTEN, "form 7", granted_at=NOW)
    await store.add_entry("internal", C, "add")
    assert (await purge(store, config(), NOW, keep_changes=1)).changes >= 2
    assert await store.refresh(index)
    assert index.seq > before and index.healthy
    assert [m.list_name for m in index.memberships(A)] == ["internal"]
    assert [c.source for c in index.consents(B)] == ["form 7"]
    assert [m.list_name for m in index.memberships(C)] == ["internal"]
    assert [m.list_name for m in index.memberships(X)] == ["internal"]
    # and from there on, the log is followed row by row again
    await store.add_entry("internal", D, "add")
    assert await store.refresh(index)
    assert [m.list_name for m in index.memberships(D)] == ["internal"]
