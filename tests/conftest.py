"""Shared fixtures. The end-to-end machinery itself lives in tests/e2e/harness.py."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

# pytest runs with --import-mode=importlib, which puts nothing on sys.path: make the
# helpers under tests/ (e.g. `e2e.harness`) importable by their package name.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from e2e.harness import SIPP, Gateway, Mosquitto, Sipp, Trunk, free_port

StartGateway = Callable[..., Gateway]
MakeSipp = Callable[..., Sipp]


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[StartGateway]:
    """`start_gateway(trunks, allow=..., sip={...}, overrides={...})` -> a running sipguard.

    It listens on a free UDP+TCP port of 127.0.0.1, answers OPTIONS before it is returned,
    keeps its store and logs under tmp_path, and is stopped (SIGTERM) after the test.
    """
    started: list[Gateway] = []

    def start(trunks: Sequence[Trunk], **kwargs: Any) -> Gateway:
        gw = Gateway(tmp_path / f"gateway{len(started)}", trunks, **kwargs)
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[MakeSipp]:
    """`sipp(scenario, name, remote=None, transport="u1", local_ip=..., port=0, args=[...])`.

    Returns a started SIPp (a UAS is started and bound before it is returned). Every SIPp
    still running at the end of the test is killed.
    """
    if not shutil.which(SIPP):
        pytest.skip("sipp is not installed (Debian/Ubuntu: apt-get install sip-tester)")
    made: list[Sipp] = []

    def make(scenario: str, name: str, **kwargs: Any) -> Sipp:
        runner = Sipp(scenario=scenario, workdir=tmp_path / "sipp", name=name, **kwargs)
        made.append(runner)
        runner.start()
        if runner.remote is None:
            runner.wait_listening()
        return runner

    yield make
    for runner in made:
        runner.kill()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto broker on a free port of 127.0.0.1 (`.url`, `.host`, `.port`)."""
    if not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto)")
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture
def unused_port() -> int:
    """A port free on both UDP and TCP at 127.0.0.1 (e.g. a trunk where nothing listens)."""
    return free_port()
