"""A replace-import killed with SIGKILL leaves the old list whole (or, if the kill came
after the commit, the new one whole): never a mix, never an empty or broken list."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from pyroaring import BitMap64

from sipguard.store.db import Store

OLD = range(2_000_000_000, 2_000_000_000 + 100_000 * 7, 7)  # 100k ten-digit numbers
NEW = range(3_000_000_000, 3_000_000_000 + 2_000_000 * 13, 13)  # 2M, ~4 MB of bitmap
CC = 10_000_000_000  # the "+1" in front


def start_import(config_file: Path, file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sipguard", "dnc", "import", str(file), "--list", "national",
         "-c", str(config_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def import_and_kill(config_file: Path, file: Path, wal: Path, mid_write: bool) -> None:
    proc = start_import(config_file, file)
    if not mid_write:
        time.sleep(0.3)
    else:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if wal.exists() and wal.stat().st_size > 1 << 20:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


async def national(db_path: Path) -> BitMap64:
    async with await Store.open(db_path) as store:
        (row,) = await store.fetchall("PRAGMA integrity_check")
        assert row[0] == "ok"
        index = await store.load_index()
        info = await store.require_list("national")
        bitmap = await store.bitmap(info.generation)
        assert index.list_size("national") == len(bitmap) == info.bulk_count
        return bitmap


async def test_sigkill_mid_replace_leaves_the_old_list_whole(
    tmp_path: Path, config_file: Path
) -> None:
    db_path = tmp_path / "var" / "sipguard.db"
    wal = Path(f"{db_path}-wal")
    (tmp_path / "old.txt").write_bytes(b"".join(b"%d\n" % n for n in OLD))
    (tmp_path / "new.txt").write_bytes(b"".join(b"%d\n" % n for n in NEW))
    old = BitMap64(range(OLD.start + CC, OLD.stop + CC, OLD.step))
    new = BitMap64(range(NEW.start + CC, NEW.stop + CC, NEW.step))
    first = start_import(config_file, tmp_path / "old.txt")
    assert first.wait(60) == 0
    assert await national(db_path) == old

    # Kill once while parsing, then as soon as the write transaction spills into the WAL
    # (the only moment pages of the new generation exist on disk before the commit).
    killed_mid_write = 0
    for attempt in range(4):
        import_and_kill(config_file, tmp_path / "new.txt", wal, mid_write=attempt > 0)
        after = await national(db_path)
        assert after in (old, new), "a killed import must leave one list whole"
        if after == new:  # the kill came after the commit: put the old list back and retry
            assert start_import(config_file, tmp_path / "old.txt").wait(60) == 0
        elif attempt > 0:
            killed_mid_write += 1
        if killed_mid_write:
            break
    assert killed_mid_write, "no kill landed inside the write transaction"
    with sqlite3.connect(db_path) as db:  # the dead import left no generation behind
        gens = db.execute("SELECT count(*) FROM generation_chunks GROUP BY generation_id")
        assert len(gens.fetchall()) == 1
