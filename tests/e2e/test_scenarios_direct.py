"""The SIPp scenario pairs, UAC straight to UAS with no proxy: known-good before they judge
sipguard. Each also checks the one thing the proxy tests lean on in that scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.harness import HOST, digest_ok, param, scenario_variant

pytestmark = pytest.mark.e2e

CALLEE = "+12125551234"


def _uac_args(calls: int, rate: int = 50, hold_ms: int = 50) -> list[str]:
    return ["-s", CALLEE, "-m", str(calls), "-r", str(rate), "-d", str(hold_ms)]


def test_basic_udp_and_tcp(sipp) -> None:
    for transport in ("u1", "t1"):
        uas = sipp("uas_basic.xml", f"uas-{transport}", transport=transport, args=["-m", "20"])
        uac = sipp("uac_basic.xml", f"uac-{transport}", remote=f"{HOST}:{uas.port}",
                   transport=transport, args=_uac_args(20))
        client, server = uac.wait(20), uas.wait(5)
        assert (client.returncode, client.successful, client.failed) == (0, 20, 0), client.summary()
        assert (server.returncode, server.successful) == (0, 20), server.summary()
        assert len(server.received("INVITE")) == 20
        assert len(server.received("BYE")) == 20


def test_cancel_during_ringing(sipp) -> None:
    uas = sipp("uas_cancel.xml", "uas", args=["-m", "5"])
    uac = sipp("uac_cancel.xml", "uac", remote=f"{HOST}:{uas.port}", args=_uac_args(5, 10))
    client, server = uac.wait(20), uas.wait(5)
    assert (client.successful, client.failed) == (5, 0), client.summary()
    assert (server.successful, server.failed) == (5, 0), server.summary()
    for resp in client.received("INVITE", 487):
        invite = next(m for m in client.sent("INVITE") if m.call_id == resp.call_id)
        assert resp.vias == invite.vias
    assert len(client.received("INVITE", 487)) == 5


def test_proxy_auth_challenge(sipp) -> None:
    uas = sipp("uas_auth.xml", "uas", args=["-m", "5"])
    uac = sipp("uac_auth.xml", "uac", remote=f"{HOST}:{uas.port}",
               args=[*_uac_args(5, 10), "-au", "dialer", "-ap", "secret"])
    client, server = uac.wait(20), uas.wait(5)
    assert (client.successful, client.failed) == (5, 0), client.summary()
    invites = server.received("INVITE")
    assert len(invites) == 10
    authorized = [m for m in invites if m.header("Proxy-Authorization")]
    assert len(authorized) == 5
    assert all(digest_ok(m, "dialer", "secret") for m in authorized)
    assert not any(digest_ok(m, "dialer", "wrong") for m in authorized)
    assert len(server.sent("INVITE", 200)) == 5


@pytest.mark.parametrize("code", [486, 403])
def test_reject(sipp, tmp_path: Path, code: int) -> None:
    scenario = "uas_busy.xml"
    if code == 403:
        scenario = scenario_variant(scenario, tmp_path, {"486 Busy Here": "403 Forbidden"})
    uas = sipp(scenario, "uas", args=["-m", "5"])
    uac = sipp(f"uac_expect_{code}.xml", "uac", remote=f"{HOST}:{uas.port}",
               args=_uac_args(5, 10))
    client, server = uac.wait(20), uas.wait(5)
    assert (client.successful, client.failed) == (5, 0), client.summary()
    assert (server.successful, server.failed) == (5, 0), server.summary()
    acks = server.received("ACK")
    assert len(acks) == 5
    assert all((param(a.vias[0], "branch") or "").endswith("-inv") for a in acks)


def test_unavailable(sipp, tmp_path: Path) -> None:
    uac_503 = scenario_variant("uac_expect_486.xml", tmp_path, {'response="486"': 'response="503"'})
    uas = sipp("uas_unavailable.xml", "uas", args=["-m", "3"])
    uac = sipp(uac_503, "uac", remote=f"{HOST}:{uas.port}", args=_uac_args(3, 10))
    client, server = uac.wait(20), uas.wait(5)
    assert (client.successful, client.failed) == (3, 0), client.summary()
    assert len(server.received("ACK")) == 3


def test_lossy_uas(sipp) -> None:
    """uas_lossy.xml copes with its own 10 % loss when the peer retransmits as RFC 3261 says.

    (The UAC side of loss is exercised through sipguard in test_proxy_loss.py: two SIPps
    alone cannot recover every pattern, e.g. a BYE retransmitted after the UAS's linger.)
    """
    uas = sipp("uas_lossy.xml", "uas", args=["-m", "20", "-lost", "10"])
    uac = sipp("uac_basic.xml", "uac", remote=f"{HOST}:{uas.port}", args=_uac_args(20, 40, 300))
    client, server = uac.wait(45), uas.wait(15)
    assert (client.successful, client.failed) == (20, 0), client.summary()
    assert (server.successful, server.failed) == (20, 0), server.summary()
    assert server.stat("Retransmissions") > 0 or any(m.lost for m in server.messages)


def test_dialog_reinvite_and_callee_bye(sipp) -> None:
    uas = sipp("uas_dialog.xml", "uas", args=["-m", "5"])
    uac = sipp("uac_dialog.xml", "uac", remote=f"{HOST}:{uas.port}", args=_uac_args(5, 10))
    client, server = uac.wait(20), uas.wait(5)
    assert (client.successful, client.failed) == (5, 0), client.summary()
    assert (server.successful, server.failed) == (5, 0), server.summary()
    byes = client.received("BYE")
    assert len(byes) == 5
    for bye in byes:
        assert param(bye.header("To"), "tag") and param(bye.header("From"), "tag")
        assert bye.start_line.startswith("BYE sip:dialer@")


def test_prack(sipp) -> None:
    uas = sipp("uas_prack.xml", "uas", args=["-m", "5"])
    uac = sipp("uac_prack.xml", "uac", remote=f"{HOST}:{uas.port}", args=_uac_args(5, 10))
    client, server = uac.wait(20), uas.wait(5)
    assert (client.successful, client.failed) == (5, 0), client.summary()
    assert (server.successful, server.failed) == (5, 0), server.summary()
    assert len(server.received("PRACK")) == 5
