"""A stalled event loop must not turn a trunk that answered in time into a silent one.

Real UDP sockets on 127.0.0.1 and uvloop (libuv runs due timers before it polls sockets):
the trunk's 100 Trying arrives while the loop is blocked past failover_timeout; when the
loop wakes, the answer must be read before the failover timer is judged.
"""

from __future__ import annotations

import asyncio
import socket
import time

import uvloop

from core.helpers_udp import drain, responses
from sipguard.sip.parser import parse_message
from sipguard.sip.peer import Peer
from sipguard.sip.proxy import ProxyCore, ProxySettings
from sipguard.sip.routing import Identity, Trunk
from sipguard.sip.uri import parse_trunk_uri
from sipguard.sip.verdict import allow_all
from sipguard.transport.driver import CoreDriver
from sipguard.transport.udp import open_udp

BACKLOG = 100  # datagrams: more than libuv reads per poll round (32), fewer than fill the buffer


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.settimeout(5)
    return sock


async def _scenario() -> list[int]:
    loop = asyncio.get_running_loop()
    dialer, trunk1, trunk2 = _socket(), _socket(), _socket()
    probe = _socket()
    gw_port = probe.getsockname()[1]
    probe.close()
    trunks = tuple(
        Trunk(f"t{i}", Peer("udp", "127.0.0.1", s.getsockname()[1]),
              parse_trunk_uri("t", f"sip:127.0.0.1:{s.getsockname()[1]}"))
        for i, s in enumerate((trunk1, trunk2))
    )
    me = Identity("127.0.0.1", {"udp": gw_port}, frozenset({"127.0.0.1"}))
    settings = ProxySettings(me, trunks, lambda host: True, failover_timeout=0.2)
    driver = CoreDriver(ProxyCore(settings, allow_all), loop, lambda event: None)
    transport, endpoint = await open_udp(driver, "127.0.0.1", gw_port, 1 << 20)
    driver.senders["udp"] = endpoint.send
    dport = dialer.getsockname()[1]
    invite = (
        f"INVITE sip:+442079460123@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{dport};branch=z9hG4bK-stall\r\nMax-Forwards: 70\r\n"
        f"From: <sip:a@127.0.0.1>;tag=f\r\nTo: <sip:+442079460123@127.0.0.1>\r\n"
        f"Call-ID: stall@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    dialer.sendto(invite, ("127.0.0.1", gw_port))
    fwd_bytes = await loop.run_in_executor(None, lambda: trunk1.recvfrom(65535)[0])
    fwd = parse_message(fwd_bytes)
    trying = b"SIP/2.0 100 Trying\r\n" + b"".join(
        h.raw + b"\r\n" for h in fwd.headers
        if h.name in ("via", "from", "to", "call-id", "cseq")
    ) + b"Content-Length: 0\r\n\r\n"

    def options(i: int) -> bytes:
        return (
            f"OPTIONS sip:127.0.0.1:{gw_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{dport};branch=z9hG4bK-ka{i}\r\nMax-Forwards: 70\r\n"
            f"From: <sip:ka@127.0.0.1>;tag=k\r\nTo: <sip:127.0.0.1>\r\n"
            f"Call-ID: ka{i}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def stall() -> None:
        # A backlog builds up while the loop is blocked past failover_timeout: keep-alives
        # first, then trunk 1's 100 Trying, sent in time but queued behind them.
        for i in range(BACKLOG):
            dialer.sendto(options(i), ("127.0.0.1", gw_port))
        trunk1.sendto(trying, ("127.0.0.1", gw_port))
        time.sleep(0.5)

    loop.call_soon(stall)
    await asyncio.sleep(1.0)
    reached_trunk2 = len(drain(trunk2))
    statuses = [msg.status for msg in responses(dialer) if msg.cseq[1] == "INVITE"]
    transport.close()
    driver.close()
    for s in (dialer, trunk1, trunk2):
        s.close()
    return [reached_trunk2, *statuses]


def test_answer_read_before_a_late_failover_timer() -> None:
    reached_trunk2, *statuses = uvloop.run(_scenario())
    assert reached_trunk2 == 0, "the call failed over although trunk 1 had answered"
    assert statuses == [100], statuses
