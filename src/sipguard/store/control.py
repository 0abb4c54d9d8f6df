"""The local control socket: how a CLI write reaches a running server before the CLI exits.

A Unix stream socket next to the store (`store.control_socket`, default
`<store.path>.ctl`, mode 0600: only the store's owner may poke the server). The protocol
is one line each way:

    client: SYNC\\n          server: OK\\n          (after on_sync() completed)
                             server: ERR <why>\\n   (on_sync() raised)

`notify_server` returns only once the server has applied the write to its index, so the
very next call is decided with it. No server listening is not an error: the write is in
the store and the next `serve` loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from sipguard.errors import StoreError

SYNC = b"SYNC\n"
OK = b"OK\n"
MAX_LINE = 1024


def control_path(store_path: str | os.PathLike[str], configured: str = "") -> Path:
    """Where the control socket lives: the configured path, else `<store>.ctl`."""
    return Path(configured) if configured else Path(f"{os.fspath(store_path)}.ctl")


async def serve_control(
    path: str | os.PathLike[str], on_sync: Callable[[], Awaitable[None]]
) -> asyncio.AbstractServer:
    """Listen on `path`; each SYNC request awaits `on_sync()` and then answers.

    Returns the started server: close it with `server.close(); await
    server.wait_closed()`, then `remove_control(path)`. A stale socket file left by a
    dead server is replaced; a live one raises StoreError (two servers on one store).
    """
    sock_path = _clear_stale(Path(path))
    # Serialise syncs: two CLI writes arriving together need one refresh each, in order.
    lock = asyncio.Lock()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if line != SYNC:
                writer.write(b"ERR unknown request\n")
            else:
                try:
                    async with lock:
                        await on_sync()
                    writer.write(OK)
                except Exception as exc:  # tell the client, keep the server serving
                    message = str(exc).replace("\n", " ")[:200]
                    writer.write(f"ERR {message}\n".encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    old_umask = os.umask(0o177)  # the socket file is born 0600
    try:
        server = await asyncio.start_unix_server(handle, path=str(sock_path), limit=MAX_LINE)
    finally:
        os.umask(old_umask)
    return server


def remove_control(path: str | os.PathLike[str]) -> None:
    """Remove the socket file after the server closed (a missing file is fine)."""
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()


async def notify_server(
    path: str | os.PathLike[str],
    timeout: float = 5.0,  # noqa: ASYNC109 - plain seconds suit the CLI; bounds both waits
) -> bool:
    """Ask a running server to sync with the store; wait for its answer.

    True: a server synced. False: no server listens (no socket, or a stale one).
    Raises StoreError when a server is there but fails or does not answer in `timeout`
    seconds: the write is committed, but the running server may not have it yet.
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=MAX_LINE), timeout
        )
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            return False
        raise StoreError(f"control socket {str(path)!r}: {exc.strerror or exc}") from None
    except TimeoutError:
        raise StoreError(
            f"the server behind {str(path)!r} did not accept within {timeout} s"
        ) from None
    try:
        writer.write(SYNC)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), timeout)
    except TimeoutError:
        raise StoreError(
            f"the running server did not confirm the change within {timeout} s "
            "(it is stored and will apply at the server's next poll)"
        ) from None
    except ConnectionError as exc:
        raise StoreError(f"control socket {str(path)!r}: {exc}") from None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if answer == OK:
        return True
    reason = answer.decode("utf-8", "replace").removeprefix("ERR ").strip() or "no answer"
    raise StoreError(f"the running server could not apply the change: {reason}")


def _clear_stale(path: Path) -> Path:
    """Make room for the socket: remove a dead server's file, refuse a live server's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (path.exists() or path.is_symlink()):
        return path
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)  # a local connect answers at once: accepted or refused
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return path
    finally:
        probe.close()
    raise StoreError(f"another sipguard server already listens on {str(path)!r}")
