"""Issue 2, test 8: a real SIP stack on both sides. One pjsua2 account is the dialer (its
outbound proxy is sipguard), another is the trunk; the call confirms and hangs up cleanly.

Each pjsua2 peer runs in its own process (tests/e2e/pjsua_peer.py) with hard deadlines.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.checks import CALLEE, PROXY_ONLY
from e2e.harness import Trunk, free_port, stop_process

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(importlib.util.find_spec("pjsua2") is None,
                       reason="pjsua2 is not installed (pip install pjsua2-python)"),
]

PEER = Path(__file__).with_name("pjsua_peer.py")


def _peer(role: str, port: int, workdir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(PEER), role, "--port", str(port),
         "--media-port", str(free_port(span=12)), "--log", str(workdir / f"pjsua-{role}.log"),
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def _events(proc: subprocess.Popen[str], timeout: float) -> list[dict[str, Any]]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(proc, grace=2.0)
        out, _ = proc.communicate()
        pytest.fail(f"pjsua2 peer stuck past its deadline:\n{out}")
    events = []
    for line in out.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _wait_ready(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if '"ready"' in line:
            return
    stop_process(proc, grace=2.0)
    pytest.fail("pjsua2 trunk did not start")


def test_pjsua2_call_through_sipguard(start_gateway, tmp_path: Path) -> None:
    trunk_port = free_port()
    trunk = _peer("uas", trunk_port, tmp_path, "--deadline", "25")
    try:
        _wait_ready(trunk)
        gw = start_gateway([Trunk(trunk_port, "udp")], overrides=PROXY_ONLY)
        dialer = _peer(
            "uac", free_port(), tmp_path,
            "--proxy", f"sip:{gw.address};lr;transport=udp",
            "--target", f"sip:{CALLEE}@127.0.0.1:{trunk_port}",
            "--hold", "1.0", "--deadline", "20",
        )
        uac_events = _events(dialer, timeout=30)
        uas_events = _events(trunk, timeout=15)
    finally:
        stop_process(trunk, grace=2.0)
    log = (tmp_path / "pjsua-uac.log").read_text(errors="replace")[-4000:]

    uac_done = uac_events[-1] if uac_events else {}
    assert uac_done.get("event") == "done" and uac_done.get("ok"), (
        f"dialer: {uac_events}\n--- PJSIP log tail:\n{log}"
    )
    assert dialer.returncode == 0
    states = [e["state"] for e in uac_events if e["event"] == "state"]
    assert "CONFIRMED" in states and states[-1] == "DISCONNECTED", states
    # A clean hang-up: the BYE was answered 200 (PJSIP reports it as the last status).
    assert uac_done["last_status"] == [200], uac_done

    incoming = [e for e in uas_events if e["event"] == "incoming"]
    assert len(incoming) == 1, uas_events
    assert incoming[0]["request"].startswith(f"INVITE sip:{CALLEE}@")
    uas_done = uas_events[-1]
    assert uas_done["event"] == "done" and uas_done["ok"], uas_events
    assert trunk.returncode == 0
    # The same call on both sides (a proxy keeps the Call-ID).
    uac_ids = {e["call_id"] for e in uac_events if e["event"] == "state"}
    assert incoming[0]["call_id"] in uac_ids
    gw.assert_alive()
