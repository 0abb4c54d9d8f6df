"""Keeping an in-memory `Index` in step with the store.

* `load_index(store)`: everything, read in one snapshot (one read transaction).
* `refresh(store, index)`: the change-log rows after `index.seq`; a list whose bulk
  generation changed is re-read and deserialized off the event loop thread, then swapped
  in with one assignment, so decisions made meanwhile use the old list whole.
* `watch(store, index, interval)`: the fallback for writers that did not use the control
  socket: a cheap `PRAGMA data_version` poll, refreshing when it moves.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyroaring import BitMap64

from sipguard.errors import StoreError
from sipguard.policy.model import Consent, SubjectRequest, SubjectRight
from sipguard.store.codec import chunks_bitmap
from sipguard.store.rows import (
    CONSENT_COLUMNS,
    LIST_QUERY,
    SUBJECT_COLUMNS,
    consent_row,
    list_info,
    subject_row,
)

if TYPE_CHECKING:
    from sipguard.store.db import Store
from sipguard.store.index import Entry, Index, ListInfo


@dataclass(slots=True)
class _ListLoad:
    info: ListInfo
    chunks: list[bytes] | None  # None: the bulk generation is unchanged
    entries: list[Entry] = field(default_factory=list)


async def load_index(store: Store, index: Index | None = None) -> Index:
    """Read the whole store into `index` (a new one by default) and mark it healthy."""
    index = index or Index()
    async with store.transaction(write=False):
        seq = await _last_seq(store)
        loads = [await _read_list(store, list_info(r), True) for r in await store.fetchall(
            f"{LIST_QUERY} ORDER BY l.name"
        )]
        consents = [
            consent_row(r)
            for r in await store.fetchall(f"SELECT {CONSENT_COLUMNS} FROM consents ORDER BY id")
        ]
        requests = [subject_row(r) for r in await store.fetchall(
            f"SELECT {SUBJECT_COLUMNS} FROM subject_requests WHERE lifted_at IS NULL ORDER BY id")]
    bitmaps = await asyncio.to_thread(_deserialize_all, loads)
    for load, bitmap in zip(loads, bitmaps, strict=True):
        index.set_list(load.info, bitmap or BitMap64(), load.entries)
    for consent in consents:
        index.put_consent(consent)
    for request in requests:
        index.put_subject_request(request)
    index.seq = seq
    index.mark_healthy()
    return index


async def refresh(store: Store, index: Index) -> bool:
    """Apply the changes committed since `index.seq`; True when there were any.

    A `consents-of` row (a retention purge deleted consents of that number) has the
    number's consents read again whole. When the first sequence number after `index.seq`
    is not the next (they follow one another: AUTOINCREMENT, never reused), a purge of the
    log itself deleted rows this server had not read: the whole store is read again and
    replaces the index's contents at once (decisions made meanwhile use the old whole)."""
    async with store.transaction(write=False):
        rows = await store.fetchall(
            "SELECT seq, kind, ref FROM changes WHERE seq > ? ORDER BY seq", (index.seq,)
        )
        lost = bool(rows) and int(rows[0][0]) != index.seq + 1
        read = None if lost or not rows else await _read_changes(store, index, rows)
    if lost:
        index.adopt(await load_index(store))
        return True
    if read is None:
        return False
    loads, entries, consents, requests, numbers = read
    bitmaps = await asyncio.to_thread(_deserialize_all, loads)
    # From here on: plain assignments on the loop thread, no await in between.
    for load, bitmap in zip(loads, bitmaps, strict=True):
        if bitmap is None:
            index.set_info(load.info)
        else:
            index.set_list(load.info, bitmap, load.entries)
    for entry in entries:
        index.apply_entry(entry)
    for number in numbers:
        index.forget_consents(number)  # what is left of them is in `consents`
    for consent in consents:
        index.put_consent(consent)
    for request in requests:
        if request.right is SubjectRight.ERASE:  # the store deleted the rest of the number's
            index.erase_subject(request.number)
        index.put_subject_request(request)
    index.seq = max(int(r[0]) for r in rows)
    return True


async def _read_changes(
    store: Store, index: Index, rows: list[sqlite3.Row]
) -> tuple[list[_ListLoad], list[Entry], list[Consent], list[SubjectRequest], list[str]]:
    """What the change-log rows name, read inside the caller's read transaction."""
    refs: dict[str, set[int]] = {"list": set(), "entry": set(), "consent": set(),
                                 "subject": set(), "consents-of": set()}
    for _, kind, ref in rows:
        refs[str(kind)].add(int(ref))
    loads = []
    for list_id in sorted(refs["list"]):
        found = await store.fetchall(f"{LIST_QUERY} WHERE l.id = ?", (list_id,))
        if found:
            info = list_info(found[0])
            changed = info.generation != index.generation_of(info.id)
            loads.append(await _read_list(store, info, changed))
    numbers = [f"+{digits}" for digits in sorted(refs["consents-of"])]
    consents = await store.consents_by_id(refs["consent"])
    return (loads, await store.entries_by_id(refs["entry"]),
            [*consents, *await store.consents_of(numbers)],
            await store.subject_requests_by_id(refs["subject"]), numbers)


async def _read_list(store: Store, info: ListInfo, with_bulk: bool) -> _ListLoad:
    if not with_bulk:
        return _ListLoad(info, None)
    chunks = await store.generation_chunks(info.generation)
    return _ListLoad(info, chunks, await store.entries(info.id, info.entries_upto))


async def _last_seq(store: Store) -> int:
    rows = await store.fetchall("SELECT coalesce(max(seq), 0) FROM changes")
    return int(rows[0][0])


def _deserialize_all(loads: list[_ListLoad]) -> list[BitMap64 | None]:
    return [None if load.chunks is None else chunks_bitmap(load.chunks) for load in loads]


async def watch(
    store: Store,
    index: Index,
    interval: float = 1.0,
    on_error: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    """Poll `PRAGMA data_version` every `interval` s and refresh when it moved. Runs until
    cancelled. A failing store marks the index unhealthy (-> store-unavailable) until a
    later refresh succeeds; `on_error(message)` is told each time (e.g. to log it)."""
    last = -1
    while True:
        try:
            version = await store.data_version()
            if version != last or not index.healthy:
                await refresh(store, index)
                last = version
            index.mark_healthy()
        except (StoreError, sqlite3.Error) as exc:
            index.mark_unhealthy(f"store unreadable: {exc}")
            if on_error is not None:
                result = on_error(str(exc))
                if result is not None:
                    await result
        await asyncio.sleep(interval)


async def sync_now(store: Store, index: Index) -> None:
    """Refresh once, marking the index unhealthy if the store cannot be read (for the
    control socket's `on_sync`)."""
    try:
        await refresh(store, index)
    except StoreError as exc:
        index.mark_unhealthy(f"store unreadable: {exc}")
        raise
    index.mark_healthy()
