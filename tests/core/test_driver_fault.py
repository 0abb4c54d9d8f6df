"""A fault in the core (a bug, or a compiled-build TypeError on an input nobody foresaw) must
cost the message that hit it, not the gateway: it is reported as a `sip.problem` of kind
`internal-error` naming the exception and what was being handled, and the next message is
served. Real UDP sockets on 127.0.0.1 and uvloop, as in production."""

from __future__ import annotations

import asyncio
import socket

import uvloop
from structlog.testing import capture_logs

from core.helpers_udp import drain, responses
from sipguard.app import log_core_event
from sipguard.sip.message import Request
from sipguard.sip.peer import Peer
from sipguard.sip.proxy import CoreEvent, Problem, ProxyCore, ProxySettings
from sipguard.sip.routing import Identity, Trunk
from sipguard.sip.uri import parse_trunk_uri
from sipguard.sip.verdict import Allow, Verdict
from sipguard.transport.driver import CoreDriver
from sipguard.transport.udp import open_udp


def _faulty_hook(request: Request, _source: Peer, _now: float) -> Verdict:
    if "+15550000000" in request.uri:
        raise RuntimeError("a bug in the decision")
    return Allow()


async def _scenario() -> tuple[list[CoreEvent], list[int], int]:
    loop = asyncio.get_running_loop()
    dialer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trunk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (dialer, trunk):
        s.bind(("127.0.0.1", 0))
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    gw_port = probe.getsockname()[1]
    probe.close()
    tport = trunk.getsockname()[1]
    trunks = (Trunk("t", Peer("udp", "127.0.0.1", tport),
                    parse_trunk_uri("t", f"sip:127.0.0.1:{tport}")),)
    me = Identity("127.0.0.1", {"udp": gw_port}, frozenset({"127.0.0.1"}))
    events: list[CoreEvent] = []
    driver = CoreDriver(ProxyCore(ProxySettings(me, trunks, lambda host: True), _faulty_hook),
                        loop, events.append)
    transport, endpoint = await open_udp(driver, "127.0.0.1", gw_port, 1 << 20)
    driver.senders["udp"] = endpoint.send
    dport = dialer.getsockname()[1]

    def invite(callee: str, n: int) -> bytes:
        return (
            f"INVITE sip:{callee}@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{dport};branch=z9hG4bK-fault{n}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:a@127.0.0.1>;tag=f{n}\r\nTo: <sip:{callee}@127.0.0.1>\r\n"
            f"Call-ID: fault{n}@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    dialer.sendto(invite("+15550000000", 1), ("127.0.0.1", gw_port))
    await asyncio.sleep(0.2)
    dialer.sendto(invite("+442079460123", 2), ("127.0.0.1", gw_port))
    await asyncio.sleep(0.3)
    forwarded = len(drain(trunk))
    statuses = [msg.status for msg in responses(dialer)]
    transport.close()
    driver.close()
    for s in (dialer, trunk):
        s.close()
    return events, statuses, forwarded


def test_a_fault_in_the_core_is_reported_and_the_next_call_goes_through() -> None:
    events, statuses, forwarded = uvloop.run(_scenario())
    faults = [e for e in events if isinstance(e, Problem) and e.kind == "internal-error"]
    assert len(faults) == 1, events
    detail = faults[0].detail
    assert detail.startswith("RuntimeError: a bug in the decision at "), detail
    assert "in _faulty_hook" in detail
    assert "handling 'INVITE sip:+15550000000@127.0.0.1 SIP/2.0'" in detail
    assert faults[0].peer is not None and faults[0].peer.host == "127.0.0.1"
    assert forwarded == 1, "the call after the fault did not reach the trunk"
    assert 100 in statuses, statuses  # the second INVITE's 100 Trying


def test_an_internal_error_is_logged_as_an_error_and_a_peers_fault_as_a_warning() -> None:
    peer = Peer("udp", "127.0.0.1", 5070)
    with capture_logs() as logs:
        log_core_event(Problem("internal-error", "RuntimeError: x", peer))
        log_core_event(Problem("malformed", "no empty line after the headers", peer))
    assert [(e["event"], e["log_level"], e["kind"]) for e in logs] == [
        ("sip.problem", "error", "internal-error"), ("sip.problem", "warning", "malformed")]
