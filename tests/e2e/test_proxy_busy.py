"""Issue 2, test 4: 486 Busy Here relayed to the dialer and ACKed hop-by-hop.

The trunk must receive exactly one ACK per call, sipguard's own (RFC 3261 §17.1.1.3: one
Via equal to the INVITE's top Via, same Request-URI and CSeq number); the dialer's ACK is
absorbed by sipguard's server transaction and never reaches the trunk; the dialer gets the
486 once (not retransmitted: its ACK matched).
"""

from __future__ import annotations

import time

import pytest

from e2e.checks import (
    assert_all_succeeded,
    assert_each_call_got,
    assert_hop_by_hop_ack,
    assert_invites_once,
    show,
    through_gateway,
)

pytestmark = pytest.mark.e2e

CALLS = 12


@pytest.mark.parametrize("leg", ["udp", "tcp"])
def test_486_relayed_and_acked_hop_by_hop(start_gateway, sipp, leg: str) -> None:
    # The trunk runs until stopped, so that it sees any stray message.
    gw, uac, uas = through_gateway(start_gateway, sipp, "uac_expect_486.xml", "uas_busy.xml",
                                   leg, CALLS)
    dialer = uac.wait(30)
    time.sleep(0.5)
    trunk = uas.stop()

    assert_all_succeeded(dialer, CALLS)
    assert (trunk.successful, trunk.failed) == (CALLS, 0), trunk.summary()
    assert_each_call_got(dialer, 486)
    for resp in dialer.received("INVITE", 486):
        assert len(resp.vias) == 1, f"sipguard's Via left on the 486:\n{show(resp)}"
        assert resp.start_line == "SIP/2.0 486 Busy Here"
    forwarded = assert_invites_once(trunk, dialer, gw, leg)
    assert_hop_by_hop_ack(trunk, forwarded, gw, leg)
    if leg == "udp":
        # sipguard's ACK arrived before the trunk's first retransmission (T1 = 500 ms).
        assert len(trunk.sent("INVITE", 486)) == CALLS, "486 retransmitted: ACK late or lost"
    assert {m.method for m in trunk.received() if m.is_request} == {"INVITE", "ACK"}
    assert not gw.problems(), gw.problems()[:5]  # clean traffic: no warnings
