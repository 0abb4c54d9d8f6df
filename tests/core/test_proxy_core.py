"""The proxy core driven in memory: a dialer side and a trunk side, a fake clock, no sockets
(h11's ConnectionPair idea). Each test plays the peers' messages byte for byte."""

from __future__ import annotations

import ipaddress

import pytest

from sipguard.sip.message import Header, Request, Response
from sipguard.sip.parser import parse_message
from sipguard.sip.peer import Peer
from sipguard.sip.proxy import Problem, ProxyCore, ProxySettings, TransactionDone, TrunkState
from sipguard.sip.routing import Identity, Trunk, retarget
from sipguard.sip.uri import parse_trunk_uri
from sipguard.sip.verdict import AdmissionHook, Allow, Block, Verdict

ME = Identity("10.0.0.1", {"udp": 5060, "tcp": 5060}, frozenset({"10.0.0.1"}))
DIALER = Peer("udp", "10.1.0.5", 5070)
TRUNK1 = Peer("udp", "192.0.2.10", 5060)
TRUNK2 = Peer("tcp", "192.0.2.20", 5060)
OUTSIDER = Peer("udp", "203.0.113.9", 5060)


def trunks() -> tuple[Trunk, ...]:
    return (
        Trunk("t1", TRUNK1, parse_trunk_uri("t", "sip:192.0.2.10:5060")),
        Trunk("t2", TRUNK2, parse_trunk_uri("t", "sip:192.0.2.20:5060;transport=tcp")),
    )


def allowed(host: str) -> bool:
    return ipaddress.ip_address(host) in ipaddress.ip_network("10.1.0.0/16")


class Pair:
    """The core plus a fake clock; collects what it sends per peer."""

    def __init__(self, hook: object = None, admit: AdmissionHook | None = None,
                 **overrides: object) -> None:
        settings = ProxySettings(ME, trunks(), allowed, failover_timeout=2.0, **overrides)  # type: ignore[arg-type]
        self.verdicts: list[Request] = []
        self.verdict: Verdict = Allow((Header.make("X-Sipguard-Decision", "allow;id=1"),))

        def decide(req: Request, source: Peer, now: float) -> Verdict:
            self.verdicts.append(req)
            return self.verdict

        self.core = ProxyCore(settings, decide, admit)
        self.now = 100.0
        self.problems: list[Problem] = []
        self.trunk_states: list[TrunkState] = []

    def feed(self, source: Peer, text: str | bytes) -> dict[Peer, list[Request | Response]]:
        data = text if isinstance(text, bytes) else text.replace("\n", "\r\n").encode()
        self.core.receive(data, source, self.now)
        return self.collect()

    def advance(self, seconds: float) -> dict[Peer, list[Request | Response]]:
        target = self.now + seconds
        while (deadline := self.core.get_timer()) is not None and deadline <= target:
            self.now = deadline
            self.core.handle_timer(deadline)
        self.now = target
        return self.collect()

    def collect(self) -> dict[Peer, list[Request | Response]]:
        out: dict[Peer, list[Request | Response]] = {}
        for peer, data in self.core.datagrams_to_send():
            msg = parse_message(data, stream=peer.transport == "tcp")
            assert isinstance(msg, Request | Response)
            out.setdefault(peer, []).append(msg)
        events = self.core.events()
        self.problems.extend(e for e in events if isinstance(e, Problem))
        self.trunk_states.extend(e for e in events if isinstance(e, TrunkState))
        return out


def invite(branch: str = "z9hG4bK-d1", cseq: int = 1, extra: str = "") -> str:
    return (
        f"INVITE sip:+14155552671@10.0.0.1 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 10.1.0.5:5070;branch={branch}\n"
        f"Max-Forwards: 70\n"
        f"From: <sip:agent@10.1.0.5>;tag=f1\n"
        f"To: <sip:+14155552671@10.0.0.1>\n"
        f"Call-ID: call-1@10.1.0.5\n"
        f"CSeq: {cseq} INVITE\n"
        f"Contact: <sip:agent@10.1.0.5:5070>\n"
        f"{extra}"
        f"Content-Length: 0\n\n"
    )


def response_to(req: Request, status: int, reason: str, to_tag: str | None = "t9",
                extra: str = "") -> str:
    """A UAS response: Vias, From, To (+tag), Call-ID, CSeq copied, as a trunk would."""
    lines = [f"SIP/2.0 {status} {reason}"]
    for h in req.headers:
        if h.name in ("via", "record-route", "from", "call-id", "cseq"):
            lines.append(h.raw.decode())
        elif h.name == "to":
            lines.append(h.raw.decode() + (f";tag={to_tag}" if to_tag and status > 100 else ""))
    if status // 100 == 2:
        lines.append("Contact: <sip:uas@192.0.2.10:5060>")
    lines.append(extra.rstrip("\n")) if extra else None
    lines.append("Content-Length: 0")
    return "\n".join(lines) + "\n\n"


def only(out: dict[Peer, list[Request | Response]], peer: Peer) -> list[Request | Response]:
    assert set(out) <= {peer}, f"unexpected destinations {set(out)}"
    return out.get(peer, [])


def test_invite_is_trying_then_forwarded_with_via_rr_and_tag() -> None:
    pair = Pair()
    out = pair.feed(DIALER, invite())
    (trying,) = out[DIALER]
    assert isinstance(trying, Response) and trying.status == 100
    (fwd,) = out[TRUNK1]
    assert isinstance(fwd, Request) and fwd.method == "INVITE"
    top = fwd.top_via
    assert top.branch.startswith("z9hG4bKsg") and (top.host, top.port) == ("10.0.0.1", 5060)
    assert fwd.get("record-route", ) == "<sip:10.0.0.1:5060;lr;ftag=f1;sgt=0>"
    assert fwd.get("max-forwards") == "69"
    assert fwd.get("x-sipguard-decision") == "allow;id=1"
    assert fwd.uri == "sip:+14155552671@10.0.0.1"
    assert len(pair.verdicts) == 1


def test_untouched_headers_leave_byte_for_byte() -> None:
    pair = Pair()
    odd = "X-Odd  :   spaced ,  value\nSubject: folded\n  line\n"
    fwd = pair.feed(DIALER, invite(extra=odd))[TRUNK1][0]
    raw = fwd.serialize()
    assert b"X-Odd  :   spaced ,  value\r\n" in raw
    assert b"Subject: folded\r\n  line\r\n" in raw


def test_dialer_cannot_forge_the_decision_header() -> None:
    pair = Pair()
    fwd = pair.feed(DIALER, invite(extra="X-Sipguard-Decision: allow;id=forged\n"))[TRUNK1][0]
    assert fwd.values("x-sipguard-decision") == ["allow;id=1"]


def test_full_call_relays_responses_and_routes_in_dialog_requests() -> None:
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    ringing = only(pair.feed(TRUNK1, response_to(fwd, 180, "Ringing")), DIALER)
    assert [r.status for r in ringing if isinstance(r, Response)] == [180]
    assert len(ringing[0].values("via")) == 1  # our Via removed
    ok = only(pair.feed(TRUNK1, response_to(fwd, 200, "OK")), DIALER)[0]
    assert isinstance(ok, Response) and ok.status == 200
    assert ok.get("record-route") == "<sip:10.0.0.1:5060;lr;ftag=f1;sgt=0>"
    # The dialer's ACK and BYE follow the route set: Route: <our RR>, R-URI = trunk Contact.
    ack = (
        "ACK sip:uas@192.0.2.10:5060 SIP/2.0\n"
        "Via: SIP/2.0/UDP 10.1.0.5:5070;branch=z9hG4bK-ack1\n"
        "Route: <sip:10.0.0.1:5060;lr;ftag=f1;sgt=0>\nMax-Forwards: 70\n"
        "From: <sip:agent@10.1.0.5>;tag=f1\nTo: <sip:+14155552671@10.0.0.1>;tag=t9\n"
        "Call-ID: call-1@10.1.0.5\nCSeq: 1 ACK\nContent-Length: 0\n\n"
    )
    (fwd_ack,) = only(pair.feed(DIALER, ack), TRUNK1)
    assert isinstance(fwd_ack, Request) and fwd_ack.method == "ACK"
    assert not fwd_ack.has("route") and fwd_ack.top_via.branch.startswith("z9hG4bKsg")
    # A BYE from the trunk goes back to the dialer's Contact, routed by our RR (ftag differs).
    bye = (
        "BYE sip:agent@10.1.0.5:5070 SIP/2.0\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-bye1\n"
        "Route: <sip:10.0.0.1:5060;lr;ftag=f1;sgt=0>\nMax-Forwards: 70\n"
        "From: <sip:+14155552671@10.0.0.1>;tag=t9\nTo: <sip:agent@10.1.0.5>;tag=f1\n"
        "Call-ID: call-1@10.1.0.5\nCSeq: 1 BYE\nContent-Length: 0\n\n"
    )
    (fwd_bye,) = only(pair.feed(TRUNK1, bye), Peer("udp", "10.1.0.5", 5070))
    assert isinstance(fwd_bye, Request) and fwd_bye.method == "BYE"
    (bye_ok,) = only(pair.feed(DIALER, response_to(fwd_bye, 200, "OK", to_tag=None)), TRUNK1)
    assert isinstance(bye_ok, Response) and bye_ok.status == 200
    assert bye_ok.top_via.branch == "z9hG4bK-bye1"


def test_invite_retransmission_is_absorbed_and_last_response_resent() -> None:
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    pair.feed(TRUNK1, response_to(fwd, 180, "Ringing"))
    again = pair.feed(DIALER, invite())
    assert TRUNK1 not in again
    assert [m.status for m in again[DIALER] if isinstance(m, Response)] == [180]
    assert len(pair.verdicts) == 1


def test_client_retransmits_invite_on_timer_a_until_a_provisional() -> None:
    pair = Pair()
    pair.feed(DIALER, invite())
    sent = [len(pair.advance(t).get(TRUNK1, [])) for t in (0.5, 1.0)]
    assert sent == [1, 1]  # A doubles: +0.5 s, then +1.0 s


def test_busy_is_acked_hop_by_hop_and_dialer_ack_absorbed() -> None:
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    out = pair.feed(TRUNK1, response_to(fwd, 486, "Busy Here"))
    (ack,) = out[TRUNK1]
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.top_via.branch == fwd.top_via.branch and ack.get("to", ).endswith("tag=t9")
    (busy,) = out[DIALER]
    assert isinstance(busy, Response) and busy.status == 486
    dialer_ack = invite().replace("INVITE sip", "ACK sip", 1).replace("1 INVITE", "1 ACK")
    dialer_ack = dialer_ack.replace("To: <sip:+14155552671@10.0.0.1>",
                                    "To: <sip:+14155552671@10.0.0.1>;tag=t9")
    assert pair.feed(DIALER, dialer_ack) == {}
    # A retransmitted 486 is ACKed again and not relayed twice.
    out = pair.feed(TRUNK1, response_to(fwd, 486, "Busy Here"))
    assert list(out) == [TRUNK1] and out[TRUNK1][0].method == "ACK"  # type: ignore[union-attr]


def test_cancel_during_ringing() -> None:
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    pair.feed(TRUNK1, response_to(fwd, 180, "Ringing"))
    cancel = (
        "CANCEL sip:+14155552671@10.0.0.1 SIP/2.0\n"
        "Via: SIP/2.0/UDP 10.1.0.5:5070;branch=z9hG4bK-d1\nMax-Forwards: 70\n"
        "From: <sip:agent@10.1.0.5>;tag=f1\nTo: <sip:+14155552671@10.0.0.1>\n"
        "Call-ID: call-1@10.1.0.5\nCSeq: 1 CANCEL\nContent-Length: 0\n\n"
    )
    out = pair.feed(DIALER, cancel)
    assert [m.status for m in out[DIALER] if isinstance(m, Response)] == [200]
    (fwd_cancel,) = out[TRUNK1]
    assert isinstance(fwd_cancel, Request) and fwd_cancel.method == "CANCEL"
    assert fwd_cancel.top_via.branch == fwd.top_via.branch
    out = pair.feed(TRUNK1, response_to(fwd, 487, "Request Terminated"))
    assert [m.status for m in out[DIALER] if isinstance(m, Response)] == [487]
    assert [m.method for m in out[TRUNK1] if isinstance(m, Request)] == ["ACK"]


def test_cancel_before_any_provisional_waits_for_one() -> None:
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    cancel = invite().replace("INVITE sip", "CANCEL sip", 1).replace("1 INVITE", "1 CANCEL")
    out = pair.feed(DIALER, cancel)
    assert TRUNK1 not in out  # RFC 3261 §9.1
    out = pair.feed(TRUNK1, response_to(fwd, 100, "Trying"))
    assert [m.method for m in out[TRUNK1] if isinstance(m, Request)] == ["CANCEL"]


def test_unknown_cancel_gets_481() -> None:
    pair = Pair()
    cancel = invite().replace("INVITE sip", "CANCEL sip", 1).replace("1 INVITE", "1 CANCEL")
    (resp,) = only(pair.feed(DIALER, cancel), DIALER)
    assert isinstance(resp, Response) and resp.status == 481


def test_503_fails_over_and_is_never_relayed() -> None:
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    out = pair.feed(TRUNK1, response_to(fwd, 503, "Service Unavailable"))
    assert [m.method for m in out[TRUNK1] if isinstance(m, Request)] == ["ACK"]
    (second,) = out[TRUNK2]
    assert isinstance(second, Request) and second.method == "INVITE"
    assert second.top_via.transport == "TCP" and second.top_via.branch != fwd.top_via.branch
    assert DIALER not in out


def test_silent_trunk_fails_over_after_failover_timeout() -> None:
    pair = Pair()
    pair.feed(DIALER, invite())
    out = pair.advance(2.0)
    assert any(isinstance(m, Request) and m.method == "INVITE" for m in out.get(TRUNK2, []))


def test_all_trunks_failing_gives_the_dialer_a_final_error() -> None:
    pair = Pair()
    pair.feed(DIALER, invite())
    pair.advance(2.0)
    pair.core.transport_error(TRUNK2, pair.now)
    out = pair.collect()
    finals = [m.status for m in out.get(DIALER, []) if isinstance(m, Response)]
    assert finals == [503]


def test_a_transport_error_concerns_only_its_peers_transactions() -> None:
    """A call ringing on trunk 1 is untouched by trunk 2's transport error, fails over to
    trunk 2 on trunk 1's, and once timers run out nothing is left (by peer either)."""
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    pair.feed(TRUNK1, response_to(fwd, 180, "Ringing"))
    pair.core.transport_error(TRUNK2, pair.now)
    assert pair.collect() == {}
    pair.core.transport_error(TRUNK1, pair.now)
    out = pair.collect()
    assert [m.method for m in out[TRUNK2] if isinstance(m, Request)] == ["INVITE"]
    second = out[TRUNK2][0]
    assert isinstance(second, Request)
    pair.feed(TRUNK2, response_to(second, 486, "Busy Here"))
    pair.advance(40.0)
    assert pair.core.transaction_count == 0 and pair.core._client_by_peer == {}


def first_hop(pair: Pair, branch: str) -> Peer:
    """Where a new call's INVITE goes first (right away, no failover wait); trunk 2 is
    alive and answers 100 Trying at once."""
    out = pair.feed(DIALER, invite(branch=branch).replace("call-1@", f"{branch}@"))
    ((peer, fwd),) = [(p, m) for p, msgs in out.items() for m in msgs
                      if isinstance(m, Request) and m.method == "INVITE"]
    if peer == TRUNK2:
        pair.feed(TRUNK2, response_to(fwd, 100, "Trying", to_tag=None))
    return peer


def test_a_silent_trunk_is_tried_last_until_retry_then_first_again() -> None:
    """Trunk 1 is silent: the call that found out waits failover_timeout; the calls after it
    go to trunk 2 at once, for trunk_retry seconds; then trunk 1 is tried first again and
    its first answer ends the outage (one trunk.down, one trunk.up)."""
    pair = Pair(trunk_retry=30.0)
    assert first_hop(pair, "z9hG4bK-c1") == TRUNK1
    out = pair.advance(2.0)
    (again,) = [m for m in out[TRUNK2] if isinstance(m, Request) and m.method == "INVITE"]
    pair.feed(TRUNK2, response_to(again, 100, "Trying", to_tag=None))
    assert [(s.peer, s.up) for s in pair.trunk_states] == [(TRUNK1, False)]
    assert pair.core.trunks_up() == [(TRUNK1, False), (TRUNK2, True)]
    assert first_hop(pair, "z9hG4bK-c2") == TRUNK2
    pair.advance(29.0)
    assert first_hop(pair, "z9hG4bK-c3") == TRUNK2
    pair.advance(1.5)  # 30 s since it failed
    fwd = pair.feed(DIALER, invite(branch="z9hG4bK-c4").replace("call-1@", "c4@"))[TRUNK1][0]
    assert isinstance(fwd, Request)
    pair.feed(TRUNK1, response_to(fwd, 100, "Trying", to_tag=None))
    assert [(s.peer, s.up) for s in pair.trunk_states] == [(TRUNK1, False), (TRUNK1, True)]
    assert pair.core.trunks_up() == [(TRUNK1, True), (TRUNK2, True)]
    assert first_hop(pair, "z9hG4bK-c5") == TRUNK1


def test_a_transport_error_puts_the_trunk_last_and_retry_zero_never_does() -> None:
    pair = Pair()
    assert first_hop(pair, "z9hG4bK-t1") == TRUNK1
    pair.core.transport_error(TRUNK1, pair.now)
    pair.collect()
    assert first_hop(pair, "z9hG4bK-t2") == TRUNK2
    assert "transport error" in pair.trunk_states[0].detail
    fixed = Pair(trunk_retry=0.0)
    assert first_hop(fixed, "z9hG4bK-t1") == TRUNK1
    fixed.core.transport_error(TRUNK1, fixed.now)
    fixed.collect()
    assert first_hop(fixed, "z9hG4bK-t2") == TRUNK1 and fixed.trunk_states == []


def test_with_every_trunk_down_they_are_still_tried_in_order() -> None:
    pair = Pair()
    first_hop(pair, "z9hG4bK-a1")
    pair.core.transport_error(TRUNK1, pair.now)
    pair.core.transport_error(TRUNK2, pair.now)
    out = pair.collect()
    assert [m.status for m in out[DIALER] if isinstance(m, Response)] == [503]
    assert first_hop(pair, "z9hG4bK-a2") == TRUNK1


def test_last_503_becomes_500() -> None:
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    second = pair.feed(TRUNK1, response_to(fwd, 503, "Service Unavailable"))[TRUNK2][0]
    assert isinstance(second, Request)
    out = pair.feed(TRUNK2._replace(), response_to(second, 503, "Service Unavailable"))
    assert [m.status for m in out[DIALER] if isinstance(m, Response)] == [500]


def test_blocked_invite_never_reaches_a_trunk() -> None:
    pair = Pair()
    pair.verdict = Block(603, "Decline", (Header.make("Reason", 'SIP;cause=603;text="x"'),))
    out = pair.feed(DIALER, invite())
    assert set(out) == {DIALER}
    statuses = [m.status for m in out[DIALER] if isinstance(m, Response)]
    assert statuses == [100, 603]
    final = out[DIALER][1]
    assert final.get("reason") == 'SIP;cause=603;text="x"' and final.tag("to")


def test_outsider_gets_403_and_nothing_is_forwarded() -> None:
    pair = Pair()
    out = pair.feed(OUTSIDER, invite().replace("10.1.0.5:5070", "203.0.113.9:5060"))
    assert set(out) == {OUTSIDER}
    assert [m.status for m in out[OUTSIDER] if isinstance(m, Response)] == [403]
    assert pair.verdicts == []


def test_max_forwards_zero_gets_483_and_absent_becomes_70() -> None:
    pair = Pair()
    out = pair.feed(DIALER, invite().replace("Max-Forwards: 70", "Max-Forwards: 0"))
    assert [m.status for m in out[DIALER] if isinstance(m, Response)] == [483]
    pair = Pair()
    fwd = pair.feed(DIALER, invite().replace("Max-Forwards: 70\n", ""))[TRUNK1][0]
    assert fwd.get("max-forwards") == "70"


def test_request_carrying_our_via_is_a_loop() -> None:
    pair = Pair()
    looped = invite(extra="").replace(
        "Via: SIP/2.0/UDP 10.1.0.5:5070;branch=z9hG4bK-d1\n",
        "Via: SIP/2.0/UDP 10.1.0.5:5070;branch=z9hG4bK-d1\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsgabc.0\n",
    )
    out = pair.feed(DIALER, looped)
    assert [m.status for m in out[DIALER] if isinstance(m, Response)] == [482]


def test_options_to_sipguard_itself_is_answered() -> None:
    pair = Pair()
    options = (
        "OPTIONS sip:10.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-o1\n"
        "Max-Forwards: 70\nFrom: <sip:ka@192.0.2.10>;tag=o\nTo: <sip:10.0.0.1>\n"
        "Call-ID: ka1\nCSeq: 9 OPTIONS\nContent-Length: 0\n\n"
    )
    (resp,) = only(pair.feed(TRUNK1, options), TRUNK1)
    assert isinstance(resp, Response) and resp.status == 200 and resp.has("allow")


def test_malformed_request_gets_400_and_core_keeps_serving() -> None:
    pair = Pair()
    bad = invite().replace("CSeq: 1 INVITE", "CSeq: 1 BYE")
    (resp,) = only(pair.feed(DIALER, bad), DIALER)
    assert isinstance(resp, Response) and resp.status == 400
    assert pair.feed(DIALER, b"\x00garbage\r\n\r\n") == {}
    assert TRUNK1 in pair.feed(DIALER, invite(branch="z9hG4bK-d2"))


def test_responses_from_unknown_sources_are_dropped() -> None:
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    assert pair.feed(OUTSIDER, response_to(fwd, 200, "OK")) == {}
    assert any(p.kind == "dropped" for p in pair.problems)


def test_in_dialog_request_to_a_foreign_address_is_refused() -> None:
    pair = Pair()
    bye = (
        "BYE sip:victim@198.51.100.7 SIP/2.0\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-bye9\nMax-Forwards: 70\n"
        "From: <sip:x@192.0.2.10>;tag=a\nTo: <sip:y@10.0.0.1>;tag=b\n"
        "Call-ID: c9\nCSeq: 2 BYE\nContent-Length: 0\n\n"
    )
    out = pair.feed(TRUNK1, bye)
    assert set(out) == {TRUNK1}
    assert [m.status for m in out[TRUNK1] if isinstance(m, Response)] == [403]


def test_transactions_are_cleaned_up_after_a_call() -> None:
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    pair.feed(TRUNK1, response_to(fwd, 486, "Busy Here"))
    dialer_ack = invite().replace("INVITE sip", "ACK sip", 1).replace("1 INVITE", "1 ACK")
    pair.feed(DIALER, dialer_ack)
    pair.advance(64.0)
    assert pair.core.transaction_count == 0
    assert pair.core.get_timer() is None


@pytest.mark.parametrize(("status", "reason"), [(200, "OK"), (486, "Busy Here")])
def test_settled_transactions_hold_no_parsed_message(status: int, reason: str) -> None:
    """A final response settles both transactions: while they wait out their timers (up
    to 32 s) they keep bytes to resend, not the parsed messages (memory under load)."""
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    pair.feed(TRUNK1, response_to(fwd, 180, "Ringing"))
    assert all(tx.request is not None for tx in pair.core._server.values())
    out = pair.feed(TRUNK1, response_to(fwd, status, reason))
    assert [m.status for m in out[DIALER] if isinstance(m, Response)] == [status]
    server = list(pair.core._server.values())
    client = list(pair.core._client.values())
    assert len(server) == len(client) == 1
    assert server[0].request is None
    assert server[0].last_status == status and server[0].last_data is not None
    assert client[0].request is None and client[0].last_status == status
    assert all(ctx.request is None for ctx in pair.core._contexts.values())
    # A retransmitted final still gets through (2xx, RFC 6026) or is absorbed and ACKed.
    again = pair.feed(TRUNK1, response_to(fwd, status, reason))
    if status == 200:
        assert [m.status for m in again[DIALER] if isinstance(m, Response)] == [200]
    else:
        assert [m.method for m in again[TRUNK1] if isinstance(m, Request)] == ["ACK"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_call_changing_transport_is_double_record_routed(transport: str) -> None:
    pair = Pair()
    source = Peer(transport, "10.1.0.5", 5070)  # type: ignore[arg-type]
    text = invite().replace("SIP/2.0/UDP 10.1.0.5", f"SIP/2.0/{transport.upper()} 10.1.0.5")
    fwd = pair.feed(source, text)
    first = fwd[TRUNK1][0]
    assert isinstance(first, Request)
    second = pair.feed(TRUNK1, response_to(first, 503, "Service Unavailable"))[TRUNK2][0]
    rr = second.values("record-route")
    expected = 1 if transport == "tcp" else 2  # trunk 2 is TCP
    assert len(rr) == expected


def test_unknown_request_uri_scheme_gets_416() -> None:
    pair = Pair()
    text = invite().replace("INVITE sip:+14155552671@10.0.0.1 SIP/2.0",
                            "INVITE mailto:agent@example.com SIP/2.0")
    out = pair.feed(DIALER, text)
    assert set(out) == {DIALER}
    assert [m.status for m in out[DIALER] if isinstance(m, Response)] == [416]


def test_unsupported_proxy_require_gets_420_naming_it() -> None:
    pair = Pair()
    out = pair.feed(DIALER, invite(extra="Proxy-Require: foo, bar\n"))
    assert set(out) == {DIALER}
    (resp,) = out[DIALER]
    assert isinstance(resp, Response) and resp.status == 420
    assert resp.get("unsupported") == "foo"
    assert resp.values("unsupported") == ["foo", "bar"]


def test_unsupported_version_is_answered_505_even_with_an_unparseable_via() -> None:
    pair = Pair()
    text = invite().replace(" SIP/2.0\n", " SIP/7.0\n", 1).replace("SIP/2.0/UDP", "SIP/7.0/UDP")
    pair.core.receive(text.replace("\n", "\r\n").encode(), DIALER, pair.now)
    (sent,) = pair.core.datagrams_to_send()
    assert sent[0] == DIALER
    assert sent[1].startswith(b"SIP/2.0 505 ")
    assert b"Via: SIP/7.0/UDP 10.1.0.5:5070;branch=z9hG4bK-d1\r\n" in sent[1]


def test_top_via_is_stamped_with_received_and_rport() -> None:
    pair = Pair()
    text = invite().replace("Via: SIP/2.0/UDP 10.1.0.5:5070;branch=z9hG4bK-d1",
                            "Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-d1;rport")
    out = pair.feed(DIALER, text)
    (trying,) = out[DIALER]
    via = trying.top_via
    assert (via.param("received"), via.param("rport")) == ("10.1.0.5", "5070")
    fwd = out[TRUNK1][0]
    second = parse_message(fwd.serialize()).values("via")[1]
    assert "received=10.1.0.5" in second and "rport=5070" in second


def test_ack_of_a_stateless_rejection_is_absorbed() -> None:
    pair = Pair()
    out = pair.feed(DIALER, invite().replace("Max-Forwards: 70", "Max-Forwards: 0"))
    (resp,) = out[DIALER]
    assert isinstance(resp, Response) and resp.status == 483
    ack = invite().replace("INVITE sip", "ACK sip", 1).replace("1 INVITE", "1 ACK")
    ack = ack.replace("Max-Forwards: 70", "Max-Forwards: 0").replace(
        "To: <sip:+14155552671@10.0.0.1>", f"To: <sip:+14155552671@10.0.0.1>;tag={resp.tag('to')}")
    assert pair.feed(DIALER, ack) == {}


def test_silent_last_trunk_gives_the_dialer_408_after_failover_timeout() -> None:
    pair = Pair()
    pair.feed(DIALER, invite())
    pair.advance(2.0)  # trunk 1 silent -> trunk 2
    out = pair.advance(2.0)  # trunk 2 silent too
    assert [m.status for m in out.get(DIALER, []) if isinstance(m, Response)] == [408]


def test_a_response_left_without_via_gets_the_dialers_vias_back() -> None:
    pair = Pair()
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    text = response_to(fwd, 486, "Busy Here")
    lines = text.split("\n")
    dialer_via = next(i for i, line in enumerate(lines) if "10.1.0.5:5070" in line)
    del lines[dialer_via]  # a broken trunk echoes only sipguard's Via
    (busy,) = pair.feed(TRUNK1, "\n".join(lines))[DIALER]
    assert isinstance(busy, Response) and busy.status == 486
    assert busy.top_via.branch == "z9hG4bK-d1"


def test_request_uri_is_kept_unless_the_trunk_asks_for_its_host() -> None:
    pair = Pair()
    assert pair.feed(DIALER, invite())[TRUNK1][0].uri == "sip:+14155552671@10.0.0.1"
    rewriting = tuple(
        Trunk(t.name, t.peer, t.uri, rewrite_uri=True) for t in trunks()
    )
    settings = ProxySettings(ME, rewriting, allowed)
    core = ProxyCore(settings, lambda req, src, now: Allow())
    core.receive(invite().replace("\n", "\r\n").encode(), DIALER, 0.0)
    sent = dict(core.datagrams_to_send())
    fwd = parse_message(sent[TRUNK1])
    assert isinstance(fwd, Request) and fwd.uri == "sip:+14155552671@192.0.2.10:5060"


@pytest.mark.parametrize(("uri", "expected"), [
    ("sip:+14155552671@10.0.0.1:5060;user=phone", "sip:+14155552671@trunk.example:5080;user=phone"),
    ("sip:10.0.0.1", "sip:trunk.example:5080"),
    ("tel:+14155552671", "sip:+14155552671@trunk.example:5080;user=phone"),
])
def test_retarget(uri: str, expected: str) -> None:
    assert retarget(uri, parse_trunk_uri("t", "sip:trunk.example:5080")) == expected


def test_finished_transactions_are_reported_when_tracing() -> None:
    pair = Pair(trace=True)
    fwd = pair.feed(DIALER, invite())[TRUNK1][0]
    assert isinstance(fwd, Request)
    pair.feed(TRUNK1, response_to(fwd, 486, "Busy Here"))
    dialer_ack = invite().replace("INVITE sip", "ACK sip", 1).replace("1 INVITE", "1 ACK")
    pair.feed(DIALER, dialer_ack)
    pair.now += 10.0
    pair.core.handle_timer(pair.now)
    done = [e for e in pair.core.events() if isinstance(e, TransactionDone)]
    assert [(d.method, d.call_id, d.status, d.source) for d in done] == [
        ("INVITE", "call-1@10.1.0.5", 486, DIALER)
    ]


@pytest.mark.parametrize("our_via_first", [True, False])
def test_relayed_response_is_the_trunks_bytes_without_our_via(our_via_first: bool) -> None:
    pair = Pair()
    (fwd,) = pair.feed(DIALER, invite())[TRUNK1]
    assert isinstance(fwd, Request)
    text = response_to(fwd, 180, "Ringing", extra="X-Trunk: kept as sent").replace("\n", "\r\n")
    lines = text.split("\r\n")
    ours = lines.pop(1)
    assert ours.startswith("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsg")
    lines.insert(1 if our_via_first else 2, ours)
    sent = "\r\n".join(lines).encode()
    pair.core.receive(sent, TRUNK1, pair.now)
    (relayed,) = [data for peer, data in pair.core.datagrams_to_send() if peer == DIALER]
    assert relayed == sent.replace(ours.encode() + b"\r\n", b"")


def test_an_invite_refused_at_admission_is_answered_statelessly_and_consistently() -> None:
    asked: list[Request] = []
    refusal = Block(503, "Service Unavailable", (Header.make("Retry-After", "5"),))

    def admit(req: Request, source: Peer, now: float) -> Block | None:
        asked.append(req)
        return refusal

    pair = Pair(admit=admit)
    (answer,) = only(pair.feed(DIALER, invite()), DIALER)  # no 100 Trying: no transaction
    assert isinstance(answer, Response) and answer.status == 503
    assert answer.get("retry-after") == "5" and answer.tag("to")
    assert pair.core.transaction_count == 0 and not pair.verdicts and len(asked) == 1
    # A retransmission gets the same answer without asking again, the ACK stops here.
    (again,) = only(pair.feed(DIALER, invite()), DIALER)
    assert isinstance(again, Response) and again.serialize() == answer.serialize()
    assert len(asked) == 1
    ack = (f"ACK sip:+14155552671@10.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 10.1.0.5:5070;"
           f"branch=z9hG4bK-d1\nMax-Forwards: 70\nFrom: <sip:agent@10.1.0.5>;tag=f1\n"
           f"To: <sip:+14155552671@10.0.0.1>;tag={answer.tag('to')}\n"
           f"Call-ID: call-1@10.1.0.5\nCSeq: 1 ACK\nContent-Length: 0\n\n")
    assert pair.feed(DIALER, ack) == {}
    # Once Timer H would have ended a transaction, the refusal is forgotten.
    pair.advance(32.1)
    pair.feed(DIALER, invite(branch="z9hG4bK-d2"))
    only(pair.feed(DIALER, invite()), DIALER)
    assert len(asked) == 3


def test_admission_is_asked_only_for_new_calls_from_a_dialer() -> None:
    asked: list[Request] = []

    def admit(req: Request, source: Peer, now: float) -> Block | None:
        asked.append(req)
        return None

    pair = Pair(admit=admit)
    out = pair.feed(DIALER, invite())
    (fwd,) = out[TRUNK1]
    assert isinstance(fwd, Request) and len(asked) == 1 and len(pair.verdicts) == 1
    ok = pair.feed(TRUNK1, response_to(fwd, 200, "OK"))[DIALER][0]
    assert isinstance(ok, Response) and ok.status == 200
    reinvite = invite(branch="z9hG4bK-d3", cseq=2).replace(
        "To: <sip:+14155552671@10.0.0.1>", "To: <sip:+14155552671@10.0.0.1>;tag=t9")
    pair.feed(DIALER, reinvite)
    assert len(asked) == 1  # a re-INVITE is in a dialog: never refused at admission
