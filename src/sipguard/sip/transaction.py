"""The four RFC 3261 §17 transaction state machines, as tables.

Each machine is a table `(state, event) -> (action, next state)` (h2's `_transitions`).
Network inputs a state does not act on have explicit "absorb" entries; an event with no
entry at all is a programming error and raises `TransactionError`. INVITE transactions
include RFC 6026's Accepted state, so 2xx retransmissions and stray ACKs are handled the
way current proxies do.

Transactions know nothing about sockets or clocks: they call their transaction user (the
proxy core) to send bytes and to schedule timers, and take `now` with every input.

    client INVITE     §17.1.1  Calling -> Proceeding -> Completed | Accepted -> Terminated
    client non-INVITE §17.1.2  Trying -> Proceeding -> Completed -> Terminated
    server INVITE     §17.2.1  Proceeding -> Completed -> Confirmed | Accepted -> Terminated
    server non-INVITE §17.2.2  Trying -> Proceeding -> Completed -> Terminated
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import ClassVar, Protocol

from sipguard.sip.message import Header, Request, Response
from sipguard.sip.peer import Peer
from sipguard.sip.timers import TimerValues


class State(Enum):
    # Members are singletons: identity hashing is exact and avoids Enum's Python-level
    # __hash__ on every table lookup.
    __hash__ = object.__hash__

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class Event(Enum):
    __hash__ = object.__hash__  # as for State

    # from the network
    R1XX = "1xx"
    R2XX = "2xx"
    R3XX_6XX = "3xx-6xx"
    REQUEST = "request retransmission"
    ACK = "ack"
    TRANSPORT_ERROR = "transport error"
    # from the transaction user
    SEND_1XX = "send 1xx"
    SEND_2XX = "send 2xx"
    SEND_3XX_6XX = "send 3xx-6xx"
    GIVE_UP = "give up"  # the proxy abandons a silent branch (failover)
    # timers
    A = "timer A"
    B = "timer B"
    D = "timer D"
    E = "timer E"
    F = "timer F"
    G = "timer G"
    H = "timer H"
    I = "timer I"  # noqa: E741  (the RFC's name)
    J = "timer J"
    K = "timer K"
    L = "timer L"
    M = "timer M"


class TransactionError(Exception):
    """An input the state machine has no transition for: a bug in the caller."""


class TransactionUser(Protocol):
    """What a transaction needs from the proxy core (its TU, RFC 3261 §17)."""

    def send(self, peer: Peer, data: bytes) -> None: ...

    def schedule(self, deadline: float, callback: Callable[[float], None]) -> int: ...

    def cancel_timer(self, handle: int) -> None: ...

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> None: ...

    def on_failure(self, tx: ClientTransaction, event: Event, now: float) -> None: ...

    def on_terminated(self, tx: Transaction, now: float) -> None: ...


Table = Mapping[tuple[State, Event], tuple[str, State]]
# States in which a final response has settled the transaction.
SETTLED = frozenset({State.COMPLETED, State.CONFIRMED, State.ACCEPTED, State.TERMINATED})

S = State
E = Event


class Transaction:
    """Shared mechanics: table lookup, timers, termination."""

    TABLE: ClassVar[Table]
    INITIAL: ClassVar[State]

    __slots__ = ("_timers", "call_id", "created", "key", "method", "peer", "reliable", "request",
                 "state", "timers", "tu")

    def __init__(
        self, key: str, request: Request, peer: Peer, tu: TransactionUser, timers: TimerValues,
        now: float,
    ) -> None:
        self.key = key
        # The request until a final response settles the transaction; None afterwards.
        self.request: Request | None = request
        self.method = request.method
        self.call_id = request.call_id
        self.peer = peer
        self.reliable = peer.transport != "udp"
        self.tu = tu
        self.timers = timers
        self.state = self.INITIAL
        self.created = now
        self._timers: dict[Event, int] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} {self.state.value}>"

    def handle(self, event: Event, now: float, message: Request | Response | None = None) -> None:
        try:
            action, nxt = self.TABLE[(self.state, event)]
        except KeyError:
            name = type(self).__name__
            raise TransactionError(f"{name}: {event.value} in {self.state.value}") from None
        before = self.state
        self.state = nxt
        if action != "absorb":
            getattr(self, action)(now, message)
        if nxt in SETTLED and self.request is not None:
            # What is left to do (absorb or resend, wait out timers D, I-M: up to 32 s)
            # needs bytes only: at 1,000 calls/s, holding parsed messages that long kept
            # ~20 KB per call alive, most of the gateway's memory under load.
            self.request = None
        if nxt is State.TERMINATED and before is not State.TERMINATED:
            for handle in self._timers.values():
                self.tu.cancel_timer(handle)
            self._timers.clear()
            self.tu.on_terminated(self, now)

    def _start(self, event: Event, delay: float, now: float) -> None:
        """(Re)arm one timer; when it fires it is fed back as `event`."""
        old = self._timers.pop(event, None)
        if old is not None:
            self.tu.cancel_timer(old)

        def fire(when: float) -> None:
            if self._timers.get(event) == handle:
                del self._timers[event]
                self.handle(event, when)

        handle = self.tu.schedule(now + delay, fire)
        self._timers[event] = handle

    def _stop(self, *events: Event) -> None:
        for event in events:
            handle = self._timers.pop(event, None)
            if handle is not None:
                self.tu.cancel_timer(handle)

    def active_timers(self) -> frozenset[Event]:
        return frozenset(self._timers)

    def _terminate_quietly(self, now: float, _m: object) -> None:
        """Entering Terminated is the whole effect (handled in `handle`)."""


class ClientTransaction(Transaction):
    """Sends `request` to `peer` and passes the responses that matter up to the TU."""

    __slots__ = ("_interval", "ack", "data", "last_status")

    def __init__(
        self, key: str, request: Request, peer: Peer, tu: TransactionUser, timers: TimerValues,
        now: float,
    ) -> None:
        super().__init__(key, request, peer, tu, timers, now)
        self.data = request.serialize()
        self.last_status: int | None = None  # of the last response passed up
        self.ack: bytes | None = None
        self._interval = timers.t1

    def start(self, now: float) -> None:
        """Send the request and arm the retransmission and timeout timers."""
        raise NotImplementedError

    def receive(self, response: Response, now: float) -> None:
        status = response.status
        event = E.R1XX if status < 200 else E.R2XX if status < 300 else E.R3XX_6XX
        self.handle(event, now, response)

    def _pass_up(self, now: float, message: Request | Response | None) -> None:
        assert isinstance(message, Response)
        self.last_status = message.status
        self.tu.on_response(self, message, now)

    def _fail(self, now: float, _m: object) -> None:
        self.tu.on_failure(self, E.TRANSPORT_ERROR, now)

    def _timeout(self, now: float, _m: object) -> None:
        self.tu.on_failure(self, E.B if isinstance(self, InviteClientTransaction) else E.F, now)

    def _retransmit(self, now: float, _m: object) -> None:
        self.tu.send(self.peer, self.data)


class InviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 with RFC 6026 §8.4 (Accepted)."""

    INITIAL = S.CALLING
    TABLE: ClassVar[Table] = {
        (S.CALLING, E.A): ("_retransmit_a", S.CALLING),
        (S.CALLING, E.B): ("_timeout", S.TERMINATED),
        (S.CALLING, E.R1XX): ("_proceed", S.PROCEEDING),
        (S.CALLING, E.R2XX): ("_accept", S.ACCEPTED),
        (S.CALLING, E.R3XX_6XX): ("_complete", S.COMPLETED),
        (S.CALLING, E.TRANSPORT_ERROR): ("_fail", S.TERMINATED),
        (S.CALLING, E.GIVE_UP): ("_terminate_quietly", S.TERMINATED),
        (S.PROCEEDING, E.R1XX): ("_pass_up", S.PROCEEDING),
        (S.PROCEEDING, E.R2XX): ("_accept", S.ACCEPTED),
        (S.PROCEEDING, E.R3XX_6XX): ("_complete", S.COMPLETED),
        (S.PROCEEDING, E.TRANSPORT_ERROR): ("_fail", S.TERMINATED),
        (S.PROCEEDING, E.GIVE_UP): ("_terminate_quietly", S.TERMINATED),
        (S.COMPLETED, E.R1XX): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.R2XX): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.R3XX_6XX): ("_send_ack", S.COMPLETED),  # retransmitted final: ACK again
        (S.COMPLETED, E.D): ("absorb", S.TERMINATED),
        (S.COMPLETED, E.TRANSPORT_ERROR): ("_terminate_quietly", S.TERMINATED),
        (S.COMPLETED, E.GIVE_UP): ("absorb", S.COMPLETED),
        (S.ACCEPTED, E.R1XX): ("absorb", S.ACCEPTED),
        (S.ACCEPTED, E.R2XX): ("_pass_up", S.ACCEPTED),  # 2xx retransmissions go to the TU
        (S.ACCEPTED, E.R3XX_6XX): ("absorb", S.ACCEPTED),
        (S.ACCEPTED, E.M): ("absorb", S.TERMINATED),
        (S.ACCEPTED, E.TRANSPORT_ERROR): ("absorb", S.ACCEPTED),
        (S.ACCEPTED, E.GIVE_UP): ("absorb", S.ACCEPTED),
        **{(S.TERMINATED, e): ("absorb", S.TERMINATED) for e in
           (E.R1XX, E.R2XX, E.R3XX_6XX, E.TRANSPORT_ERROR, E.GIVE_UP)},
    }

    def start(self, now: float) -> None:
        self.tu.send(self.peer, self.data)
        if not self.reliable:
            self._start(E.A, self._interval, now)
        self._start(E.B, self.timers.b, now)

    def _retransmit_a(self, now: float, m: object) -> None:
        self._retransmit(now, m)
        self._interval *= 2
        self._start(E.A, self._interval, now)

    def _proceed(self, now: float, m: Request | Response | None) -> None:
        self._stop(E.A, E.B)
        self._pass_up(now, m)

    def _accept(self, now: float, m: Request | Response | None) -> None:
        self._stop(E.A, E.B)
        self._start(E.M, self.timers.b, now)
        self._pass_up(now, m)

    def _complete(self, now: float, m: Request | Response | None) -> None:
        self._stop(E.A, E.B)
        assert isinstance(m, Response) and self.request is not None  # settled only after this
        self.ack = build_ack(self.request, m).serialize()
        self._send_ack(now, m)
        self._start(E.D, self.timers.d(self.reliable), now)
        self._pass_up(now, m)

    def _send_ack(self, now: float, _m: object) -> None:
        if self.ack is not None:
            self.tu.send(self.peer, self.ack)


class NonInviteClientTransaction(ClientTransaction):
    """RFC 3261 §17.1.2."""

    INITIAL = S.TRYING
    TABLE: ClassVar[Table] = {
        (S.TRYING, E.E): ("_retransmit_e", S.TRYING),
        (S.TRYING, E.F): ("_timeout", S.TERMINATED),
        (S.TRYING, E.R1XX): ("_pass_up", S.PROCEEDING),
        (S.TRYING, E.R2XX): ("_complete", S.COMPLETED),
        (S.TRYING, E.R3XX_6XX): ("_complete", S.COMPLETED),
        (S.TRYING, E.TRANSPORT_ERROR): ("_fail", S.TERMINATED),
        (S.TRYING, E.GIVE_UP): ("_terminate_quietly", S.TERMINATED),
        (S.PROCEEDING, E.E): ("_retransmit_t2", S.PROCEEDING),
        (S.PROCEEDING, E.F): ("_timeout", S.TERMINATED),
        (S.PROCEEDING, E.R1XX): ("_pass_up", S.PROCEEDING),
        (S.PROCEEDING, E.R2XX): ("_complete", S.COMPLETED),
        (S.PROCEEDING, E.R3XX_6XX): ("_complete", S.COMPLETED),
        (S.PROCEEDING, E.TRANSPORT_ERROR): ("_fail", S.TERMINATED),
        (S.PROCEEDING, E.GIVE_UP): ("_terminate_quietly", S.TERMINATED),
        (S.COMPLETED, E.R1XX): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.R2XX): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.R3XX_6XX): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.K): ("absorb", S.TERMINATED),
        (S.COMPLETED, E.TRANSPORT_ERROR): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.GIVE_UP): ("absorb", S.COMPLETED),
        **{(S.TERMINATED, e): ("absorb", S.TERMINATED) for e in
           (E.R1XX, E.R2XX, E.R3XX_6XX, E.TRANSPORT_ERROR, E.GIVE_UP)},
    }

    def start(self, now: float) -> None:
        self.tu.send(self.peer, self.data)
        if not self.reliable:
            self._start(E.E, self._interval, now)
        self._start(E.F, self.timers.b, now)

    def _retransmit_e(self, now: float, m: object) -> None:
        self._retransmit(now, m)
        self._interval = min(2 * self._interval, self.timers.t2)
        self._start(E.E, self._interval, now)

    def _retransmit_t2(self, now: float, m: object) -> None:
        self._retransmit(now, m)
        self._start(E.E, self.timers.t2, now)

    def _complete(self, now: float, m: Request | Response | None) -> None:
        self._stop(E.E, E.F)
        self._start(E.K, self.timers.k(self.reliable), now)
        self._pass_up(now, m)


class ServerTransaction(Transaction):
    """Receives `request` from `peer`; the TU sends responses through it."""

    __slots__ = ("last_data", "last_status")

    def __init__(
        self, key: str, request: Request, peer: Peer, tu: TransactionUser, timers: TimerValues,
        now: float,
    ) -> None:
        super().__init__(key, request, peer, tu, timers, now)
        self.last_status: int | None = None
        self.last_data: bytes | None = None  # the last response as sent, to resend

    def respond(self, response: Response, now: float) -> None:
        status = response.status
        event = E.SEND_1XX if status < 200 else E.SEND_2XX if status < 300 else E.SEND_3XX_6XX
        self.handle(event, now, response)

    def _send(self, now: float, m: Request | Response | None) -> None:
        assert isinstance(m, Response)
        self.last_status = m.status
        self.last_data = m.serialize()
        self.tu.send(self.peer, self.last_data)

    def _resend(self, now: float, _m: object) -> None:
        if self.last_data is not None:
            self.tu.send(self.peer, self.last_data)


class InviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 with RFC 6026 §8.7 (Accepted)."""

    INITIAL = S.PROCEEDING
    TABLE: ClassVar[Table] = {
        (S.PROCEEDING, E.REQUEST): ("_resend", S.PROCEEDING),
        (S.PROCEEDING, E.ACK): ("absorb", S.PROCEEDING),
        (S.PROCEEDING, E.SEND_1XX): ("_send", S.PROCEEDING),
        (S.PROCEEDING, E.SEND_2XX): ("_accept", S.ACCEPTED),
        (S.PROCEEDING, E.SEND_3XX_6XX): ("_complete", S.COMPLETED),
        (S.PROCEEDING, E.TRANSPORT_ERROR): ("absorb", S.TERMINATED),
        (S.COMPLETED, E.REQUEST): ("_resend", S.COMPLETED),
        (S.COMPLETED, E.ACK): ("_confirm", S.CONFIRMED),
        (S.COMPLETED, E.G): ("_retransmit_g", S.COMPLETED),
        (S.COMPLETED, E.H): ("absorb", S.TERMINATED),  # no ACK came
        (S.COMPLETED, E.SEND_1XX): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.SEND_2XX): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.SEND_3XX_6XX): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.TRANSPORT_ERROR): ("absorb", S.TERMINATED),
        (S.CONFIRMED, E.REQUEST): ("absorb", S.CONFIRMED),
        (S.CONFIRMED, E.ACK): ("absorb", S.CONFIRMED),
        (S.CONFIRMED, E.I): ("absorb", S.TERMINATED),
        (S.CONFIRMED, E.SEND_1XX): ("absorb", S.CONFIRMED),
        (S.CONFIRMED, E.SEND_2XX): ("absorb", S.CONFIRMED),
        (S.CONFIRMED, E.SEND_3XX_6XX): ("absorb", S.CONFIRMED),
        (S.CONFIRMED, E.TRANSPORT_ERROR): ("absorb", S.CONFIRMED),
        (S.ACCEPTED, E.REQUEST): ("absorb", S.ACCEPTED),
        (S.ACCEPTED, E.ACK): ("absorb", S.ACCEPTED),
        (S.ACCEPTED, E.SEND_1XX): ("absorb", S.ACCEPTED),
        (S.ACCEPTED, E.SEND_2XX): ("_send", S.ACCEPTED),  # 2xx retransmissions pass through
        (S.ACCEPTED, E.SEND_3XX_6XX): ("absorb", S.ACCEPTED),
        (S.ACCEPTED, E.L): ("absorb", S.TERMINATED),
        (S.ACCEPTED, E.TRANSPORT_ERROR): ("absorb", S.ACCEPTED),
        **{(S.TERMINATED, e): ("absorb", S.TERMINATED) for e in
           (E.REQUEST, E.ACK, E.SEND_1XX, E.SEND_2XX, E.SEND_3XX_6XX, E.TRANSPORT_ERROR)},
    }

    __slots__ = ("_interval",)

    def _accept(self, now: float, m: Request | Response | None) -> None:
        self._send(now, m)
        self._start(E.L, self.timers.b, now)

    def _complete(self, now: float, m: Request | Response | None) -> None:
        self._send(now, m)
        self._interval = self.timers.t1
        if not self.reliable:
            self._start(E.G, self._interval, now)
        self._start(E.H, self.timers.b, now)

    def _retransmit_g(self, now: float, m: object) -> None:
        self._resend(now, m)
        self._interval = min(2 * self._interval, self.timers.t2)
        self._start(E.G, self._interval, now)

    def _confirm(self, now: float, _m: object) -> None:
        self._stop(E.G, E.H)
        self._start(E.I, self.timers.k(self.reliable), now)


class NonInviteServerTransaction(ServerTransaction):
    """RFC 3261 §17.2.2."""

    INITIAL = S.TRYING
    TABLE: ClassVar[Table] = {
        (S.TRYING, E.REQUEST): ("absorb", S.TRYING),
        (S.TRYING, E.SEND_1XX): ("_send", S.PROCEEDING),
        (S.TRYING, E.SEND_2XX): ("_complete", S.COMPLETED),
        (S.TRYING, E.SEND_3XX_6XX): ("_complete", S.COMPLETED),
        (S.TRYING, E.TRANSPORT_ERROR): ("absorb", S.TERMINATED),
        (S.PROCEEDING, E.REQUEST): ("_resend", S.PROCEEDING),
        (S.PROCEEDING, E.SEND_1XX): ("_send", S.PROCEEDING),
        (S.PROCEEDING, E.SEND_2XX): ("_complete", S.COMPLETED),
        (S.PROCEEDING, E.SEND_3XX_6XX): ("_complete", S.COMPLETED),
        (S.PROCEEDING, E.TRANSPORT_ERROR): ("absorb", S.TERMINATED),
        (S.COMPLETED, E.REQUEST): ("_resend", S.COMPLETED),
        (S.COMPLETED, E.J): ("absorb", S.TERMINATED),
        (S.COMPLETED, E.SEND_1XX): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.SEND_2XX): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.SEND_3XX_6XX): ("absorb", S.COMPLETED),
        (S.COMPLETED, E.TRANSPORT_ERROR): ("absorb", S.TERMINATED),
        **{(S.TERMINATED, e): ("absorb", S.TERMINATED) for e in
           (E.REQUEST, E.SEND_1XX, E.SEND_2XX, E.SEND_3XX_6XX, E.TRANSPORT_ERROR)},
    }

    def _complete(self, now: float, m: Request | Response | None) -> None:
        self._send(now, m)
        self._start(E.J, 0.0 if self.reliable else self.timers.b, now)


def build_ack(request: Request, response: Response) -> Request:
    """The hop-by-hop ACK for a non-2xx final response (RFC 3261 §17.1.1.3).

    Request-URI, Call-ID, From, CSeq number, top Via and Route as in the INVITE; To from the
    response (it carries the tag).
    """
    headers: list[Header] = []
    vias = [h for h in request.headers if h.name == "via"]
    if vias:
        top = request.get("via") or ""
        headers.append(Header.make("via", top))
    for h in request.headers:
        if h.name in ("from", "call-id", "route", "max-forwards"):
            headers.append(h)
    to = next((h for h in response.headers if h.name == "to"), None)
    if to is not None:
        headers.append(to)
    num, _ = request.cseq
    headers.append(Header.make("cseq", f"{num} ACK"))
    headers.append(Header.make("content-length", "0"))
    return Request(tuple(headers), b"", "ACK", request.uri)
