"""Issue 2, test 2: the dialer cancels during ringing.

sipguard answers the CANCEL with 200 at once, sends its own CANCEL for the pending branch
(RFC 3261 §16.10, §9.1: one Via equal to the forwarded INVITE's top Via), relays the trunk's
487, ACKs the 487 hop-by-hop and absorbs the dialer's ACK. Nothing is left over: no
retransmitted 487 toward the dialer, no stray request toward the trunk, gateway still serving.
"""

from __future__ import annotations

import time

import pytest

from e2e.checks import (
    assert_all_succeeded,
    assert_each_call_got,
    assert_gateway_via,
    assert_hop_by_hop_ack,
    assert_invites_once,
    by_call,
    show,
    through_gateway,
)
from e2e.harness import options_ping

pytestmark = pytest.mark.e2e

CALLS = 12


@pytest.mark.parametrize("leg", ["udp", "tcp"])
def test_cancel_during_ringing(start_gateway, sipp, leg: str) -> None:
    # The trunk runs until stopped, so that it sees any stray message.
    gw, uac, uas = through_gateway(start_gateway, sipp, "uac_cancel.xml", "uas_cancel.xml", leg,
                                   CALLS)
    dialer = uac.wait(30)  # each call lingers 1 s after its ACK
    time.sleep(0.5)
    trunk = uas.stop()

    assert_all_succeeded(dialer, CALLS)
    assert (trunk.successful, trunk.failed) == (CALLS, 0), trunk.summary()
    forwarded = assert_invites_once(trunk, dialer, gw, leg)

    # The dialer: one 200 for its CANCEL, one 487 for its INVITE (no retransmission).
    assert_each_call_got(dialer, 200, "CANCEL")
    assert_each_call_got(dialer, 487, "INVITE")
    for resp in dialer.received("INVITE", 487):
        assert len(resp.vias) == 1, f"sipguard's Via left on the 487:\n{show(resp)}"

    # The trunk: exactly one CANCEL per call, sipguard's own, for the forwarded branch.
    cancels = by_call(trunk.received("CANCEL"))
    assert set(cancels) == set(forwarded)
    for call_id, group in cancels.items():
        assert len(group) == 1, f"{len(group)} CANCELs for {call_id}"
        cancel, invite = group[0], forwarded[call_id]
        assert_gateway_via(cancel, gw, leg)
        assert cancel.vias == invite.vias[:1], (
            f"CANCEL Via must be the forwarded INVITE's top Via only (§9.1):\n{show(cancel)}"
        )
        assert cancel.start_line.split()[1] == invite.start_line.split()[1], show(cancel)
        assert cancel.header("CSeq").split()[0] == invite.header("CSeq").split()[0]

    # 487 ACKed by sipguard itself; the dialer's ACK absorbed.
    assert_hop_by_hop_ack(trunk, forwarded, gw, leg)
    # Nothing else reached the trunk.
    methods = {m.method for m in trunk.received() if m.is_request}
    assert methods == {"INVITE", "CANCEL", "ACK"}, methods
    gw.assert_alive()
    assert options_ping(gw.host, gw.port) == 200
    assert not gw.problems(), gw.problems()[:5]  # clean traffic: no warnings
