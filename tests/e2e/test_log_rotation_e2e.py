"""logrotate moves the decision log away and sends SIGHUP: sipguard writes a new file at
the configured path, loses no line, and keeps serving (SIGHUP's default would end it)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from e2e.harness import Gateway, Sipp, Trunk


def events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def wait_for(path: Path, event: str, count: int, timeout: float = 10.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events(path) if e.get("event") == event]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} {event} not in {path} within {timeout} s")


def test_sighup_reopens_the_log_file_after_rotation(
    start_gateway: Callable[..., Gateway], sipp: Callable[..., Sipp], tmp_path: Path
) -> None:
    log = tmp_path / "logs" / "sipguard.log"
    uas = sipp("uas_basic.xml", "uas", args=["-m", "2"])
    gw = start_gateway([Trunk(uas.port)], overrides={
        "policy": {"mode": "monitor"}, "log": {"file": str(log)}})

    def call(name: str) -> None:
        uac = sipp("uac_basic.xml", name, remote=gw.address,
                   args=["-s", "+12125551234", "-m", "1"])
        assert uac.wait(30).successful == 1

    call("before")
    wait_for(log, "call.decision", 1)
    rotated = log.with_name("sipguard.log.1")
    log.rename(rotated)  # logrotate's default: move, then signal
    assert gw.proc is not None
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_for(log, "log.reopened", 1)
    call("after")
    wait_for(log, "call.decision", 1)
    assert [e["event"] for e in events(rotated)].count("call.decision") == 1
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    gw.assert_alive()
