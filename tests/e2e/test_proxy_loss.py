"""Issue 2, test 6: 10 % UDP loss on both the dialer and the trunk side (SIPp -lost 10).

sipguard's transactions must absorb the dialer's retransmissions (re-sending its last
response), retransmit toward the trunk itself (timers A/E), and relay 2xx retransmissions,
so that every call completes on both sides. Each call reaches the trunk as one client
transaction: every INVITE the trunk saw for a call carries the same sipguard branch.
"""

from __future__ import annotations

import pytest

from e2e.checks import PROXY_ONLY, assert_all_succeeded, assert_gateway_via, by_call, uac_args
from e2e.harness import Trunk

pytestmark = pytest.mark.e2e

CALLS = 100


def test_calls_complete_with_udp_loss(start_gateway, sipp) -> None:
    loss = ["-lost", "10"]
    uas = sipp("uas_lossy.xml", "uas", args=["-m", str(CALLS), *loss])
    # sipguard declares a trunk dead after failover_timeout of silence; at 10 % loss three
    # lost INVITEs in a row (0, 0.5, 1.5 s) happen once per ~1000 calls, so give the
    # retransmissions (timer A) time: this test is about them, not about failover.
    gw = start_gateway([Trunk(uas.port, "udp")], sip={"failover_timeout": 8.0},
                       overrides=PROXY_ONLY)
    uac = sipp("uac_basic.xml", "uac", remote=gw.address,
               args=[*uac_args(CALLS, rate=50, hold_ms=500), *loss])
    dialer = uac.wait(60)
    trunk = uas.wait(15)

    assert_all_succeeded(dialer, CALLS)
    assert_all_succeeded(trunk, CALLS)
    placed = {m.call_id for m in dialer.sent("INVITE")}
    # Every INVITE that arrived, including those SIPp then dropped to simulate loss.
    invites = by_call(trunk.received("INVITE", lost=True))
    assert set(invites) == placed
    for call_id, group in invites.items():
        branches = {assert_gateway_via(m, gw, "udp") for m in group}
        assert len(branches) == 1, (
            f"{call_id}: the trunk saw {len(branches)} INVITE transactions for one call "
            f"(dialer retransmissions forwarded as new requests?)"
        )
    # Loss really happened and was repaired by retransmissions on both sides.
    assert dialer.stat("Retransmissions") > 0 and trunk.stat("Retransmissions") > 0
    gw.assert_alive()
