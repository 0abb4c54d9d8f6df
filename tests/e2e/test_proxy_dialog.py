"""Beyond issue 2's list, the in-dialog routing it requires: a re-INVITE and an INFO from the
dialer and a BYE from the trunk (the callee hangs up) follow the route set through sipguard.

RFC 3261 §16.12 / §16.4: sipguard finds its own Record-Route entry as the top Route, removes
it, adds its Via, and sends the request to the Request-URI (the peer's Contact).
"""

from __future__ import annotations

import pytest

from e2e.checks import (
    assert_all_succeeded,
    assert_gateway_via,
    assert_invites_once,
    by_call,
    show,
    through_gateway,
)

pytestmark = pytest.mark.e2e

CALLS = 12


@pytest.mark.parametrize("leg", ["udp", "tcp"])
def test_reinvite_and_callee_hangup(start_gateway, sipp, leg: str) -> None:
    gw, uac, uas = through_gateway(start_gateway, sipp, "uac_dialog.xml", "uas_dialog.xml", leg,
                                   CALLS, uas_args=("-m", str(CALLS)))
    dialer = uac.wait(30)
    trunk = uas.wait(10)

    assert_all_succeeded(dialer, CALLS)
    assert_all_succeeded(trunk, CALLS)

    # Initial INVITEs: once each, sipguard's Via and Record-Route (CSeq 1); re-INVITEs
    # (CSeq 2): once each, in-dialog, via sipguard, its Route entry consumed.
    initial = [m for m in trunk.received("INVITE") if m.header("CSeq") == "1 INVITE"]
    reinvites = by_call([m for m in trunk.received("INVITE") if m.header("CSeq") == "2 INVITE"])
    assert len(initial) == CALLS and len(reinvites) == CALLS

    assert_invites_once(trunk, dialer, gw, leg)
    for call_id, (re,) in reinvites.items():
        assert_gateway_via(re, gw, leg)
        assert len(re.vias) == 2, show(re)
        assert re.start_line.split()[1].startswith("sip:trunk@"), show(re)
        assert not any(gw.address in r for r in re.header_all("Route")), show(re)
        assert call_id in {m.call_id for m in initial}

    # The INFO (another in-dialog request) likewise, and its 200 came back.
    infos = by_call(trunk.received("INFO"))
    assert set(infos) == set(reinvites) and all(len(g) == 1 for g in infos.values())
    for (info,) in infos.values():
        assert_gateway_via(info, gw, leg)
        assert info.body.startswith("Signal=5"), show(info)
    assert len(dialer.received("INFO", 200)) == CALLS

    # The callee's BYE reached the dialer once, through sipguard, at the dialer's Contact.
    byes = by_call(dialer.received("BYE"))
    assert len(byes) == CALLS
    for call_id, group in byes.items():
        assert len(group) == 1, f"BYE for {call_id} arrived {len(group)} times"
        bye = group[0]
        assert_gateway_via(bye, gw, leg)
        assert len(bye.vias) == 2 and f":{uas.port}" in bye.vias[1], show(bye)
        assert bye.start_line.split()[1].startswith("sip:dialer@"), show(bye)
        assert not any(gw.address in r for r in bye.header_all("Route")), (
            f"sipguard did not consume its Route entry:\n{show(bye)}"
        )
    # ...and its 200 went back to the trunk with only the trunk's Via.
    oks = trunk.received("BYE", 200)
    assert len(oks) == CALLS and all(len(m.vias) == 1 for m in oks)
    assert not gw.problems(), gw.problems()[:5]
