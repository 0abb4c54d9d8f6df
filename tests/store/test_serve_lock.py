"""One `sipguard serve` per store (store/serve_lock.py): a second holder is refused with the
key and the holder's pid, a released or dead holder's lock is free again, and another path
to the same store finds the same lock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sipguard.errors import ConfigError, StoreError
from sipguard.store import serve_lock


def test_a_second_holder_is_refused_naming_the_key_and_the_holder(tmp_path: Path) -> None:
    store = tmp_path / "sipguard.db"
    release = serve_lock.hold(store)
    try:
        with pytest.raises(ConfigError) as refused:
            serve_lock.hold(store)
        assert refused.value.key == "store.path"
        assert f"(pid {os.getpid()})" in str(refused.value)
        assert repr(str(store)) in str(refused.value)
    finally:
        release()
    serve_lock.hold(store)()  # released: free again


def test_the_lock_file_is_private_and_names_its_holder(tmp_path: Path) -> None:
    release = serve_lock.hold(tmp_path / "sub" / "sipguard.db")  # the directory is made
    try:
        path = serve_lock.lock_path(tmp_path / "sub" / "sipguard.db")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        release()


def test_another_path_to_the_same_store_finds_the_same_lock(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    release = serve_lock.hold(tmp_path / "data" / "sipguard.db")
    try:
        with pytest.raises(ConfigError):
            serve_lock.hold(tmp_path / "link" / "sipguard.db")
    finally:
        release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    store = tmp_path / "sipguard.db"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from sipguard.store import serve_lock
        serve_lock.hold(Path({str(store)!r}))
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(ConfigError, match=rf"\(pid {holder.pid}\)"):
            serve_lock.hold(store)
    finally:
        holder.kill()  # SIGKILL: no cleanup of its own runs
        holder.wait(10)
    serve_lock.hold(store)()


def test_a_lock_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("a file where a directory should be\n")
    with pytest.raises(StoreError, match="cannot create the lock"):
        serve_lock.hold(plain / "sipguard.db")
