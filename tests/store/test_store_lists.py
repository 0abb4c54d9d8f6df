"""Lists in the store and the index: bulk generations, single entries, modes, refresh."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyroaring import BitMap64

from sipguard.errors import StoreError
from sipguard.policy.model import ConsentType, ListKind
from sipguard.store.codec import number_key
from sipguard.store.db import Store
from sipguard.store.index import Index
from sipguard.store.sync import watch

A, B, C, D = "+12025550101", "+12025550102", "+13055550103", "+442079460958"


def bm(*numbers: str) -> BitMap64:
    return BitMap64([number_key(n) for n in numbers])


def names(index_memberships: object) -> list[str]:
    return sorted(m.list_name for m in index_memberships)  # type: ignore[attr-defined]


async def test_replace_import_answers_from_the_index(store: Store) -> None:
    result = await store.write_generation("national", bm(A, B), "replace", kind=ListKind.NATIONAL)
    assert (result.before, result.after) == (0, 2)
    index = await store.load_index()
    (hit,) = index.memberships(A)
    assert hit.list_name == "national" and hit.kind is ListKind.NATIONAL
    assert hit.listed_at is None and hit.refreshed_at is not None
    assert index.memberships(C) == ()
    assert index.memberships("not-a-number") == ()


async def test_replace_replaces_and_supersedes_single_entries(store: Store) -> None:
    await store.write_generation("internal", bm(A), "replace", kind=ListKind.INTERNAL)
    await store.add_entry("internal", B, "add")
    await store.add_entry("internal", A, "remove")
    index = await store.load_index()
    assert names(index.memberships(B)) == ["internal"] and index.memberships(A) == ()
    await store.write_generation("internal", bm(A, C), "replace")
    index = await store.load_index()
    # the file is the whole truth now: A back, B gone, C there
    assert index.memberships(B) == ()
    assert names(index.memberships(A)) == names(index.memberships(C)) == ["internal"]


async def test_single_entry_time_is_the_listing_time(store: Store) -> None:
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    await store.add_entry("internal", A, "add", at=when, kind=ListKind.INTERNAL, source="call")
    index = await store.load_index()
    (hit,) = index.memberships(A)
    assert hit.listed_at == when


async def test_add_and_remove_modes(store: Store) -> None:
    await store.write_generation("state", bm(A, B), "replace", kind=ListKind.STATE,
                                 jurisdiction="US-FL")
    added = await store.write_generation("state", bm(C), "add")
    assert (added.before, added.after) == (2, 3)
    removed = await store.write_generation("state", bm(A, D), "remove")
    assert removed.after == 2
    index = await store.load_index()
    assert index.memberships(A) == ()
    (hit,) = index.memberships(C)
    assert hit.jurisdiction == "US-FL"
    assert index.list_size("state") == 2


async def test_bulk_add_after_single_remove_wins(store: Store) -> None:
    """Later wins: a bulk add re-lists a number removed singly before it, and vice versa."""
    await store.write_generation("internal", bm(A, B), "replace", kind=ListKind.INTERNAL)
    await store.add_entry("internal", A, "remove")
    await store.add_entry("internal", C, "add")
    await store.write_generation("internal", bm(A), "add")
    await store.write_generation("internal", bm(C), "remove")
    index = await store.load_index()
    assert names(index.memberships(A)) == ["internal"]
    assert index.memberships(C) == ()
    assert names(index.memberships(B)) == ["internal"]


async def test_unknown_list_and_kind_mismatch(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown list 'custom1'"):
        await store.add_entry("custom1", A, "add")
    with pytest.raises(StoreError, match="unknown list"):
        await store.add_entry("internal", A, "remove")
    await store.write_generation("national", bm(A), "replace", kind=ListKind.NATIONAL)
    with pytest.raises(StoreError, match="kind 'national', not 'state'"):
        await store.write_generation("national", bm(A), "replace", kind=ListKind.STATE)
    with pytest.raises(StoreError, match=r"not an E\.164"):
        await store.add_entry("national", "2025550101", "add")


async def test_old_generation_blobs_are_dropped(store: Store) -> None:
    for _ in range(3):
        await store.write_generation("national", bm(A, B), "replace", kind=ListKind.NATIONAL)
    rows = await store.fetchall("SELECT DISTINCT generation_id FROM generation_chunks")
    assert len(rows) == 1
    history = await store.fetchall("SELECT count(*) FROM generations")
    assert history[0][0] == 3  # the generation rows stay as history


async def test_refresh_applies_writes_of_another_connection(store: Store, tmp_path: Path) -> None:
    index = await store.load_index()
    assert not await store.refresh(index)
    async with await Store.open(store.path) as other:
        await other.write_generation("national", bm(A), "replace", kind=ListKind.NATIONAL)
        await other.add_entry("internal", B, "add", kind=ListKind.INTERNAL)
        await other.grant_consent(C, "default", ConsentType.EXPRESS, "form 7")
    assert index.memberships(A) == ()  # not yet: nothing told the index
    assert await store.refresh(index)
    assert names(index.memberships(A)) == ["national"]
    assert names(index.memberships(B)) == ["internal"]
    assert [c.source for c in index.consents(C)] == ["form 7"]
    async with await Store.open(store.path) as other:
        await other.write_generation("national", bm(D), "replace")
        await other.add_entry("internal", B, "remove")
    assert await store.refresh(index)
    assert index.memberships(A) == () and index.memberships(B) == ()
    assert names(index.memberships(D)) == ["national"]


async def test_refresh_swaps_a_list_without_touching_the_others(store: Store) -> None:
    await store.write_generation("national", bm(A), "replace", kind=ListKind.NATIONAL)
    await store.write_generation("litigator", bm(B), "replace", kind=ListKind.LITIGATOR)
    index = await store.load_index()
    before = index.memberships(B)
    await store.write_generation("national", bm(C), "replace")
    await store.refresh(index)
    assert index.memberships(B) is not before and index.memberships(B) == before
    assert names(index.memberships(C)) == ["national"] and index.memberships(A) == ()


async def test_unloaded_or_failed_index_raises_store_error() -> None:
    index = Index()
    with pytest.raises(StoreError):
        index.memberships(A)
    index.mark_healthy()
    assert index.memberships(A) == ()
    index.mark_unhealthy("disk gone")
    with pytest.raises(StoreError, match="disk gone"):
        index.consents(A)


async def test_lost_records_keep_the_index_failing_whatever_reads_do() -> None:
    """Records being lost is a problem of its own: a successful read (the store watch
    marks the index healthy every second) does not end it; only the writer does."""
    index = Index()
    index.mark_healthy()
    index.recording_lost("decision records cannot be written (disk full); 3 lost")
    index.mark_healthy()
    assert index.healthy  # the lists are current ...
    with pytest.raises(StoreError, match="disk full"):  # ... yet no call is decided on them
        index.memberships(A)
    index.mark_unhealthy("disk gone")
    index.recording_lost(None)
    with pytest.raises(StoreError, match="disk gone"):
        index.memberships(A)
    index.mark_healthy()
    assert index.memberships(A) == ()


async def test_watch_marks_unhealthy_when_the_store_breaks(store: Store) -> None:

    index = await store.load_index()
    task = asyncio.create_task(watch(store, index, interval=0.01))
    try:
        async with await Store.open(store.path) as other:
            await other.add_entry("internal", A, "add", kind=ListKind.INTERNAL)
        for _ in range(200):
            if index.memberships(A):
                break
            await asyncio.sleep(0.01)
        assert names(index.memberships(A)) == ["internal"]
        with sqlite3.connect(store.path) as db:  # another process breaks the store
            db.execute("DROP TABLE changes")
        for _ in range(200):
            if not index.healthy:
                break
            await asyncio.sleep(0.01)
        assert not index.healthy
        with pytest.raises(StoreError):
            index.memberships(A)
    finally:
        task.cancel()


async def test_dated_rows_carry_their_time_through_a_replace(store: Store) -> None:
    """A reassigned-numbers file: each number's disconnection date is its listing time."""
    when = datetime(2026, 2, 1, tzinfo=UTC)
    await store.write_generation("reassigned", bm(A), "replace", kind=ListKind.REASSIGNED,
                                 dated=[(B, when)])
    index = await store.load_index()
    (hit,) = index.memberships(B)
    assert hit.kind is ListKind.REASSIGNED and hit.listed_at == when
    (bulk,) = index.memberships(A)
    assert bulk.listed_at is None
    await store.write_generation("reassigned", bm(C), "replace", dated=[(D, when)])
    await store.refresh(index)
    assert index.memberships(B) == () and index.memberships(A) == ()
    assert [m.listed_at for m in index.memberships(D)] == [when]
