"""Issue 2, test 1: 500 basic calls through sipguard over UDP, then TCP (and mixed legs).

Dialer (SIPp UAC) -> sipguard -> trunk (SIPp UAS): INVITE/100/180/200/ACK/BYE/200. Every
call succeeds on both sides, and the trunk sees each INVITE exactly once with sipguard's Via
and Record-Route; in-dialog ACK and BYE come through sipguard by the route set.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from e2e.checks import (
    PROXY_ONLY,
    assert_all_succeeded,
    assert_gateway_via,
    assert_invites_once,
    assert_record_route,
    by_call,
    show,
    uac_args,
)
from e2e.harness import Trunk

pytestmark = pytest.mark.e2e

SIPP_TRANSPORT = {"udp": "u1", "tcp": "t1"}


@pytest.mark.parametrize(
    ("dialer_leg", "trunk_leg", "calls", "dialer_mode"),
    [
        ("udp", "udp", 500, "u1"),
        ("tcp", "tcp", 500, "t1"),
        ("tcp", "tcp", 50, "tn"),
        ("udp", "tcp", 50, "u1"),
        ("tcp", "udp", 50, "t1"),
    ],
    ids=["udp", "tcp", "tcp-conn-per-call", "udp-in-tcp-out", "tcp-in-udp-out"],
)
def test_basic_calls(start_gateway, sipp, dialer_leg, trunk_leg, calls, dialer_mode) -> None:
    uas = sipp("uas_basic.xml", "uas", transport=SIPP_TRANSPORT[trunk_leg],
               args=["-m", str(calls)])
    gw = start_gateway([Trunk(uas.port, trunk_leg)], overrides=PROXY_ONLY)
    uac = sipp("uac_basic.xml", "uac", remote=gw.address, transport=dialer_mode,
               args=uac_args(calls, rate=100, hold_ms=100))
    dialer = uac.wait(40)
    trunk = uas.wait(10)

    assert_all_succeeded(dialer, calls)
    assert_all_succeeded(trunk, calls)
    forwarded = assert_invites_once(trunk, dialer, gw, trunk_leg)
    assert len(forwarded) == calls

    # The dialer learnt the route set through sipguard, and sipguard's Via is gone again.
    for ok in dialer.received("INVITE", 200):
        assert_record_route(ok, gw)
        assert len(ok.vias) == 1, f"sipguard left its Via on a response:\n{show(ok)}"

    # In-dialog ACK and BYE: each exactly once at the trunk, via sipguard, without its Route.
    for method in ("ACK", "BYE"):
        got = by_call(trunk.received(method))
        assert set(got) == set(forwarded), f"{method} reached the trunk for {len(got)} calls"
        for call_id, msgs in got.items():
            assert len(msgs) == 1, f"{method} for {call_id} arrived {len(msgs)} times"
            m = msgs[0]
            assert_gateway_via(m, gw, trunk_leg)
            assert len(m.vias) == 2, show(m)
            assert not any(gw.address in r for r in m.header_all("Route")), (
                f"sipguard did not remove its own Route entry:\n{show(m)}"
            )
            assert m.start_line.split()[1].startswith("sip:trunk@"), (
                f"{method} not sent to the trunk's Contact:\n{show(m)}"
            )
    assert len(dialer.received("BYE", 200)) == calls
    gw.assert_alive()
    assert not gw.problems(), gw.problems()[:5]  # clean traffic: no warnings


@pytest.mark.skipif(not shutil.which("ss"), reason="needs ss (iproute2)")
def test_tcp_connection_to_the_trunk_is_reused(start_gateway, sipp) -> None:
    """RFC 3261 §18.1.1 / issue 2: one TCP connection to the trunk carries every call."""
    calls = 50
    uas = sipp("uas_basic.xml", "uas", transport="t1")
    gw = start_gateway([Trunk(uas.port, "tcp")], overrides=PROXY_ONLY)
    uac = sipp("uac_basic.xml", "uac", remote=gw.address, args=uac_args(calls, rate=50))
    dialer = uac.wait(30)
    assert_all_succeeded(dialer, calls)
    ss = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{uas.port} )"],
        capture_output=True, text=True, timeout=5, check=True,
    )
    connections = [line for line in ss.stdout.splitlines() if line.strip()]
    trunk = uas.stop()
    assert len(trunk.received("INVITE")) == calls
    assert len(connections) == 1, f"{len(connections)} TCP connections to the trunk:\n{ss.stdout}"
