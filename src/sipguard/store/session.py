"""What the management commands share: the store a config names, and telling a running
server about a write before the command returns."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sipguard.config import Config
from sipguard.errors import StoreError
from sipguard.store.control import control_path, notify_server
from sipguard.store.db import Store

T = TypeVar("T")
NOTIFY_TIMEOUT = 10.0  # a server reloading a big list may take a few seconds


def store_path(config: Config) -> Path:
    return config.resolve(config.store.path)


def socket_path(config: Config) -> Path:
    configured = config.store.control_socket
    return control_path(store_path(config), str(config.resolve(configured)) if configured else "")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@asynccontextmanager
async def open_store(config: Config) -> AsyncIterator[Store]:
    store = await Store.open(store_path(config))
    try:
        yield store
    finally:
        await store.close()


async def tell_server(config: Config) -> None:
    """After a commit: make a running server apply it; say on stderr if it could not."""
    try:
        await notify_server(socket_path(config), NOTIFY_TIMEOUT)
    except StoreError as exc:
        # The write is committed; only the live server lags (it polls too). Not a failure.
        print(f"warning: {exc}", file=sys.stderr)
