"""CONTRACT §4: while the store cannot be read, a running gateway answers new calls 503 with
Retry-After (`on_store_error = "reject"`) or forwards them flagged store-unavailable
(`"allow"`), and decides from the store again once it can be read. The store is broken
for real under the running server: its change log renamed away with sqlite3, as a bad
migration or a hand edit would, then put back."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from e2e.harness import Gateway, SipMessage, Trunk, UdpPeer

pytestmark = pytest.mark.e2e

LISTED = "+12125551234"  # on the internal list: 603 while the store is read


def rename(db: Path, old: str, new: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")


def call(dialer: UdpPeer, gw: Gateway) -> SipMessage | None:
    tag = uuid.uuid4().hex[:12]
    invite = dialer.invite((gw.host, gw.port), call_id=f"{tag}@store", branch=f"z9hG4bK{tag}",
                           user=LISTED)
    final, _seen = dialer.wait_final(5.0)
    if final is not None:
        dialer.ack_for(invite, final, (gw.host, gw.port))
    return final


def until(check: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("the gateway did not get there in time")


def dnc_add(gw: Gateway) -> None:
    done = subprocess.run([sys.executable, "-m", "sipguard", "dnc", "add", LISTED, "--list",
                           "internal", "--source", "test", "-c", str(gw.config_path)],
                          check=False, capture_output=True, text=True, env=gw.env, timeout=60)
    assert done.returncode == 0, done.stderr


def test_reject_answers_503_with_retry_after_until_the_store_is_back(start_gateway,
                                                                       unused_port) -> None:
    gw = start_gateway([Trunk(unused_port)], overrides={"policy": {"retry_after": 17}})
    dnc_add(gw)
    db = gw.workdir / "sipguard.db"
    with UdpPeer() as dialer:
        first = call(dialer, gw)
        assert first is not None and first.status == 603, first
        rename(db, "changes", "changes_away")
        answers: list[SipMessage] = []

        def refused() -> bool:
            final = call(dialer, gw)
            answers.append(final)  # type: ignore[arg-type]
            return final is not None and final.status == 503

        until(refused)
        unavailable = answers[-1]
        assert unavailable.header("Retry-After") == "17", unavailable
        assert "store-unavailable" in unavailable.header("Reason"), unavailable
        rename(db, "changes_away", "changes")
        until(lambda: (final := call(dialer, gw)) is not None and final.status == 603)
    assert gw.stop() == 0, gw.output()[-3000:]  # every line written
    reasons = [e.get("reason") for e in gw.events() if e.get("event") == "call.decision"]
    assert "store-unavailable" in reasons
    assert reasons[0] != "store-unavailable" and reasons[-1] != "store-unavailable", reasons
    assert any(e.get("event") == "store.unreadable" for e in gw.events())


def test_allow_forwards_the_call_flagged(start_gateway) -> None:
    with UdpPeer() as trunk, UdpPeer() as dialer:
        gw = start_gateway([Trunk(trunk.port)], overrides={"policy": {"on_store_error": "allow"}})
        dnc_add(gw)
        rename(gw.workdir / "sipguard.db", "changes", "changes_away")

        def forwarded() -> bool:
            tag = uuid.uuid4().hex[:12]
            dialer.invite((gw.host, gw.port), call_id=f"{tag}@store", branch=f"z9hG4bK{tag}",
                          user=LISTED)
            got = [m for m in trunk.collect(1.0) if m.is_request and m.method == "INVITE"]
            return bool(got) and "flag;reason=store-unavailable" in got[0].header(
                "X-Sipguard-Decision")

        until(forwarded)
