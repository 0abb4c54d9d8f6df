"""One `sipguard serve` per store: an advisory lock taken before the store is opened.

Two servers on one store would each keep the decisions chain's tip in memory and link
their rows to it, forking the chain an auditor walks (`sipguard audit verify`); each
would also hold decisions the other's record writer never sees. The control socket
refuses a second server too, but only once its SIP sockets are open (it may have taken
calls by then), and not at all when the two name different sockets. The management
commands (`dnc`, `consent`, ...) write beside a running server by design and take no lock.

The lock is `flock` on `<store>.serve.lock` (the store's real path, so that a symlink or a
relative path still finds it): the kernel drops it when the process ends, however it
ends, so a crashed server never leaves a stale lock behind. The file holds the holder's
pid, for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from sipguard.errors import ConfigError, StoreError

SUFFIX = ".serve.lock"


def lock_path(store: Path) -> Path:
    return Path(f"{store.resolve()}{SUFFIX}")


def hold(store: Path) -> Callable[[], None]:
    """Take the store's serve lock; returns what releases it. Held by another process: a
    ConfigError naming `store.path` (what the two configs share)."""
    path = lock_path(store)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create the lock {str(path)!r}: "
                         f"{exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        held = isinstance(exc, BlockingIOError)
        holder = _holder(fd) if held else ""
        os.close(fd)
        if held:
            raise ConfigError("store.path", f"another sipguard serve{holder} uses the store "
                              f"{str(store)!r}; two servers on one store would fork its "
                              f"decisions chain") from None
        raise StoreError(f"cannot lock {str(path)!r}: {exc.strerror or exc}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return lambda: os.close(fd)  # the file stays: removing it would race the next server


def _holder(fd: int) -> str:
    """' (pid N)' as the holder wrote it, or '' when it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f" (pid {pid})"
    return ""
