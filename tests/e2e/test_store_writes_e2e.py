"""The store stops taking decision records while calls flow (a full disk, a lock held too
long): serving goes on, the operator is told, and no record is lost once it recovers."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from e2e.harness import Gateway, Sipp, Trunk

REFUSE = ("CREATE TRIGGER refuse BEFORE INSERT ON decisions "
          "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")


def wait_for_event(gw: Gateway, name: str, timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in gw.events() if e.get("event") == name]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {name} within {timeout} s:\n{gw.output()[-3000:]}")


def test_records_wait_while_the_store_refuses_them_and_are_written_after(
    start_gateway: Callable[..., Gateway], sipp: Callable[..., Sipp]
) -> None:
    uas = sipp("uas_basic.xml", "uas", args=["-m", "3"])
    gw = start_gateway([Trunk(uas.port)], overrides={"policy": {"mode": "monitor"}})
    db = gw.workdir / "sipguard.db"
    with sqlite3.connect(db) as outside:
        outside.execute(REFUSE)
    uac = sipp("uac_basic.xml", "uac", remote=gw.address,
               args=["-s", "+12125551234", "-m", "3", "-r", "10"])
    assert uac.wait(30).successful == 3  # calls are placed meanwhile
    failed = wait_for_event(gw, "store.write_failed")
    assert "disk says no" in str(failed["detail"]) and failed["level"] == "warning"
    with sqlite3.connect(db) as outside:
        assert outside.execute("SELECT count(*) FROM decisions").fetchone()[0] == 0
        outside.execute("DROP TRIGGER refuse")
    recovered = wait_for_event(gw, "store.write_recovered")
    assert recovered["written"] == 6 and recovered["dropped"] == 0  # 3 decisions, 3 attempts
    with sqlite3.connect(db) as outside:
        assert outside.execute("SELECT count(*) FROM decisions").fetchone()[0] == 3
    gw.assert_alive()
