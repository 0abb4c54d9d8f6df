"""The backlog measure on real UDP sockets, and the gateway shedding under a real backlog.

The backlog is made as it happens in production: datagrams arrive while the reader is
busy (here: asleep, or its event loop blocked), so they wait in the kernel's queue.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import uvloop

from sipguard.app import Gateway
from sipguard.config import parse_config
from sipguard.overload import Started, Transition
from sipguard.sip.message import Request, Response
from sipguard.sip.parser import parse_message
from sipguard.sip.verdict import allow_all
from sipguard.transport.backlog import QueueProbe

HOST = "127.0.0.1"
FILLERS = 600  # OPTIONS queued in front of the new INVITE: ~20 reads of libuv's 32


def _socket(rcvbuf: int = 1 << 20) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((HOST, 0))
    sock.settimeout(5)
    return sock


def _wait_for_timestamps(probe: QueueProbe, receiver: socket.socket,
                         sender: socket.socket) -> None:
    """The probe turns receive timestamps on, but the first socket on a host to ask flips
    them on for the whole host through a deferred kernel work item (net_enable_timestamp):
    until it has run, a datagram carries no arrival time and seems not to have waited."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sender.sendto(b"x", receiver.getsockname())
        sender.sendto(b"x", receiver.getsockname())
        time.sleep(0.02)
        receiver.recv(2048)
        reading = probe.read(time.time())  # one datagram still queued: a delay is read
        receiver.recv(2048)
        if reading is not None and reading.delay >= 0.01:
            return
    raise AssertionError("receive timestamps never came on")


def test_the_probe_sees_datagrams_wait_and_the_queue_empty() -> None:
    receiver, sender = _socket(), _socket()
    probe = QueueProbe(receiver)
    _wait_for_timestamps(probe, receiver, sender)
    first = probe.read(time.time())
    assert first is not None and first.queued == 0 and first.delay == 0.0
    for _ in range(200):
        sender.sendto(b"x" * 900, receiver.getsockname())
    time.sleep(0.3)
    queued = probe.read(time.time())
    assert queued is not None and queued.queued >= 200 * 900 and queued.fill > 0
    for _ in range(32):  # what one libuv read round takes
        receiver.recv(2048)
    waited = probe.read(time.time())
    assert waited is not None and 0.3 <= waited.delay < 1.0, waited
    # the kernel gives back a UDP socket's memory lazily (udp_rmem_release: in steps of a
    # quarter of the buffer, or when its reader queue is empty): no drop after 32 reads
    assert waited.queued <= queued.queued
    for _ in range(168):
        receiver.recv(2048)
    drained = probe.read(time.time())
    assert drained is not None and drained.queued == 0 and drained.delay == 0.0
    receiver.close()
    sender.close()


def test_a_datagram_arriving_at_an_idle_socket_is_no_backlog() -> None:
    """The last datagram read arrived long ago; a new one waits, unread, as a sample is
    taken: that is no queue delay (a clean-clone CI run saw 1.5 s here and shed a call)."""
    receiver, sender = _socket(), _socket()
    probe = QueueProbe(receiver)
    _wait_for_timestamps(probe, receiver, sender)
    sender.sendto(b"x", receiver.getsockname())
    receiver.recv(2048)
    probe.read(time.time())  # a sample after the read, as the sampler takes every 10 ms
    time.sleep(0.3)
    sender.sendto(b"x", receiver.getsockname())
    time.sleep(0.01)
    reading = probe.read(time.time())
    assert reading is not None and reading.queued > 0 and reading.delay < 0.05, reading
    receiver.close()
    sender.close()


def test_the_probe_counts_kernel_drops() -> None:
    receiver, sender = _socket(rcvbuf=4096), _socket()
    probe = QueueProbe(receiver)
    for _ in range(200):
        sender.sendto(b"x" * 900, receiver.getsockname())
    reading = probe.read(time.time())
    assert reading is not None and reading.drops > 0 and reading.fill > 0.5
    receiver.close()
    sender.close()
    assert probe.read(time.time()) is None  # a closed socket: not measurable


# -- the gateway ---------------------------------------------------------------------------


def _msg(data: bytes) -> Request | Response:
    msg = parse_message(data)
    assert isinstance(msg, Request | Response)
    return msg


def _raw(msg: Request | Response, name: str) -> bytes:
    return b"".join(h.raw + b"\r\n" for h in msg.headers if h.name == name)


def _answer(request: Request, status: str, to_tag: str, contact: str) -> bytes:
    """The trunk's response: Via, Record-Route, From, Call-ID and CSeq copied (§8.2.6)."""
    to = _raw(request, "to").rstrip(b"\r\n")
    if b";tag=" not in to:
        to += f";tag={to_tag}".encode()
    return (
        f"SIP/2.0 {status}\r\n".encode() + _raw(request, "via") + _raw(request, "record-route")
        + _raw(request, "from") + to + b"\r\n" + _raw(request, "call-id") + _raw(request, "cseq")
        + f"Contact: <{contact}>\r\nContent-Length: 0\r\n\r\n".encode()
    )


def _invite(dport: int, gw_port: int, call: str) -> bytes:
    return (
        f"INVITE sip:+12125551234@{HOST}:{gw_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{dport};branch=z9hG4bK-{call}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:+13125557000@{HOST}>;tag=f-{call}\r\nTo: <sip:+12125551234@{HOST}>\r\n"
        f"Call-ID: {call}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:dialer@{HOST}:{dport}>\r\n"
        f"X-Campaign: renewals\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _options(dport: int, gw_port: int, i: int) -> bytes:
    return (
        f"OPTIONS sip:{HOST}:{gw_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{dport};branch=z9hG4bK-ka{i}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:ka@{HOST}>;tag=k\r\nTo: <sip:{HOST}>\r\n"
        f"Call-ID: ka{i}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


WAIT = 3.0  # seconds any expected message may take


async def _recv(sock: socket.socket, want: Any = None) -> Request | Response:
    """The next message on `sock` for which `want(msg)` holds (others are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = await loop.run_in_executor(None, lambda: sock.recv(65535))
        except TimeoutError:
            break
        msg = _msg(data)
        if want is None or want(msg):
            return msg
    raise AssertionError("nothing wanted arrived")


def _status(call: str, method: str, final: bool = True) -> Any:
    return lambda m: (isinstance(m, Response) and m.call_id == f"{call}@test"
                      and m.cseq[1] == method and (m.status >= 200 or not final))


async def _scenario() -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    dialer, trunk, filler = _socket(), _socket(), _socket(4 << 20)
    dport, tport = dialer.getsockname()[1], trunk.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        gw_port = probe.getsockname()[1]
    config = parse_config({
        "sip": {"listen": [f"udp:{HOST}:{gw_port}"], "advertised_host": HOST,
                "udp_buffer_bytes": 4 << 20},
        "trunks": [{"uri": f"sip:{HOST}:{tport};transport=udp"}],
        "overload": {"max_queue_delay": 0.1, "hold": 0.3, "sample_interval": 0.01},
    })
    gateway = Gateway(config, allow_all)
    await gateway.start()
    assert gateway.sampler is not None and gateway.guard is not None
    changes: list[Transition] = []
    gateway.sampler.on_transition = changes.append
    gw = (HOST, gw_port)
    out: dict[str, Any] = {"changes": changes, "guard": gateway.guard}
    try:
        # A call in progress: INVITE / 200 / ACK through sipguard.
        dialer.sendto(_invite(dport, gw_port, "a"), gw)
        fwd = await _recv(trunk, lambda m: isinstance(m, Request) and m.method == "INVITE")
        assert isinstance(fwd, Request)
        trunk.sendto(_answer(fwd, "200 OK", "t-a", f"sip:trunk@{HOST}:{tport}"), gw)
        ok = await _recv(dialer, _status("a", "INVITE"))
        route = _raw(ok, "record-route").replace(b"Record-Route", b"Route")
        in_dialog = (
            f"{{method}} sip:trunk@{HOST}:{tport} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{dport};branch=z9hG4bK-a-{{n}}\r\nMax-Forwards: 70\r\n"
        ).encode() + route + _raw(ok, "from") + _raw(ok, "to") + _raw(ok, "call-id")
        ack = in_dialog.replace(b"{method}", b"ACK").replace(b"{n}", b"ack")
        dialer.sendto(ack + b"CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n", gw)
        await _recv(trunk, lambda m: isinstance(m, Request) and m.method == "ACK")

        def stall() -> None:
            # While the loop is blocked: keep-alives, a NEW call, then the call in
            # progress hangs up; all of them wait in the kernel's queue.
            for i in range(FILLERS):
                filler.sendto(_options(filler.getsockname()[1], gw_port, i), gw)
            dialer.sendto(_invite(dport, gw_port, "b"), gw)
            bye = in_dialog.replace(b"{method}", b"BYE").replace(b"{n}", b"bye")
            dialer.sendto(bye + b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", gw)
            time.sleep(0.4)

        loop.call_soon(stall)
        await asyncio.sleep(0)
        out["new_call"] = await _recv(dialer, _status("b", "INVITE"))
        bye = await _recv(trunk, lambda m: isinstance(m, Request) and m.call_id == "a@test")
        out["trunk_saw"] = bye
        assert isinstance(bye, Request)
        trunk.sendto(_answer(bye, "200 OK", "t-a", f"sip:trunk@{HOST}:{tport}"), gw)
        out["bye_answer"] = await _recv(dialer, _status("a", "BYE"))
        # Recovery: once the backlog has drained for `hold`, a new call is placed again.
        await asyncio.sleep(1.5)
        out["overloaded_after"] = gateway.guard.overloaded
        dialer.sendto(_invite(dport, gw_port, "c"), gw)
        out["later"] = await _recv(trunk, lambda m: isinstance(m, Request)
                                   and m.method == "INVITE")
    finally:
        gateway.close()
        for s in (dialer, trunk, filler):
            s.close()
    return out


def test_a_backlog_sheds_the_new_call_and_the_call_in_progress_ends() -> None:
    out = uvloop.run(_scenario())
    started = out["changes"][0]
    assert isinstance(started, Started) and started.cause == "queue-delay"
    assert started.reading.delay >= 0.1 and started.reading.queued > 0
    new_call = out["new_call"]
    assert isinstance(new_call, Response) and new_call.status == 503, new_call
    assert new_call.get("retry-after") == "5"
    assert new_call.get("reason") == 'SIP;cause=503;text="overload"'
    # the in-dialog BYE was relayed (the new INVITE "b" never reached the trunk: the first
    # request of call "a" the trunk saw after the stall is the BYE) and its 200 came back
    assert isinstance(out["trunk_saw"], Request) and out["trunk_saw"].method == "BYE"
    assert out["bye_answer"].status == 200
    assert out["guard"].shed_total == 1
    assert not out["overloaded_after"]
    later = out["later"]
    assert isinstance(later, Request) and later.call_id == "c@test"
