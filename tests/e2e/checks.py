"""Assertions shared by the proxy end-to-end tests: what the trunk and the dialer saw on the
wire, read from SIPp's message logs. Each returns nothing and fails with the evidence."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from e2e.harness import Gateway, SipMessage, Sipp, SippResult, Trunk, param, via_sent_by

CALLEE = "+12125551234"

# The proxy tests judge SIP behaviour, not the policy: in monitor mode sipguard forwards every
# call (flagging what it would block), so calling windows, caps and lists cannot interfere.
PROXY_ONLY = {"policy": {"mode": "monitor"}}


def uac_args(calls: int, rate: int = 100, hold_ms: int = 100, limit: int = 200) -> list[str]:
    """SIPp UAC options: callee, call count, rate (calls/s), hold time, concurrent calls."""
    return ["-s", CALLEE, "-m", str(calls), "-r", str(rate), "-d", str(hold_ms),
            "-l", str(limit)]


SIPP_MODE = {"udp": "u1", "tcp": "t1"}  # one socket / one connection per side


def through_gateway(
    start_gateway: Any, sipp: Any, uac: str, uas: str, leg: str, calls: int,
    uas_args: tuple[str, ...] = (),
) -> tuple[Gateway, Sipp, Sipp]:
    """A SIPp trunk, a proxy-only sipguard in front of it and a SIPp dialer calling through
    it over `leg` at 40 calls/s; the caller waits for (or stops) the two SIPps."""
    mode = SIPP_MODE[leg]
    trunk = sipp(uas, "uas", transport=mode, args=list(uas_args))
    gw = start_gateway([Trunk(trunk.port, leg)], overrides=PROXY_ONLY)
    dialer = sipp(uac, "uac", remote=gw.address, transport=mode, args=uac_args(calls, rate=40))
    return gw, dialer, trunk


def by_call(messages: list[SipMessage]) -> dict[str, list[SipMessage]]:
    out: dict[str, list[SipMessage]] = defaultdict(list)
    for m in messages:
        out[m.call_id].append(m)
    return out


def is_initial(m: SipMessage) -> bool:
    """A dialog-creating request: its To has no tag yet."""
    return param(m.header("To"), "tag") is None


def show(m: SipMessage) -> str:
    lines = [m.start_line, *(f"{k}: {v}" for k, v in m.headers)]
    return "\n".join(lines)


def assert_all_succeeded(result: SippResult, calls: int) -> None:
    assert not result.timed_out, f"hard deadline hit\n{result.summary()}"
    assert (result.successful, result.failed) == (calls, 0), result.summary()


def assert_gateway_via(m: SipMessage, gw: Gateway, transport: str) -> str:
    """The top Via is sipguard's own (z9hG4bK branch, sent-by its address); returns the branch."""
    assert m.vias, f"no Via:\n{show(m)}"
    top = m.vias[0]
    branch = param(top, "branch") or ""
    assert branch.startswith("z9hG4bK"), f"top Via branch is not RFC 3261 magic:\n{show(m)}"
    assert via_sent_by(top) == gw.address, f"top Via is not sipguard's ({gw.address}):\n{show(m)}"
    assert top.split(None, 1)[0].upper() == f"SIP/2.0/{transport.upper()}", show(m)
    return branch


def assert_record_route(m: SipMessage, gw: Gateway) -> None:
    rr = m.header_all("Record-Route")
    mine = [r for r in rr if f"@{gw.address}" in r or f"sip:{gw.address}" in r]
    assert mine, f"no Record-Route of sipguard ({gw.address}):\n{show(m)}"
    assert all(";lr" in r for r in mine), f"sipguard's Record-Route lacks lr:\n{show(m)}"


def assert_invites_once(
    trunk: SippResult, dialer: SippResult, gw: Gateway, transport: str, *, record_route: bool = True
) -> dict[str, SipMessage]:
    """Every initial INVITE (no To tag) the dialer sent reached the trunk exactly once,
    forwarded by sipguard: its Via on top of the dialer's, Max-Forwards decremented,
    Record-Route added. Returns the forwarded INVITEs by Call-ID."""
    sent: dict[str, SipMessage] = {}
    for m in dialer.sent("INVITE"):
        if is_initial(m):
            sent.setdefault(m.call_id, m)
    # SIPp does not log a send that had to be buffered (e.g. the first write on each new
    # connection with -t tn): such calls are known from what the dialer received.
    placed = set(sent) | {m.call_id for m in dialer.received()}
    received = by_call([m for m in trunk.received("INVITE") if is_initial(m)])
    missing, extra = sorted(placed - set(received)), sorted(set(received) - placed)
    assert not missing and not extra, (
        f"trunk saw {len(received)} calls, dialer placed {len(placed)}; "
        f"missing {missing[:5]}, extra {extra[:5]}"
    )
    once = {}
    for call_id, invites in received.items():
        assert len(invites) == 1, f"INVITE for {call_id} reached the trunk {len(invites)} times"
        inv = invites[0]
        assert_gateway_via(inv, gw, transport)
        assert len(inv.vias) >= 2, f"the dialer's Via is missing:\n{show(inv)}"
        if call_id in sent:
            assert inv.vias[1:] == sent[call_id].vias, (
                f"the dialer's Via was not kept below sipguard's:\n{show(inv)}"
            )
        assert inv.header("Max-Forwards") == "69", show(inv)
        decision = inv.header("X-Sipguard-Decision")
        assert decision.split(";")[0] in ("allow", "flag"), f"no decision tag:\n{show(inv)}"
        if record_route:
            assert_record_route(inv, gw)
        once[call_id] = inv
    return once


def assert_hop_by_hop_ack(
    trunk: SippResult, forwarded: dict[str, SipMessage], gw: Gateway, transport: str
) -> None:
    """Each call's non-2xx final response was ACKed by sipguard itself, exactly once
    (RFC 3261 §17.1.1.3: one Via, equal to the INVITE's top Via; same CSeq number), and the
    dialer's own ACK never reached the trunk."""
    acks = by_call(trunk.received("ACK"))
    assert set(acks) == set(forwarded), (
        f"ACKs for {len(acks)} calls at the trunk, expected {len(forwarded)}"
    )
    for call_id, group in acks.items():
        assert len(group) == 1, (
            f"trunk got {len(group)} ACKs for {call_id}:\n" + "\n\n".join(show(a) for a in group)
        )
        ack, invite = group[0], forwarded[call_id]
        assert len(ack.vias) == 1, f"ACK is not sipguard's own (more than one Via):\n{show(ack)}"
        assert ack.vias[0] == invite.vias[0], (
            f"ACK Via differs from the INVITE's top Via:\n{show(ack)}\n--- INVITE:\n{show(invite)}"
        )
        assert_gateway_via(ack, gw, transport)
        assert ack.header("CSeq").split()[0] == invite.header("CSeq").split()[0], show(ack)
        assert ack.start_line.split()[1] == invite.start_line.split()[1], (
            f"ACK Request-URI differs from the INVITE's:\n{show(ack)}"
        )


def assert_each_call_got(dialer: SippResult, status: int, method: str = "INVITE") -> None:
    """Every call of the dialer received exactly one `status` response to `method` (a second
    one would be a retransmission: its ACK not absorbed, or a duplicate relayed)."""
    calls = {m.call_id for m in dialer.sent("INVITE")}
    got = by_call(dialer.received(method, status))
    assert set(got) == calls, f"{len(got)} of {len(calls)} calls got {status} for {method}"
    dup = {c: len(v) for c, v in got.items() if len(v) != 1}
    assert not dup, f"calls that got {status} more than once: {list(dup.items())[:5]}"
