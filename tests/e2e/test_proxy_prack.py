"""Reliable provisional responses (RFC 3262) through sipguard: the 183 with Require: 100rel
and RSeq is relayed, the dialer's PRACK (an in-dialog request of the early dialog) follows the
route set through sipguard to the trunk, and the call then connects and ends normally."""

from __future__ import annotations

import pytest

from e2e.checks import (
    assert_all_succeeded,
    assert_gateway_via,
    assert_invites_once,
    assert_record_route,
    by_call,
    show,
    through_gateway,
)

pytestmark = pytest.mark.e2e

CALLS = 12


@pytest.mark.parametrize("leg", ["udp", "tcp"])
def test_prack_through_sipguard(start_gateway, sipp, leg: str) -> None:
    gw, uac, uas = through_gateway(start_gateway, sipp, "uac_prack.xml", "uas_prack.xml", leg,
                                   CALLS, uas_args=("-m", str(CALLS)))
    dialer = uac.wait(30)
    trunk = uas.wait(10)

    assert_all_succeeded(dialer, CALLS)
    assert_all_succeeded(trunk, CALLS)
    forwarded = assert_invites_once(trunk, dialer, gw, leg)
    assert all("100rel" in m.header("Supported") for m in forwarded.values())

    for resp in dialer.received("INVITE", 183):
        assert resp.header("Require") == "100rel" and resp.header("RSeq") == "1", show(resp)
        assert_record_route(resp, gw)
        assert len(resp.vias) == 1, show(resp)
    for ok in dialer.received("INVITE", 200):
        assert_record_route(ok, gw)

    pracks = by_call(trunk.received("PRACK"))
    assert set(pracks) == set(forwarded)
    for call_id, group in pracks.items():
        assert len(group) == 1, f"PRACK for {call_id} arrived {len(group)} times"
        prack = group[0]
        assert_gateway_via(prack, gw, leg)
        assert len(prack.vias) == 2, show(prack)
        assert prack.header("RAck") == "1 1 INVITE", show(prack)
        assert prack.start_line.split()[1].startswith("sip:trunk@"), show(prack)
        assert not any(gw.address in r for r in prack.header_all("Route")), show(prack)
    assert len(dialer.received("PRACK", 200)) == CALLS
    assert not gw.problems(), gw.problems()[:5]
