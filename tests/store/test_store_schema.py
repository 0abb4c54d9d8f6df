"""Opening the store: directory, WAL, migrations, and mode 0600 on every file."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from sipguard.errors import StoreError
from sipguard.policy.model import ListKind
from sipguard.store import schema
from sipguard.store.db import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_open_creates_parent_dir_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.db"
    store = await Store.open(path)
    try:
        assert path.parent.is_dir()
        assert (await store.fetchall("PRAGMA user_version"))[0][0] == schema.LATEST
        assert (await store.fetchall("PRAGMA journal_mode"))[0][0] == "wal"
        tables = {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master")}
        for table in ("lists", "generations", "generation_chunks", "list_entries",
                      "consents", "changes", "attempts", "decisions"):
            assert table in tables
    finally:
        await store.close()


async def test_files_are_0600_even_with_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        store = await Store.open(tmp_path / "store.db")
    finally:
        os.umask(old)
    try:
        await store.add_entry("internal", "+12025550100", "add", kind=ListKind.INTERNAL)
        # while the connection is open, the WAL and shared-memory files exist
        for name in ("store.db", "store.db-wal", "store.db-shm"):
            assert mode(tmp_path / name) == 0o600, name
    finally:
        await store.close()


async def test_reopen_keeps_data_and_does_not_remigrate(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await Store.open(path) as store:
        await store.add_entry("internal", "+12025550100", "add", kind=ListKind.INTERNAL)
    async with await Store.open(path) as store:
        assert [i.name for i in await store.lists()] == ["internal"]
        assert await schema.migrate(store.db) == schema.LATEST


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    await (await Store.open(path)).close()  # create at the current version
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    with pytest.raises(StoreError, match="newer than this sipguard"):
        await Store.open(path)


async def test_unwritable_directory_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot"):
        await Store.open(blocker / "store.db")
