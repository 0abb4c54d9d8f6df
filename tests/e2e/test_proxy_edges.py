"""Proxy rules from issue 2 beyond the numbered tests, with hand-made requests on a bare UDP
socket: every trunk down, Max-Forwards, malformed input, no open relay via Route, and the
one host sipguard calls itself."""

from __future__ import annotations

import time
import uuid

import pytest

from e2e.checks import PROXY_ONLY, show
from e2e.harness import (
    Gateway,
    Trunk,
    UdpPeer,
    free_port,
    options_ping,
    param,
    parse_sip,
    scenario_variant,
    via_sent_by,
)

pytestmark = pytest.mark.e2e


def _ids() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:12]
    return f"{tag}@edge", f"z9hG4bK{tag}"


def test_all_trunks_down_gives_a_final_error_not_a_hang(start_gateway, unused_port) -> None:
    gw = start_gateway([Trunk(unused_port, priority=1), Trunk(free_port(), priority=2)],
                       sip={"failover_timeout": 0.5}, overrides=PROXY_ONLY)
    with UdpPeer() as dialer:
        call_id, branch = _ids()
        started = time.monotonic()
        invite = dialer.invite((gw.host, gw.port), call_id=call_id, branch=branch)
        final, seen = dialer.wait_final(5.0)
        took = time.monotonic() - started
        assert final is not None, f"no final response within 5 s: {[m.start_line for m in seen]}"
        assert final.status in (408, 480, 500, 502, 503, 504), show(final)
        assert took < 3.0, f"{took:.1f}s for two dead trunks with failover_timeout 0.5"
        assert final.vias == [f"SIP/2.0/UDP {dialer.host}:{dialer.port};branch={branch};rport"
                              f";received={dialer.host}"] or final.vias[0].startswith(
            f"SIP/2.0/UDP {dialer.host}:{dialer.port};branch={branch}"), show(final)
        dialer.ack_for(invite, final, (gw.host, gw.port))
        # The ACK was absorbed: the final response is not retransmitted (T1 = 500 ms).
        again = [m for m in dialer.collect(1.2) if not m.is_request and m.status >= 200]
        assert not again, [m.start_line for m in again]


def test_max_forwards_zero_gets_483_and_nothing_forwarded(start_gateway, sipp) -> None:
    uas = sipp("uas_busy.xml", "uas")
    gw = start_gateway([Trunk(uas.port)], overrides=PROXY_ONLY)
    with UdpPeer() as dialer:
        call_id, branch = _ids()
        invite = dialer.invite((gw.host, gw.port), call_id=call_id, branch=branch,
                               max_forwards=0)
        final, _ = dialer.wait_final(3.0)
        assert final is not None and final.status == 483, final and show(final)
        dialer.ack_for(invite, final, (gw.host, gw.port))
    time.sleep(0.3)
    assert uas.stop().messages == []


def test_missing_max_forwards_is_inserted(start_gateway, sipp) -> None:
    uas = sipp("uas_busy.xml", "uas")
    gw = start_gateway([Trunk(uas.port)], overrides=PROXY_ONLY)
    with UdpPeer() as dialer:
        call_id, branch = _ids()
        invite = dialer.invite((gw.host, gw.port), call_id=call_id, branch=branch,
                               max_forwards=None)
        final, _ = dialer.wait_final(3.0)
        assert final is not None and final.status == 486, final and show(final)
        dialer.ack_for(invite, final, (gw.host, gw.port))
    time.sleep(0.3)
    (forwarded,) = uas.stop().received("INVITE")
    assert forwarded.header("Max-Forwards") == "70", show(forwarded)


def test_malformed_request_gets_400_and_gateway_keeps_serving(start_gateway, sipp) -> None:
    uas = sipp("uas_busy.xml", "uas")
    gw = start_gateway([Trunk(uas.port)], overrides=PROXY_ONLY)
    with UdpPeer() as dialer:
        call_id, branch = _ids()
        dialer.invite((gw.host, gw.port), call_id=call_id, branch=branch,
                      extra="CSeq: banana INVITE\n")  # a second, invalid CSeq
        final, _ = dialer.wait_final(3.0)
        assert final is not None and final.status == 400, final and show(final)
        dialer.send("\x00\xff garbage that is not SIP at all\n\n", (gw.host, gw.port))
        time.sleep(0.2)
    gw.assert_alive()
    assert options_ping(gw.host, gw.port) == 200
    time.sleep(0.2)
    assert uas.stop().messages == []


def test_route_header_cannot_make_sipguard_an_open_relay(start_gateway, sipp) -> None:
    trunk = sipp("uas_busy.xml", "trunk")
    victim = sipp("uas_busy.xml", "victim")  # reachable, but not a configured trunk
    gw = start_gateway([Trunk(trunk.port)], overrides=PROXY_ONLY)
    with UdpPeer() as dialer:
        call_id, branch = _ids()
        invite = dialer.invite(
            (gw.host, gw.port), call_id=call_id, branch=branch,
            ruri=f"sip:+12125551234@127.0.0.1:{victim.port}",  # the victim, not sipguard
            extra=f"Route: <sip:127.0.0.1:{victim.port};lr>\n",
        )
        final, _ = dialer.wait_final(5.0)
        assert final is not None, "no final response"
        dialer.ack_for(invite, final, (gw.host, gw.port))
    time.sleep(0.3)
    assert victim.stop().messages == [], "sipguard forwarded to a host that is not a trunk"
    trunk.stop()


def test_warning_and_via_name_the_same_host_without_advertised_host(start_gateway) -> None:
    """CONTRACT §4 `Warning: 399 <host>`: with sip.advertised_host empty, the host is the
    listen host, the one sipguard's Via names (it used to be the node name)."""
    with UdpPeer() as trunk, UdpPeer() as caller, UdpPeer() as blocked:
        gw = start_gateway([Trunk(trunk.port)], sip={"advertised_host": ""})
        call_id, branch = _ids()
        caller.invite((gw.host, gw.port), call_id=call_id, branch=branch, user="911")
        forwarded = trunk.recv(5.0)  # an emergency number: allowed whatever the hour
        assert forwarded is not None and forwarded.method == "INVITE", "nothing forwarded"
        via_host = via_sent_by(forwarded.vias[0]).rsplit(":", 1)[0]
        call_id, branch = _ids()
        invite = blocked.invite((gw.host, gw.port), call_id=call_id, branch=branch,
                                user="12")  # no phone number: blocked invalid-number
        final, _ = blocked.wait_final(5.0)
        assert final is not None and final.status == 603, "no 603 for an invalid number"
        blocked.ack_for(invite, final, (gw.host, gw.port))
    assert final.header("Warning") == f'399 {via_host} "invalid-number"', show(final)
    assert via_host == gw.host and via_host != gw.config["node"]["name"]


def test_no_response_reaches_the_dialer_without_its_via(start_gateway, sipp, tmp_path) -> None:
    """RFC 3261 §16.7 step 3: with sipguard's Via removed, a response that has no Via left
    was meant for sipguard and is not forwarded. Here a faulty trunk answers a cancelled
    INVITE with a 487 that carries only sipguard's Via."""
    faulty = scenario_variant("uas_cancel.xml", tmp_path, {
        'regexp="Via:.*Via:[^[:cntrl:]]*|Via:[^[:cntrl:]]*" search_in="msg"':
            'regexp=".*" search_in="hdr" header="Via:"',
        "      [$inv_via]": "      Via: [$inv_via]",
    })
    uas = sipp(faulty, "uas")
    gw = start_gateway([Trunk(uas.port)], overrides=PROXY_ONLY)
    with UdpPeer() as dialer:
        call_id, branch = _ids()
        invite = dialer.invite((gw.host, gw.port), call_id=call_id, branch=branch)
        ringing = [m for m in dialer.collect(1.0) if m.status == 180]
        assert ringing, "no 180 from the trunk"
        req = parse_sip(invite)
        dialer.send(
            f"CANCEL {req.start_line.split()[1]} SIP/2.0\nVia: {req.vias[0]}\n"
            f"Max-Forwards: 70\nFrom: {req.header('From')}\nTo: {req.header('To')}\n"
            f"Call-ID: {call_id}\nCSeq: 1 CANCEL\nContent-Length: 0\n\n",
            (gw.host, gw.port),
        )
        responses = [m for m in dialer.collect(2.0) if not m.is_request]
        for m in responses:
            if m.status >= 300 and m.method == "INVITE" and m.vias:
                dialer.ack_for(invite, m, (gw.host, gw.port))
    assert any(m.method == "CANCEL" and m.status == 200 for m in responses), (
        [m.start_line for m in responses]
    )
    for m in responses:
        assert m.vias and param(m.vias[0], "branch") == branch, (
            f"a response reached the dialer without its Via:\n{show(m)}"
        )
    uas.stop()


def test_trunk_pointing_back_at_sipguard_is_a_loop_not_a_storm(tmp_path) -> None:
    """A trunk misconfigured as sipguard's own address: the forwarded INVITE comes back with
    sipguard's Via (§16.3 step 4), is refused with 482, and the dialer gets that final
    response at once; sipguard keeps serving."""
    gw = Gateway(tmp_path / "gw", [], overrides=PROXY_ONLY)
    gw.config["trunks"] = [{"uri": Trunk(gw.port).uri, "priority": 1}]
    try:
        gw.start()
        with UdpPeer() as dialer:
            call_id, branch = _ids()
            invite = dialer.invite((gw.host, gw.port), call_id=call_id, branch=branch)
            final, _ = dialer.wait_final(3.0)
            assert final is not None and final.status in (482, 483), final and show(final)
            dialer.ack_for(invite, final, (gw.host, gw.port))
            assert not [m for m in dialer.collect(1.0) if m.status >= 200]
        gw.assert_alive()
        assert options_ping(gw.host, gw.port) == 200
        loops = [e for e in gw.events() if e.get("kind") == "loop"]
        assert 1 <= len(loops) <= 2, loops
    finally:
        gw.stop()


def test_cancel_for_an_unknown_transaction_gets_481(start_gateway, sipp) -> None:
    uas = sipp("uas_busy.xml", "uas")
    gw = start_gateway([Trunk(uas.port)], overrides=PROXY_ONLY)
    with UdpPeer() as dialer:
        call_id, branch = _ids()
        dialer.send(
            f"CANCEL sip:+12125551234@{gw.address} SIP/2.0\n"
            f"Via: SIP/2.0/UDP {dialer.host}:{dialer.port};branch={branch}\n"
            f"Max-Forwards: 70\nFrom: <sip:a@{dialer.host}>;tag=x1\n"
            f"To: <sip:+12125551234@{gw.address}>\nCall-ID: {call_id}\n"
            f"CSeq: 1 CANCEL\nContent-Length: 0\n\n",
            (gw.host, gw.port),
        )
        final, _ = dialer.wait_final(2.0)
        assert final is not None and final.status == 481, final and show(final)
    time.sleep(0.2)
    assert uas.stop().messages == []


@pytest.mark.parametrize("mode", ["keep", "trunk"])
def test_request_uri_toward_the_trunk(start_gateway, sipp, mode: str) -> None:
    """[[trunks]] request_uri: 'keep' forwards the dialer's Request-URI untouched; 'trunk' puts
    the trunk's host and port in it, keeping the user part."""
    uas = sipp("uas_busy.xml", "uas")
    gw = start_gateway([Trunk(uas.port, options=(("request_uri", mode),))], overrides=PROXY_ONLY)
    with UdpPeer() as dialer:
        call_id, branch = _ids()
        invite = dialer.invite((gw.host, gw.port), call_id=call_id, branch=branch)
        final, _ = dialer.wait_final(3.0)
        assert final is not None and final.status == 486, final and show(final)
        dialer.ack_for(invite, final, (gw.host, gw.port))
    time.sleep(0.3)
    (forwarded,) = uas.stop().received("INVITE")
    host = gw.address if mode == "keep" else f"127.0.0.1:{uas.port}"
    assert forwarded.start_line == f"INVITE sip:+12125551234@{host} SIP/2.0", show(forwarded)


def test_invite_retransmission_is_absorbed_and_the_last_provisional_resent(
    start_gateway, sipp
) -> None:
    """RFC 3261 §17.2.1 / §16: a retransmitted INVITE reaches the server transaction, which
    re-sends its latest provisional; nothing new goes to the trunk."""
    uas = sipp("uas_cancel.xml", "uas")  # rings, then waits for a CANCEL
    gw = start_gateway([Trunk(uas.port)], overrides=PROXY_ONLY)
    to = (gw.host, gw.port)
    with UdpPeer() as dialer:
        call_id, branch = _ids()
        invite = dialer.invite(to, call_id=call_id, branch=branch)
        first = dialer.collect(0.7)
        assert [m.status for m in first] == [100, 180], [m.start_line for m in first]
        dialer.send(invite, to)  # the same INVITE again, as a UDP retransmission
        again = dialer.collect(0.7)
        assert [m.status for m in again] == [180], [m.start_line for m in again]
        assert again[0].header("To") == first[1].header("To")
        req = parse_sip(invite)
        dialer.send(
            f"CANCEL {req.start_line.split()[1]} SIP/2.0\nVia: {req.vias[0]}\n"
            f"Max-Forwards: 70\nFrom: {req.header('From')}\nTo: {req.header('To')}\n"
            f"Call-ID: {call_id}\nCSeq: 1 CANCEL\nContent-Length: 0\n\n",
            to,
        )
        final, _ = dialer.wait_final(3.0)
        if final is not None and final.method == "CANCEL":
            final, _ = dialer.wait_final(3.0)
        assert final is not None and final.status == 487, final and show(final)
        dialer.ack_for(invite, final, to)
    time.sleep(0.3)
    trunk = uas.stop()
    assert len(trunk.received("INVITE")) == 1, "the retransmission was forwarded"
    assert (trunk.successful, trunk.failed) == (1, 0), trunk.summary()
