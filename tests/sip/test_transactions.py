"""The four RFC 3261 §17 transaction machines (with RFC 6026's Accepted state).

Three layers: (1) every state × input of each machine, each state reached by a real path,
checked against the RFC's figures; (2) table tests of the important paths with a fake
clock, exact retransmission schedules included; (3) Hypothesis over random input
sequences, checking invariants after every step (terminated stays terminated, armed
timers match the state, no timer leaks, retransmission intervals double up to T2, the TU
hears of termination exactly once).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.sip.message import Request, Response, make_response
from sipguard.sip.parser import parse_message
from sipguard.sip.peer import Peer
from sipguard.sip.timers import TimerQueue, TimerValues
from sipguard.sip.transaction import (
    ClientTransaction,
    Event,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    State,
    Transaction,
    TransactionError,
    build_ack,
)

E, S = Event, State
UDP = Peer("udp", "192.0.2.10", 5060)
TCP = Peer("tcp", "192.0.2.10", 5060)
T = TimerValues()  # T1 0.5, T2 4, T4 5


def request(method: str) -> Request:
    data = (
        f"{method} sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtx1\r\n"
        "Route: <sip:p1.example.com;lr>\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:bob@example.com>\r\n"
        "From: <sip:alice@example.com>;tag=f1\r\n"
        "Call-ID: tx@example.com\r\n"
        f"CSeq: 5 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


INVITE = request("INVITE")
OPTIONS = request("OPTIONS")


def resp(req: Request, status: int) -> Response:
    return make_response(req, status, to_tag="t9" if status > 100 else None)


@dataclass
class FakeTU:
    """The transaction user: records what the transaction does, runs timers on a fake clock."""

    queue: TimerQueue = field(default_factory=TimerQueue)
    now: float = 0.0
    sent: list[tuple[float, bytes]] = field(default_factory=list)
    passed: list[int] = field(default_factory=list)
    failures: list[Event] = field(default_factory=list)
    terminated: int = 0

    def send(self, peer: Peer, data: bytes) -> None:
        self.sent.append((self.now, data))

    def schedule(self, deadline: float, callback: Callable[[float], None]) -> int:
        return self.queue.schedule(deadline, callback)

    def cancel_timer(self, handle: int) -> None:
        self.queue.cancel(handle)

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        self.passed.append(response.status)

    def on_failure(self, tx: ClientTransaction, event: Event, now: float) -> None:
        self.failures.append(event)

    def on_terminated(self, tx: Transaction, now: float) -> None:
        self.terminated += 1

    def advance(self, to: float) -> None:
        """Run every timer up to `to`, each at its own deadline."""
        while (deadline := self.queue.next_deadline()) is not None and deadline <= to:
            self.now = deadline
            self.queue.fire(deadline)
        self.now = max(self.now, to)

    def times(self, data: bytes) -> list[float]:
        return [t for t, d in self.sent if d == data]


Machine = type[Transaction]
MACHINES: list[Machine] = [
    InviteClientTransaction, NonInviteClientTransaction,
    InviteServerTransaction, NonInviteServerTransaction,
]


def make(machine: Machine, peer: Peer = UDP, timers: TimerValues = T) -> tuple[Transaction, FakeTU]:
    tu = FakeTU()
    req = INVITE if machine in (InviteClientTransaction, InviteServerTransaction) else OPTIONS
    tx = machine("z9hG4bKtx1", req, peer, tu, timers, 0.0)
    if isinstance(tx, ClientTransaction):
        tx.start(0.0)
    return tx, tu


def feed(tx: Transaction, tu: FakeTU, event: Event) -> None:
    """Deliver one input the way the proxy core would (with the message it carries)."""
    req = INVITE if tx.method == "INVITE" else OPTIONS  # tx.request is gone once settled
    status = {E.R1XX: 180, E.R2XX: 200, E.R3XX_6XX: 486,
              E.SEND_1XX: 180, E.SEND_2XX: 200, E.SEND_3XX_6XX: 486}.get(event)
    if status and isinstance(tx, ClientTransaction) and event in (E.R1XX, E.R2XX, E.R3XX_6XX):
        tx.receive(resp(req, status), tu.now)
    elif status and isinstance(tx, ServerTransaction) and event.name.startswith("SEND"):
        tx.respond(resp(req, status), tu.now)
    elif event is E.REQUEST:
        tx.handle(event, tu.now, req)
    else:
        tx.handle(event, tu.now)


# How to reach each state by real inputs (from the initial state).
PATHS: dict[Machine, dict[State, list[Event]]] = {
    InviteClientTransaction: {
        S.CALLING: [], S.PROCEEDING: [E.R1XX], S.COMPLETED: [E.R3XX_6XX],
        S.ACCEPTED: [E.R2XX], S.TERMINATED: [E.TRANSPORT_ERROR],
    },
    NonInviteClientTransaction: {
        S.TRYING: [], S.PROCEEDING: [E.R1XX], S.COMPLETED: [E.R2XX],
        S.TERMINATED: [E.TRANSPORT_ERROR],
    },
    InviteServerTransaction: {
        S.PROCEEDING: [], S.COMPLETED: [E.SEND_3XX_6XX], S.CONFIRMED: [E.SEND_3XX_6XX, E.ACK],
        S.ACCEPTED: [E.SEND_2XX], S.TERMINATED: [E.TRANSPORT_ERROR],
    },
    NonInviteServerTransaction: {
        S.TRYING: [], S.PROCEEDING: [E.SEND_1XX], S.COMPLETED: [E.SEND_2XX],
        S.TERMINATED: [E.SEND_2XX, E.J],
    },
}

# What RFC 3261 §17 (figures 5-8) and RFC 6026 §7.1-7.2 say each input does: the next state.
# Cells not listed must be rejected as programming errors (TransactionError).
N = [S.CALLING, S.TRYING, S.PROCEEDING, S.COMPLETED, S.CONFIRMED, S.ACCEPTED, S.TERMINATED]
RFC: dict[Machine, dict[tuple[State, Event], State]] = {
    InviteClientTransaction: {
        (S.CALLING, E.A): S.CALLING, (S.CALLING, E.B): S.TERMINATED,
        (S.CALLING, E.R1XX): S.PROCEEDING, (S.CALLING, E.R2XX): S.ACCEPTED,
        (S.CALLING, E.R3XX_6XX): S.COMPLETED, (S.CALLING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.PROCEEDING, E.R1XX): S.PROCEEDING, (S.PROCEEDING, E.R2XX): S.ACCEPTED,
        (S.PROCEEDING, E.R3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.R1XX): S.COMPLETED, (S.COMPLETED, E.R2XX): S.COMPLETED,
        (S.COMPLETED, E.R3XX_6XX): S.COMPLETED, (S.COMPLETED, E.D): S.TERMINATED,
        (S.COMPLETED, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.ACCEPTED, E.R1XX): S.ACCEPTED, (S.ACCEPTED, E.R2XX): S.ACCEPTED,
        (S.ACCEPTED, E.R3XX_6XX): S.ACCEPTED, (S.ACCEPTED, E.M): S.TERMINATED,
        (S.ACCEPTED, E.TRANSPORT_ERROR): S.ACCEPTED,
        # the proxy abandoning a branch (failover, CANCEL without answer, §16.7 / §9.1)
        (S.CALLING, E.GIVE_UP): S.TERMINATED, (S.PROCEEDING, E.GIVE_UP): S.TERMINATED,
        (S.COMPLETED, E.GIVE_UP): S.COMPLETED, (S.ACCEPTED, E.GIVE_UP): S.ACCEPTED,
    },
    NonInviteClientTransaction: {
        (S.TRYING, E.E): S.TRYING, (S.TRYING, E.F): S.TERMINATED,
        (S.TRYING, E.R1XX): S.PROCEEDING, (S.TRYING, E.R2XX): S.COMPLETED,
        (S.TRYING, E.R3XX_6XX): S.COMPLETED, (S.TRYING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.PROCEEDING, E.E): S.PROCEEDING, (S.PROCEEDING, E.F): S.TERMINATED,
        (S.PROCEEDING, E.R1XX): S.PROCEEDING, (S.PROCEEDING, E.R2XX): S.COMPLETED,
        (S.PROCEEDING, E.R3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.R1XX): S.COMPLETED, (S.COMPLETED, E.R2XX): S.COMPLETED,
        (S.COMPLETED, E.R3XX_6XX): S.COMPLETED, (S.COMPLETED, E.K): S.TERMINATED,
        (S.COMPLETED, E.TRANSPORT_ERROR): S.COMPLETED,
        (S.TRYING, E.GIVE_UP): S.TERMINATED, (S.PROCEEDING, E.GIVE_UP): S.TERMINATED,
        (S.COMPLETED, E.GIVE_UP): S.COMPLETED,
    },
    InviteServerTransaction: {
        (S.PROCEEDING, E.REQUEST): S.PROCEEDING, (S.PROCEEDING, E.ACK): S.PROCEEDING,
        (S.PROCEEDING, E.SEND_1XX): S.PROCEEDING, (S.PROCEEDING, E.SEND_2XX): S.ACCEPTED,
        (S.PROCEEDING, E.SEND_3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.REQUEST): S.COMPLETED, (S.COMPLETED, E.ACK): S.CONFIRMED,
        (S.COMPLETED, E.G): S.COMPLETED, (S.COMPLETED, E.H): S.TERMINATED,
        (S.COMPLETED, E.SEND_1XX): S.COMPLETED, (S.COMPLETED, E.SEND_2XX): S.COMPLETED,
        (S.COMPLETED, E.SEND_3XX_6XX): S.COMPLETED,
        (S.COMPLETED, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.CONFIRMED, E.REQUEST): S.CONFIRMED, (S.CONFIRMED, E.ACK): S.CONFIRMED,
        (S.CONFIRMED, E.I): S.TERMINATED, (S.CONFIRMED, E.SEND_1XX): S.CONFIRMED,
        (S.CONFIRMED, E.SEND_2XX): S.CONFIRMED, (S.CONFIRMED, E.SEND_3XX_6XX): S.CONFIRMED,
        (S.CONFIRMED, E.TRANSPORT_ERROR): S.CONFIRMED,
        (S.ACCEPTED, E.REQUEST): S.ACCEPTED, (S.ACCEPTED, E.ACK): S.ACCEPTED,
        (S.ACCEPTED, E.SEND_1XX): S.ACCEPTED, (S.ACCEPTED, E.SEND_2XX): S.ACCEPTED,
        (S.ACCEPTED, E.SEND_3XX_6XX): S.ACCEPTED, (S.ACCEPTED, E.L): S.TERMINATED,
        (S.ACCEPTED, E.TRANSPORT_ERROR): S.ACCEPTED,
    },
    NonInviteServerTransaction: {
        (S.TRYING, E.REQUEST): S.TRYING, (S.TRYING, E.SEND_1XX): S.PROCEEDING,
        (S.TRYING, E.SEND_2XX): S.COMPLETED, (S.TRYING, E.SEND_3XX_6XX): S.COMPLETED,
        (S.TRYING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.PROCEEDING, E.REQUEST): S.PROCEEDING, (S.PROCEEDING, E.SEND_1XX): S.PROCEEDING,
        (S.PROCEEDING, E.SEND_2XX): S.COMPLETED, (S.PROCEEDING, E.SEND_3XX_6XX): S.COMPLETED,
        (S.PROCEEDING, E.TRANSPORT_ERROR): S.TERMINATED,
        (S.COMPLETED, E.REQUEST): S.COMPLETED, (S.COMPLETED, E.J): S.TERMINATED,
        (S.COMPLETED, E.SEND_1XX): S.COMPLETED, (S.COMPLETED, E.SEND_2XX): S.COMPLETED,
        (S.COMPLETED, E.SEND_3XX_6XX): S.COMPLETED,
        (S.COMPLETED, E.TRANSPORT_ERROR): S.TERMINATED,
    },
}
NETWORK = {
    InviteClientTransaction: (E.R1XX, E.R2XX, E.R3XX_6XX, E.TRANSPORT_ERROR),
    NonInviteClientTransaction: (E.R1XX, E.R2XX, E.R3XX_6XX, E.TRANSPORT_ERROR),
    InviteServerTransaction: (E.REQUEST, E.ACK, E.TRANSPORT_ERROR),
    NonInviteServerTransaction: (E.REQUEST, E.TRANSPORT_ERROR),
}
# In Terminated every network input and TU action is absorbed (a late message must not crash).
for _machine, _cells in RFC.items():
    _inputs = NETWORK[_machine] + (
        (E.GIVE_UP,) if issubclass(_machine, ClientTransaction)
        else (E.SEND_1XX, E.SEND_2XX, E.SEND_3XX_6XX)
    )
    _cells.update({(S.TERMINATED, e): S.TERMINATED for e in _inputs})

CELLS = [
    (machine, state, event)
    for machine in MACHINES
    for state in PATHS[machine]
    for event in Event
]


def reach(machine: Machine, state: State, peer: Peer = UDP) -> tuple[Transaction, FakeTU]:
    tx, tu = make(machine, peer)
    for event in PATHS[machine][state]:
        feed(tx, tu, event)
    assert tx.state is state
    return tx, tu


@pytest.mark.parametrize(
    ("machine", "state", "event"), CELLS,
    ids=[f"{m.__name__}-{s.value}-{e.value}" for m, s, e in CELLS],
)
def test_every_state_and_input(machine: Machine, state: State, event: Event) -> None:
    tx, tu = reach(machine, state)
    expected = RFC[machine].get((state, event))
    assert machine.TABLE.get((state, event), (None, None))[1] == expected
    if expected is None:
        with pytest.raises(TransactionError):
            feed(tx, tu, event)
        assert tx.state is state
        return
    feed(tx, tu, event)
    assert tx.state is expected
    assert tu.terminated == (1 if expected is S.TERMINATED else 0)
    if expected is S.TERMINATED:
        assert tx.active_timers() == frozenset()
        assert len(tu.queue) == 0


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_network_inputs_never_raise(machine: Machine) -> None:
    """Whatever the peer sends, in whatever state, the machine has an answer."""
    for state in PATHS[machine]:
        for event in NETWORK[machine]:
            tx, tu = reach(machine, state)
            feed(tx, tu, event)


# Timers each state may have armed (unreliable transport; reliable: no A, E, G).
ARMED: dict[Machine, dict[State, frozenset[Event]]] = {
    InviteClientTransaction: {
        S.CALLING: frozenset({E.A, E.B}), S.PROCEEDING: frozenset(),
        S.COMPLETED: frozenset({E.D}), S.ACCEPTED: frozenset({E.M}),
        S.TERMINATED: frozenset(),
    },
    NonInviteClientTransaction: {
        S.TRYING: frozenset({E.E, E.F}), S.PROCEEDING: frozenset({E.E, E.F}),
        S.COMPLETED: frozenset({E.K}), S.TERMINATED: frozenset(),
    },
    InviteServerTransaction: {
        S.PROCEEDING: frozenset(), S.COMPLETED: frozenset({E.G, E.H}),
        S.CONFIRMED: frozenset({E.I}), S.ACCEPTED: frozenset({E.L}),
        S.TERMINATED: frozenset(),
    },
    NonInviteServerTransaction: {
        S.TRYING: frozenset(), S.PROCEEDING: frozenset(), S.COMPLETED: frozenset({E.J}),
        S.TERMINATED: frozenset(),
    },
}
RETRANSMIT = frozenset({E.A, E.E, E.G})


@pytest.mark.parametrize("peer", [UDP, TCP], ids=["udp", "tcp"])
@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_armed_timers_on_entering_each_state(machine: Machine, peer: Peer) -> None:
    for state in PATHS[machine]:
        tx, tu = reach(machine, state, peer)
        expected = ARMED[machine][state]
        if peer.transport != "udp":
            expected -= RETRANSMIT
        if state is S.TERMINATED or (peer is TCP and state is S.COMPLETED
                                      and machine is NonInviteServerTransaction):
            tu.advance(tu.now)  # zero-length timers (J on TCP) fire at once
        if tx.state is S.TERMINATED:
            expected = frozenset()
        assert tx.active_timers() == expected, state
        assert len(tu.queue) == len(expected)


# --- the important paths, with exact timings ------------------------------------------------


def test_invite_client_retransmits_doubling_then_times_out() -> None:
    tx, tu = make(InviteClientTransaction)
    assert isinstance(tx, ClientTransaction)
    tu.advance(40.0)
    # §17.1.1.2: A doubles from T1 each time, with no T2 cap; B = 64*T1 = 32 s.
    assert tu.times(tx.data) == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert tu.failures == [E.B]
    assert tx.state is S.TERMINATED
    assert tu.terminated == 1
    assert len(tu.queue) == 0


def test_invite_client_over_tcp_sends_once() -> None:
    tx, tu = make(InviteClientTransaction, TCP)
    assert isinstance(tx, ClientTransaction)
    tu.advance(40.0)
    assert tu.times(tx.data) == [0.0]
    assert tu.failures == [E.B]


def test_invite_client_provisional_stops_retransmissions() -> None:
    tx, tu = make(InviteClientTransaction)
    assert isinstance(tx, ClientTransaction)
    tu.advance(1.0)
    tx.receive(resp(INVITE, 100), 1.0)
    tx.receive(resp(INVITE, 180), 1.2)
    tu.advance(100.0)  # §17.1.1.2: no retransmission and no timer B in Proceeding
    assert tu.times(tx.data) == [0.0, 0.5]
    assert tu.passed == [100, 180]
    assert tx.state is S.PROCEEDING
    assert tu.failures == []


def test_invite_client_non_2xx_is_acked_and_absorbed() -> None:
    tx, tu = make(InviteClientTransaction)
    assert isinstance(tx, ClientTransaction)
    tx.receive(resp(INVITE, 180), 0.1)
    busy = resp(INVITE, 486)
    tu.now = 0.2
    tx.receive(busy, 0.2)
    assert tx.state is S.COMPLETED
    assert tx.ack is not None
    ack = parse_message(tx.ack)
    assert isinstance(ack, Request)
    # §17.1.1.3: same R-URI, Call-ID, From, CSeq number, top Via, Route; To from the response.
    assert (ack.method, ack.uri, ack.cseq) == ("ACK", INVITE.uri, (5, "ACK"))
    assert ack.values("via") == INVITE.values("via")
    assert ack.values("route") == INVITE.values("route")
    assert ack.tag("to") == "t9"
    assert ack.tag("from") == "f1"
    assert ack.call_id == INVITE.call_id
    tu.now = 1.0
    tx.receive(busy, 1.0)  # a retransmitted final: ACK again, not passed up again
    assert tu.times(tx.ack) == [0.2, 1.0]
    assert tu.passed == [180, 486]
    tu.advance(0.2 + 31.9)
    assert tx.state is S.COMPLETED
    tu.advance(0.2 + 32.0)  # Timer D: 32 s on UDP
    assert tx.state is S.TERMINATED
    assert tu.terminated == 1


def test_invite_client_over_tcp_terminates_at_once_after_a_final() -> None:
    tx, tu = make(InviteClientTransaction, TCP)
    assert isinstance(tx, ClientTransaction)
    tx.receive(resp(INVITE, 503), 0.3)
    tu.advance(0.3)  # Timer D = 0 on reliable transports
    assert tx.state is S.TERMINATED


def test_invite_client_2xx_goes_to_accepted_and_passes_retransmissions() -> None:
    tx, tu = make(InviteClientTransaction)
    assert isinstance(tx, ClientTransaction)
    tx.receive(resp(INVITE, 200), 0.1)
    tx.receive(resp(INVITE, 200), 0.6)
    tx.receive(resp(INVITE, 486), 0.7)
    assert tu.passed == [200, 200]  # RFC 6026 §7.2: 2xx retransmissions reach the TU
    assert tx.ack is None  # the 2xx ACK is end to end, never the transaction's
    tu.advance(0.1 + 32.0)  # Timer M = 64*T1
    assert tx.state is S.TERMINATED


def test_non_invite_client_retransmits_up_to_t2() -> None:
    tx, tu = make(NonInviteClientTransaction)
    assert isinstance(tx, ClientTransaction)
    tu.advance(40.0)
    # §17.1.2.2: E = min(2^n * T1, T2); F = 64*T1.
    assert tu.times(tx.data) == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert tu.failures == [E.F]
    assert tx.state is S.TERMINATED


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    tx, tu = make(NonInviteClientTransaction)
    assert isinstance(tx, ClientTransaction)
    tu.advance(0.6)
    tx.receive(resp(OPTIONS, 100), 0.6)
    tu.advance(20.0)
    # the E armed at 0.5 (1 s) fires at 1.5; from then on every T2.
    assert tu.times(tx.data) == [0.0, 0.5, 1.5, 5.5, 9.5, 13.5, 17.5]
    tx.receive(resp(OPTIONS, 200), 20.0)
    tu.advance(24.9)
    assert tx.state is S.COMPLETED  # Timer K = T4 = 5 s
    tu.advance(25.0)
    assert tx.state is S.TERMINATED
    assert tu.passed == [100, 200]
    assert len(tu.times(tx.data)) == 7


def test_invite_server_final_retransmitted_until_ack() -> None:
    tx, tu = make(InviteServerTransaction)
    assert isinstance(tx, ServerTransaction)
    tx.respond(resp(INVITE, 100), 0.0)
    tx.handle(E.REQUEST, 0.2, INVITE)  # INVITE retransmission: the 100 again
    tx.respond(resp(INVITE, 486), 1.0)
    final = tx.last_data
    assert final is not None
    tu.now = 1.0
    tu.advance(12.0)
    # §17.2.1: G from T1 doubling to T2 (1.5, 2.5, 4.5, 8.5, 12.5 ...).
    assert tu.times(final) == [0.0, 1.5, 2.5, 4.5, 8.5]
    tx.handle(E.REQUEST, 12.0, INVITE)  # retransmitted INVITE in Completed: final again
    tx.handle(E.ACK, 12.1)
    assert tx.state is S.CONFIRMED
    tu.advance(17.0)
    assert len(tu.times(final)) == 6  # nothing after the ACK
    assert tx.state is S.CONFIRMED  # Timer I = T4 = 5 s from 12.1
    tu.advance(17.1)
    assert tx.state is S.TERMINATED
    trying = [d for _, d in tu.sent if d.startswith(b"SIP/2.0 100")]
    assert len(trying) == 2


def test_invite_server_without_ack_times_out_by_h() -> None:
    tx, tu = make(InviteServerTransaction)
    assert isinstance(tx, ServerTransaction)
    tx.respond(resp(INVITE, 603), 0.0)
    tu.advance(31.9)
    assert tx.state is S.COMPLETED
    tu.advance(32.0)  # H = 64*T1
    assert tx.state is S.TERMINATED
    assert tx.last_data is not None
    gaps = [b - a for a, b in itertools.pairwise(tu.times(tx.last_data))]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0]
    assert set(gaps[3:]) == {4.0}


def test_invite_server_2xx_accepted_passes_retransmissions_then_l() -> None:
    tx, tu = make(InviteServerTransaction)
    assert isinstance(tx, ServerTransaction)
    ok = resp(INVITE, 200)
    tx.respond(ok, 0.0)
    tx.respond(ok, 0.5)  # the UAS's 2xx retransmission, relayed (RFC 6026 §8.7)
    tx.handle(E.REQUEST, 0.6, INVITE)  # absorbed in Accepted
    assert len(tu.sent) == 2
    tu.advance(31.9)
    assert tx.state is S.ACCEPTED
    tu.advance(32.0)  # Timer L = 64*T1
    assert tx.state is S.TERMINATED


def test_non_invite_server_resends_last_response() -> None:
    tx, tu = make(NonInviteServerTransaction)
    assert isinstance(tx, ServerTransaction)
    tx.handle(E.REQUEST, 0.1, OPTIONS)  # Trying: nothing to resend yet
    assert tu.sent == []
    tx.respond(resp(OPTIONS, 100), 0.2)
    tx.handle(E.REQUEST, 0.3, OPTIONS)
    tx.respond(resp(OPTIONS, 200), 0.4)
    tx.handle(E.REQUEST, 0.5, OPTIONS)
    statuses = [d.split(b" ", 2)[1] for _, d in tu.sent]
    assert statuses == [b"100", b"100", b"200", b"200"]
    tx.respond(resp(OPTIONS, 500), 0.6)  # a second final is ignored
    assert len(tu.sent) == 4
    tu.advance(0.4 + 32.0)  # J = 64*T1 on UDP
    assert tx.state is S.TERMINATED


def test_non_invite_server_over_tcp_terminates_at_once() -> None:
    tx, tu = make(NonInviteServerTransaction, TCP)
    assert isinstance(tx, ServerTransaction)
    tx.respond(resp(OPTIONS, 200), 0.0)
    tu.advance(0.0)
    assert tx.state is S.TERMINATED


def test_transport_error_in_calling_is_reported() -> None:
    tx, tu = make(InviteClientTransaction)
    feed(tx, tu, E.TRANSPORT_ERROR)
    assert tu.failures == [E.TRANSPORT_ERROR]  # §17.1.1.2: treated as a 408 by the TU
    assert tx.state is S.TERMINATED
    assert len(tu.queue) == 0


def test_give_up_terminates_quietly() -> None:
    tx, tu = make(NonInviteClientTransaction)
    feed(tx, tu, E.GIVE_UP)
    assert tu.failures == []
    assert tx.state is S.TERMINATED
    assert tu.terminated == 1
    tu.advance(100.0)
    assert len(tu.sent) == 1


def test_build_ack_single_via() -> None:
    two_vias = INVITE.with_headers(
        (INVITE.headers[0].make("via", "SIP/2.0/UDP gw;branch=z9hG4bKgw"), *INVITE.headers)
    )
    ack = build_ack(two_vias, resp(two_vias, 404))
    assert ack.values("via") == ["SIP/2.0/UDP gw;branch=z9hG4bKgw"]


# --- Hypothesis: random input sequences, invariants after every step ------------------------

CLIENT_INPUTS = [E.R1XX, E.R2XX, E.R3XX_6XX, E.TRANSPORT_ERROR, E.GIVE_UP]
SERVER_INPUTS = [E.REQUEST, E.SEND_1XX, E.SEND_2XX, E.SEND_3XX_6XX, E.TRANSPORT_ERROR]
steps = st.one_of(
    st.tuples(st.just("wait"), st.floats(0.0, 12.0)),
    st.tuples(st.just("input"), st.integers(0, 4)),
    st.tuples(st.just("ack"), st.just(0)),
)
timer_values = st.sampled_from([TimerValues(), TimerValues(t1=0.25, t2=2.0, t4=2.5),
                                TimerValues(t1=1.0, t2=4.0, t4=5.0),
                                TimerValues(t1=0.5, t2=8.0, t4=5.0)])


def gaps_ok(times: list[float], t1: float, cap: float | None) -> bool:
    """Retransmission gaps: T1, 2T1, 4T1 ... (capped at `cap`), never shrinking."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    expected = t1
    for gap in gaps:
        if abs(gap - expected) > 1e-9:
            return False
        expected = min(2 * expected, cap) if cap else 2 * expected
    return True


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(MACHINES), st.sampled_from([UDP, TCP]), timer_values,
    st.lists(steps, max_size=25),
)
def test_random_sequences_keep_the_invariants(
    machine: Machine, peer: Peer, timers: TimerValues, script: list[tuple[str, float]]
) -> None:
    tx, tu = make(machine, peer, timers)
    inputs = SERVER_INPUTS if issubclass(machine, ServerTransaction) else CLIENT_INPUTS
    finals_seen = 0
    for kind, arg in script:
        before = tx.state
        if kind == "wait":
            tu.advance(tu.now + arg)
        elif kind == "ack":
            if machine is not InviteServerTransaction:
                continue
            feed(tx, tu, E.ACK)
        else:
            event = inputs[int(arg)]
            if before is S.CALLING and event is E.R3XX_6XX:
                finals_seen += 1
            feed(tx, tu, event)
        # Terminated stays terminated; the TU hears of it exactly once.
        if before is S.TERMINATED:
            assert tx.state is S.TERMINATED
        assert tu.terminated == (1 if tx.state is S.TERMINATED else 0)
        # Armed timers match the state, and nothing is left in the queue besides them.
        allowed = ARMED[machine][tx.state]
        if peer.transport != "udp":
            allowed -= RETRANSMIT
        assert tx.active_timers() <= allowed, (tx.state, tx.active_timers())
        assert len(tu.queue) == len(tx.active_timers())
    # A machine left alone long enough always ends (no hung transactions).
    tu.advance(tu.now + 200.0)
    if tx.state is not S.TERMINATED:
        # Only states that wait on someone else without a timer of their own: an INVITE
        # client after a provisional (§17.1.1.2; the proxy's Timer C, §16.6 step 11, bounds
        # it) and server transactions waiting for their TU's final response.
        assert (machine, tx.state) in {
            (InviteClientTransaction, S.PROCEEDING),
            (InviteServerTransaction, S.PROCEEDING),
            (NonInviteServerTransaction, S.TRYING),
            (NonInviteServerTransaction, S.PROCEEDING),
        }
    # Retransmission schedules.
    if isinstance(tx, ClientTransaction):
        sends = tu.times(tx.data)
        if peer.transport != "udp":
            assert len(sends) == 1
        elif machine is InviteClientTransaction:
            assert gaps_ok(sends, timers.t1, None)
            assert all(t < timers.b for t in sends)
        else:
            assert all(gap <= timers.t2 + 1e-9 for gap in
                       [b - a for a, b in itertools.pairwise(sends)])
            assert all(t < timers.b for t in sends)
    if isinstance(tx, InviteServerTransaction) and (tx.last_status or 0) >= 300 and (
        peer.transport == "udp"
    ):
        retransmitted = [t for t, d in tu.sent if d == tx.last_data]
        # Retransmissions from the first send (INVITE retransmissions may add extra
        # sends; without them the G schedule is exact).
        if not any(k == "input" and inputs[int(a)] is E.REQUEST for k, a in script):
            assert gaps_ok(retransmitted, timers.t1, timers.t2)
