"""The control socket: a CLI write is in the running server's index before the CLI exits."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from sipguard.errors import StoreError
from sipguard.store.control import notify_server, remove_control, serve_control
from sipguard.store.db import Store
from sipguard.store.sync import sync_now


async def run_cli(config_file: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sipguard", *args, "-c", str(config_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "SIPGUARD_CONFIG"},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_write_reaches_a_serving_index_before_the_cli_returns(
    tmp_path: Path, config_file: Path
) -> None:
    """A "server" task holds an Index and only refreshes when the socket asks it to."""
    store = await Store.open(tmp_path / "var" / "sipguard.db")
    index = await store.load_index()
    socket_path = tmp_path / "var" / "sipguard.db.ctl"
    syncs = 0

    async def on_sync() -> None:
        nonlocal syncs
        syncs += 1
        await sync_now(store, index)

    server = await serve_control(socket_path, on_sync)
    try:
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
        code, _, err = await run_cli(config_file, "dnc", "add", "(202) 555-0143",
                                     "--list", "internal")
        assert code == 0, err
        assert syncs == 1  # the CLI waited for the server's answer
        (hit,) = index.memberships("+12025550143")
        assert hit.list_name == "internal" and hit.listed_at is not None

        code, _, err = await run_cli(config_file, "consent", "grant", "2025550143",
                                     "--campaign", "default", "--type", "express-written",
                                     "--source", "form 1")
        assert code == 0, err
        assert [c.source for c in index.consents("+12025550143")] == ["form 1"]

        code, _, err = await run_cli(config_file, "consent", "revoke", "2025550143",
                                     "--source", "phone")
        assert code == 0, err
        (consent,) = index.consents("+12025550143")
        assert consent.revoked_at is not None and consent.revoke_source == "phone"
    finally:
        server.close()
        await server.wait_closed()
        remove_control(socket_path)
        await store.close()


async def test_no_server_listening_is_fine(tmp_path: Path) -> None:
    assert await notify_server(tmp_path / "nothing.ctl", 1.0) is False
    stale = tmp_path / "stale.ctl"
    server = await serve_control(stale, _noop)
    server.close()
    await server.wait_closed()  # the file stays behind, like after a crash
    assert await notify_server(stale, 1.0) is False
    server = await serve_control(stale, _noop)  # a new server replaces the stale file
    try:
        assert await notify_server(stale, 1.0) is True
        with pytest.raises(StoreError, match="already listens"):
            await serve_control(stale, _noop)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_failing_sync_is_reported_to_the_client(tmp_path: Path) -> None:
    async def broken() -> None:
        raise StoreError("disk full")

    path = tmp_path / "s.ctl"
    server = await serve_control(path, broken)
    try:
        with pytest.raises(StoreError, match="disk full"):
            await notify_server(path, 1.0)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_hung_server_times_out(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def hang() -> None:
        await release.wait()

    path = tmp_path / "h.ctl"
    server = await serve_control(path, hang)
    try:
        with pytest.raises(StoreError, match="did not confirm"):
            await notify_server(path, 0.2)
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def _noop() -> None:
    return None
