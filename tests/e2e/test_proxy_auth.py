"""Issue 2, test 3: the trunk challenges with 407; the dialer re-sends the INVITE with
Proxy-Authorization (same Call-ID, CSeq + 1) and the call connects.

sipguard relays the 407 (with the trunk's Proxy-Authenticate untouched), ACKs it hop-by-hop,
absorbs the dialer's ACK, and forwards the re-sent INVITE as a new transaction with the
credentials intact (the digest is verified here from what the trunk received).
"""

from __future__ import annotations

import pytest

from e2e.checks import (
    PROXY_ONLY,
    assert_all_succeeded,
    assert_each_call_got,
    assert_gateway_via,
    assert_record_route,
    by_call,
    show,
    uac_args,
)
from e2e.harness import Trunk, digest_ok, param

pytestmark = pytest.mark.e2e

CALLS = 12


def test_407_challenge_then_connect(start_gateway, sipp) -> None:
    uas = sipp("uas_auth.xml", "uas", args=["-m", str(CALLS)])
    gw = start_gateway([Trunk(uas.port, "udp")], overrides=PROXY_ONLY)
    uac = sipp("uac_auth.xml", "uac", remote=gw.address,
               args=[*uac_args(CALLS, rate=40), "-au", "dialer", "-ap", "secret"])
    dialer = uac.wait(30)
    trunk = uas.wait(10)

    assert_all_succeeded(dialer, CALLS)
    assert_all_succeeded(trunk, CALLS)
    assert_each_call_got(dialer, 407)

    challenges = {m.call_id: m for m in trunk.sent("INVITE", 407)}
    for relayed in dialer.received("INVITE", 407):
        original = challenges[relayed.call_id]
        assert relayed.header("Proxy-Authenticate") == original.header("Proxy-Authenticate"), (
            f"Proxy-Authenticate changed on the way:\n{show(relayed)}"
        )
        assert len(relayed.vias) == 1, show(relayed)

    invites = by_call(trunk.received("INVITE"))
    assert len(invites) == CALLS
    for call_id, (first, second, *rest) in invites.items():
        assert not rest, f"{call_id}: more than two INVITEs reached the trunk"
        assert first.header("CSeq") == "1 INVITE" and second.header("CSeq") == "2 INVITE"
        assert not first.header("Proxy-Authorization")
        assert digest_ok(second, "dialer", "secret"), (
            f"credentials did not arrive intact:\n{show(second)}"
        )
        b1 = assert_gateway_via(first, gw, "udp")
        b2 = assert_gateway_via(second, gw, "udp")
        assert b1 != b2, "the re-sent INVITE must be a new client transaction (new branch)"
        assert param(first.vias[1], "branch") != param(second.vias[1], "branch")
        assert_record_route(second, gw)
        # The re-sent INVITE is the same call: it carries the first decision (same id).
        tags = [param(m.header("X-Sipguard-Decision"), "id") for m in (first, second)]
        assert tags[0] and tags[0] == tags[1], tags

    # The 407 was ACKed by sipguard (one Via, first INVITE's branch); the 2xx ACK is
    # end-to-end (two Vias). Exactly one of each per call.
    acks = by_call(trunk.received("ACK"))
    for call_id, group in acks.items():
        first = invites[call_id][0]
        hop = [a for a in group if len(a.vias) == 1]
        e2e = [a for a in group if len(a.vias) == 2]
        assert len(hop) == 1 and len(e2e) == 1 and len(group) == 2, (
            f"{call_id}: ACKs at the trunk:\n" + "\n\n".join(show(a) for a in group)
        )
        assert hop[0].vias[0] == first.vias[0] and hop[0].header("CSeq") == "1 ACK"
        assert e2e[0].header("CSeq") == "2 ACK"
    assert len(acks) == CALLS
    assert not gw.problems(), gw.problems()[:5]  # clean traffic: no warnings
