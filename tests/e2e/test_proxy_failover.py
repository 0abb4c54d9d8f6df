"""Issue 2, test 5: the first trunk is down (nothing listening) or answers 503; the call
completes through the second. failover_timeout is 0.5 s so a silent trunk costs little."""

from __future__ import annotations

import contextlib
import socket

import pytest

from e2e.checks import (
    PROXY_ONLY,
    assert_all_succeeded,
    assert_hop_by_hop_ack,
    assert_invites_once,
    by_call,
    uac_args,
)
from e2e.harness import HOST, Trunk, parse_sip

pytestmark = pytest.mark.e2e

CALLS = 12


@pytest.mark.parametrize(
    ("first", "leg"),
    [("down", "udp"), ("down", "tcp"), ("503", "udp"), ("503", "tcp")],
    ids=["udp-nothing-listening", "tcp-connection-refused", "udp-503", "tcp-503"],
)
def test_failover_to_second_trunk(start_gateway, sipp, unused_port, first, leg) -> None:
    mode = {"udp": "u1", "tcp": "t1"}[leg]
    second = sipp("uas_basic.xml", "uas2", transport=mode, args=["-m", str(CALLS)])
    unavailable = None
    if first == "503":
        unavailable = sipp("uas_unavailable.xml", "uas1", transport=mode)
        first_port = unavailable.port
    else:
        first_port = unused_port
    gw = start_gateway(
        [Trunk(first_port, leg, priority=1), Trunk(second.port, leg, priority=2)],
        sip={"failover_timeout": 0.5},
        overrides=PROXY_ONLY,
    )
    uac = sipp("uac_basic.xml", "uac", remote=gw.address, args=uac_args(CALLS, rate=40))
    dialer = uac.wait(30)
    trunk2 = second.wait(10)

    assert_all_succeeded(dialer, CALLS)
    assert_all_succeeded(trunk2, CALLS)
    assert not dialer.received("INVITE", 503), "the first trunk's 503 leaked to the dialer"
    assert_invites_once(trunk2, dialer, gw, leg)
    if unavailable is not None:
        trunk1 = unavailable.stop()
        assert (trunk1.successful, trunk1.failed) == (CALLS, 0), trunk1.summary()
        tried = assert_invites_once(trunk1, dialer, gw, leg)
        assert_hop_by_hop_ack(trunk1, tried, gw, leg)
        # The two branches of one call are distinct client transactions.
        at2 = {c: m[0] for c, m in by_call(trunk2.received("INVITE")).items()}
        for call_id, inv in tried.items():
            assert inv.vias[0] != at2[call_id].vias[0]
    # Silence costs at most ~failover_timeout per call, not timer B (32 s).
    assert dialer.elapsed < 15, f"calls took {dialer.elapsed:.1f}s: failover too slow"


def test_a_silent_trunk_is_skipped_after_it_failed(start_gateway, sipp) -> None:
    """Trunk 1 is silent (a socket that never answers): the calls placed before its silence
    was noticed each wait failover_timeout; the calls after go to trunk 2 at once (for
    trunk_retry seconds), and the outage is logged once."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((HOST, 0))
    calls = 10
    second = sipp("uas_basic.xml", "uas2", args=["-m", str(calls)])
    gw = start_gateway(
        [Trunk(silent.getsockname()[1], "udp", priority=1), Trunk(second.port, priority=2)],
        sip={"failover_timeout": 1.0}, overrides=PROXY_ONLY)
    uac = sipp("uac_basic.xml", "uac", remote=gw.address, args=uac_args(calls, rate=4))
    assert_all_succeeded(uac.wait(30), calls)
    silent.setblocking(False)
    reached = set()
    with contextlib.suppress(BlockingIOError):
        while True:
            reached.add(parse_sip(silent.recv(65535).decode()).call_id)
    silent.close()
    # placed at 0, 0.25, ..., 2.25 s; the first silence is noticed at 1.0 s
    assert 1 <= len(reached) <= 6, reached
    downs = [e for e in gw.events() if e.get("event") == "trunk.down"]
    assert len(downs) == 1 and "no response" in str(downs[0]["detail"])
    assert not [e for e in gw.events() if e.get("event") == "trunk.up"]
