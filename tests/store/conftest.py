"""Fixtures for the store tests: real SQLite files under tmp_path, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sipguard.store.db import Store

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "var" / "sipguard.db")
    yield s
    await s.close()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A minimal config whose store lives under tmp_path."""
    path = tmp_path / "sipguard.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "var" / "sipguard.db"}"\n'
        '[policy]\ndefault_region = "US"\n'
    )
    return path


@pytest.fixture
def cli(config_file: Path, tmp_path: Path) -> Cli:
    """Run `python -m sipguard ARGS... -c CONFIG` and return the finished process."""

    def run(
        *args: str, config: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "sipguard", *args]
        if config:
            argv += ["-c", str(config_file)]
        env = {k: v for k, v in os.environ.items() if k != "SIPGUARD_CONFIG"}
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env,
            check=False,
        )

    return run
