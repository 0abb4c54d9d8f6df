"""The SQLite store (aiosqlite): open, lists, single entries, bulk generations, consents.

One connection per process, in autocommit mode so that transactions are explicit; one
asyncio lock serialises this process's transactions on it; `busy_timeout` makes other
processes' writers wait instead of failing. Keeping the in-memory index in step lives in
`sipguard.store.sync`; batched call records in `sipguard.store.writer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import aiosqlite
from pyroaring import BitMap64

from sipguard.errors import StoreError
from sipguard.policy.model import Consent, ConsentType, ListKind, SubjectRequest
from sipguard.store import schema, sync
from sipguard.store.codec import (
    bitmap_chunks,
    chunks_bitmap,
    nanp_block_keys,
    number_key,
    time_text,
    utcnow,
)
from sipguard.store.index import Entry, Index, ListInfo
from sipguard.store.rows import (
    CONSENT_COLUMNS,
    ENTRY_COLUMNS,
    LIST_QUERY,
    SUBJECT_COLUMNS,
    consent_row,
    entry_row,
    list_info,
    subject_row,
)

ImportMode = Literal["replace", "add", "remove"]
T = TypeVar("T")
K = TypeVar("K", int, str)  # keys of an IN (...) query, sortable
BUSY_TIMEOUT_MS = 10_000

@dataclass(frozen=True, slots=True)
class ImportResult:
    """What a bulk write did."""

    list: ListInfo
    mode: ImportMode
    numbers_in: int  # distinct numbers in the file
    before: int  # bulk numbers before
    after: int  # bulk numbers after


class Store:
    """The sipguard store. Use `await Store.open(path)`; close with `await store.close()`."""

    def __init__(self, path: Path, db: aiosqlite.Connection) -> None:
        self.path = path
        self.db = db
        self.lock = asyncio.Lock()

    # -- opening -----------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> Store:
        """Open (creating if needed, mode 0600) and migrate the store at `path`."""
        file = Path(path)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store directory {str(file.parent)!r}: {exc}"
            ) from None
        # The umask covers the db and the -wal/-shm files SQLite creates with it; it is
        # process-wide, so it is held only while the files come into existence.
        old_umask = os.umask(0o077)
        try:
            db = await aiosqlite.connect(file, isolation_level=None)
            try:
                await _configure(db)
                store = cls(file, db)
                await schema.migrate(db)
            except BaseException:
                await db.close()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {str(file)!r}: {exc}") from None
        finally:
            os.umask(old_umask)
        for suffix in ("", "-wal", "-shm"):
            _restrict(Path(f"{file}{suffix}"))
        return store

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- transactions ------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self, write: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction; write ones take SQLite's write lock up front (IMMEDIATE)."""
        async with self.lock:
            try:
                await self.db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise StoreError(f"store {str(self.path)!r}: {exc}") from None
            try:
                yield self.db
            except sqlite3.Error as exc:
                await _rollback(self.db)
                raise StoreError(f"store {str(self.path)!r}: {exc}") from None
            except BaseException:
                await _rollback(self.db)
                raise
            try:
                await self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                await _rollback(self.db)
                raise StoreError(f"store {str(self.path)!r}: commit failed: {exc}") from None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            async with self.db.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"store {str(self.path)!r}: {exc}") from None

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute one statement; return lastrowid."""
        try:
            async with self.db.execute(sql, params) as cur:
                return int(cur.lastrowid or 0)
        except sqlite3.Error as exc:
            raise StoreError(f"store {str(self.path)!r}: {exc}") from None

    async def data_version(self) -> int:
        """SQLite's `PRAGMA data_version`: changes when another connection commits."""
        rows = await self.fetchall("PRAGMA data_version")
        return int(rows[0][0])

    # -- lists -------------------------------------------------------------------------

    async def lists(self) -> list[ListInfo]:
        return [list_info(r) for r in await self.fetchall(f"{LIST_QUERY} ORDER BY l.name")]

    async def get_list(self, name: str) -> ListInfo | None:
        rows = await self.fetchall(f"{LIST_QUERY} WHERE l.name = ?", (name,))
        return list_info(rows[0]) if rows else None

    async def require_list(self, name: str) -> ListInfo:
        info = await self.get_list(name)
        if info is None:
            known = ", ".join(i.name for i in await self.lists()) or "none yet"
            raise StoreError(f"unknown list {name!r} (known lists: {known})")
        return info

    async def _ensure_list(
        self, name: str, kind: ListKind | None, jurisdiction: str | None, source: str | None
    ) -> ListInfo:
        """Inside a write transaction: the list, created when a kind is known."""
        info = await self.get_list(name)
        if info is None:
            if kind is None:
                known = ", ".join(i.name for i in await self.lists()) or "none yet"
                raise StoreError(
                    f"unknown list {name!r} (known lists: {known}); give --kind to create it"
                )
            list_id = await self.run(
                "INSERT INTO lists (name, kind, jurisdiction, source, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, kind.value, jurisdiction, source or "", time_text(utcnow())),
            )
            await self.note_change("list", list_id)
            return await self.require_list(name)
        if kind is not None and kind is not info.kind:
            raise StoreError(f"list {name!r} is of kind {info.kind.value!r}, not {kind.value!r}")
        if (jurisdiction is not None and jurisdiction != info.jurisdiction) or (
            source is not None and source != info.source
        ):
            await self.run(
                "UPDATE lists SET jurisdiction = coalesce(?, jurisdiction),"
                " source = coalesce(?, source) WHERE id = ?",
                (jurisdiction, source, info.id),
            )
            await self.note_change("list", info.id)
            return await self.require_list(name)
        return info

    async def note_change(self, kind: str, ref: int) -> None:
        """Log a change for running servers to apply (`sync.refresh`); inside the write."""
        await self.run("INSERT INTO changes (kind, ref) VALUES (?, ?)", (kind, ref))

    # -- single entries ----------------------------------------------------------------

    async def add_entry(
        self,
        list_name: str,
        number: str,
        op: Literal["add", "remove"],
        *,
        source: str = "",
        at: datetime | None = None,
        kind: ListKind | None = None,
    ) -> Entry:
        """Append one add/remove for an E.164 number. `add` creates the list when `kind`
        is given; `remove` needs the list to exist."""
        if number_key(number) is None:
            raise StoreError(f"{number!r} is not an E.164 number")
        when = at or utcnow()
        async with self.transaction():
            info = (
                await self._ensure_list(list_name, kind, None, None)
                if op == "add"
                else await self.require_list(list_name)
            )
            entry_id = await self.run(
                "INSERT INTO list_entries (list_id, number, op, at, source) VALUES (?, ?, ?, ?, ?)",
                (info.id, number, op, time_text(when), source),
            )
            await self.note_change("entry", entry_id)
        return Entry(entry_id, info.id, number, op, when, source)

    async def entries(self, list_id: int, after: int = 0) -> list[Entry]:
        rows = await self.fetchall(
            f"SELECT {ENTRY_COLUMNS} FROM list_entries"
            " WHERE list_id = ? AND id > ? ORDER BY id",
            (list_id, after),
        )
        return [entry_row(r) for r in rows]

    # -- bulk generations --------------------------------------------------------------

    async def bitmap(self, generation: int | None) -> BitMap64:
        """A generation's numbers (deserialized off the event loop thread)."""
        chunks = await self.generation_chunks(generation)
        return await asyncio.to_thread(chunks_bitmap, chunks)

    async def generation_chunks(self, generation: int | None) -> list[bytes]:
        if generation is None:
            return []
        rows = await self.fetchall(
            "SELECT data FROM generation_chunks WHERE generation_id = ? ORDER BY seq",
            (generation,),
        )
        return [bytes(r[0]) for r in rows]

    async def write_generation(
        self,
        list_name: str,
        numbers: BitMap64,
        mode: ImportMode,
        *,
        kind: ListKind | None = None,
        jurisdiction: str | None = None,
        source: str = "",
        refreshed_at: datetime | None = None,
        dated: Sequence[tuple[str, datetime]] = (),
    ) -> ImportResult:
        """Make `numbers` the list (replace), or add them to / remove them from it.

        One transaction: a new generation is written, the list's pointer flipped and the
        old generation's blobs dropped. Until the commit every reader sees the old list;
        a process killed before it leaves the old list whole. `dated` numbers (E.164,
        time) go in as single entries of the same transaction (added, or removed in
        `remove` mode), after the generation so that a replace keeps them.
        """
        now = utcnow()
        async with self.transaction():
            info = await self._ensure_list(
                list_name, kind if mode != "remove" else None, jurisdiction, source or None
            )
            old = await self.bitmap(info.generation)
            upto = info.entries_upto
            if mode == "replace":
                new = numbers
                # the file is the whole truth: every single entry so far is superseded
                rows = await self.fetchall("SELECT coalesce(max(id), 0) FROM list_entries")
                upto = int(rows[0][0])
            else:
                new = old | numbers if mode == "add" else old - numbers
                await self._reconcile_overlay(info, numbers, mode, source, now)
            generation = await self.run(
                "INSERT INTO generations (list_id, created_at, count, entries_upto, mode, source)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (info.id, time_text(now), len(new), upto, mode, source),
            )
            chunks = await asyncio.to_thread(bitmap_chunks, new)
            for seq, chunk in enumerate(chunks):
                await self.run(
                    "INSERT INTO generation_chunks (generation_id, seq, data) VALUES (?, ?, ?)",
                    (generation, seq, chunk),
                )
            await self.run(
                "UPDATE lists SET generation = ?, refreshed_at = ? WHERE id = ?",
                (generation, time_text(refreshed_at or now), info.id),
            )
            if info.generation is not None:
                # the generation row stays as history; its numbers go
                await self.run(
                    "DELETE FROM generation_chunks WHERE generation_id = ?", (info.generation,)
                )
            await self.note_change("list", info.id)
            await self._dated_entries(info.id, dated, mode, source)
            after = await self.require_list(list_name)
        return ImportResult(after, mode, len(numbers) + len(dated), len(old), len(new))

    async def _dated_entries(
        self, list_id: int, dated: Sequence[tuple[str, datetime]], mode: ImportMode, source: str
    ) -> None:
        if not dated:
            return
        op = "remove" if mode == "remove" else "add"
        rows = await self.fetchall("SELECT coalesce(max(id), 0) FROM list_entries")
        await self.db.executemany(
            "INSERT INTO list_entries (list_id, number, op, at, source) VALUES (?, ?, ?, ?, ?)",
            [(list_id, number, op, time_text(at), source) for number, at in dated],
        )
        await self.run(
            "INSERT INTO changes (kind, ref) SELECT 'entry', id FROM list_entries WHERE id > ?",
            (int(rows[0][0]),),
        )

    async def _reconcile_overlay(
        self, info: ListInfo, numbers: BitMap64, mode: ImportMode, source: str, now: datetime
    ) -> None:
        """Single entries newer than the bulk generation win over it; a bulk add/remove
        made after them must win in turn. Append the few counter-entries that says so."""
        latest: dict[str, Entry] = {}
        for entry in await self.entries(info.id, info.entries_upto):
            latest[entry.number] = entry
        undo = "remove" if mode == "add" else "add"
        blocks = info.kind is ListKind.WIRELESS
        for number, entry in latest.items():
            key = number_key(number)
            if entry.op == undo and key is not None and _covers(numbers, key, blocks):
                entry_id = await self.run(
                    "INSERT INTO list_entries (list_id, number, op, at, source)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (info.id, number, mode, time_text(now), source or f"import ({mode})"),
                )
                await self.note_change("entry", entry_id)

    # -- consents ----------------------------------------------------------------------

    async def grant_consent(
        self,
        number: str,
        campaign: str,
        type: ConsentType,
        source: str,
        *,
        granted_at: datetime | None = None,
        expires_at: datetime | None = None,
        location_region: str | None = None,
        location_zone: str | None = None,
    ) -> Consent:
        if number_key(number) is None:
            raise StoreError(f"{number!r} is not an E.164 number")
        granted = granted_at or utcnow()
        if expires_at is not None and expires_at <= granted:
            raise StoreError("the consent would expire before it was granted")
        async with self.transaction():
            consent_id = await self.run(
                "INSERT INTO consents (number, campaign, type, granted_at, expires_at, source,"
                " recorded_at, location_region, location_zone) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    number, campaign, type.value, time_text(granted),
                    time_text(expires_at) if expires_at else None, source, time_text(utcnow()),
                    location_region, location_zone,
                ),
            )
            await self.note_change("consent", consent_id)
        return Consent(consent_id, number, campaign, type, granted, expires_at, None, None, source,
                       location_region, location_zone)

    async def revoke_consent(
        self, number: str, campaign: str | None, source: str, *, at: datetime | None = None
    ) -> list[Consent]:
        """Revoke the number's active consents: all of them (`campaign` None), or those for
        `campaign` and the blanket '*' ones (a partial revocation of a blanket consent
        voids the blanket: the conservative reading). Returns the records revoked."""
        when = at or utcnow()
        scope = "" if campaign is None else " AND campaign IN (?, '*')"
        params: tuple[str, ...] = (number,) if campaign is None else (number, campaign)
        async with self.transaction():
            rows = await self.fetchall(
                f"SELECT id FROM consents WHERE number = ? AND revoked_at IS NULL{scope}", params
            )
            ids = [int(r[0]) for r in rows]
            for consent_id in ids:
                await self.run(
                    "UPDATE consents SET revoked_at = ?, revoke_source = ? WHERE id = ?",
                    (time_text(when), source, consent_id),
                )
                await self.note_change("consent", consent_id)
        return [c for c in await self.consent_history(number) if c.id in ids]

    async def consent_history(self, number: str) -> list[Consent]:
        rows = await self.fetchall(
            f"SELECT {CONSENT_COLUMNS} FROM consents WHERE number = ? ORDER BY granted_at, id",
            (number,),
        )
        return [consent_row(r) for r in rows]

    async def consents_by_id(self, ids: Iterable[int]) -> list[Consent]:
        return await self._by_id(f"SELECT {CONSENT_COLUMNS} FROM consents", ids, consent_row)

    async def subject_requests_by_id(self, ids: Iterable[int]) -> list[SubjectRequest]:
        return await self._by_id(f"SELECT {SUBJECT_COLUMNS} FROM subject_requests", ids,
                                 subject_row)

    async def entries_by_id(self, ids: Iterable[int]) -> list[Entry]:
        return await self._by_id(f"SELECT {ENTRY_COLUMNS} FROM list_entries", ids, entry_row)

    async def consents_of(self, numbers: Iterable[str]) -> list[Consent]:
        """Every consent of these numbers, by number, then as `consent_history` orders."""
        return await self._where_in(f"SELECT {CONSENT_COLUMNS} FROM consents", "number",
                                    numbers, consent_row, "number, granted_at, id")

    async def _by_id(
        self, select: str, ids: Iterable[int], decode: Callable[[sqlite3.Row], T]
    ) -> list[T]:
        """The rows `select` (a SELECT ... FROM table) finds by id, in id order, decoded."""
        return await self._where_in(select, "id", ids, decode, "id")

    async def _where_in(
        self, select: str, column: str, keys: Iterable[K],
        decode: Callable[[sqlite3.Row], T], order: str,
    ) -> list[T]:
        return [
            decode(r)
            for batch in _batches(keys)
            for r in await self.fetchall(
                f"{select} WHERE {column} IN ({_marks(batch)}) ORDER BY {order}", batch
            )
        ]

    # -- the in-memory index (implemented in sipguard.store.sync) ----------------------

    async def load_index(self) -> Index:
        """Build an Index of everything in the store (bulk lists off the loop thread)."""
        return await sync.load_index(self)

    async def refresh(self, index: Index) -> bool:
        """Apply to `index` every change committed since it last looked; True if any."""
        return await sync.refresh(self, index)


async def _configure(db: aiosqlite.Connection) -> None:
    await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    async with db.execute("PRAGMA journal_mode = WAL") as cur:
        row = await cur.fetchone()
    if not row or str(row[0]).lower() != "wal":
        raise StoreError("the store's file system does not support SQLite WAL mode")
    # WAL + NORMAL: a commit survives a process crash; only a power loss may drop the
    # last transactions, never corrupt the file.
    await db.execute("PRAGMA synchronous = NORMAL")
    await db.execute("PRAGMA foreign_keys = ON")


async def _rollback(db: aiosqlite.Connection) -> None:
    # sqlite3.Error here: no transaction left to roll back (SQLite already did)
    with contextlib.suppress(sqlite3.Error):
        await db.execute("ROLLBACK")


def _restrict(file: Path) -> None:
    try:
        file.chmod(0o600)
    except FileNotFoundError:
        pass  # -wal/-shm come and go with connections
    except OSError as exc:
        raise StoreError(f"cannot restrict {str(file)!r} to mode 0600: {exc}") from None


def _covers(numbers: BitMap64, key: int, blocks: bool) -> bool:
    """`key` is in `numbers`, or (`blocks`: a wireless list) one of its NANP blocks is."""
    if key in numbers:
        return True
    keys = nanp_block_keys(key) if blocks else None
    return keys is not None and (keys[0] in numbers or keys[1] in numbers)


def _batches(keys: Iterable[K], size: int = 500) -> list[tuple[K, ...]]:
    items = sorted(set(keys))
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def _marks(batch: Sequence[object]) -> str:
    return ", ".join("?" * len(batch))
