"""The transaction-stateful proxy core (RFC 3261 §16), sans-IO.

Inputs: `receive(data, source, now)`, `transport_error(peer, now)`, `handle_timer(now)`.
Outputs: `datagrams_to_send()` (peer, bytes) pairs, `get_timer()` for the next deadline,
and `events()` for the log edge. The decision hook is called once per initial INVITE from
a dialer; everything else passes as §16 says a proxy does.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from sipguard.errors import ProtocolError
from sipguard.sip.grammar import param
from sipguard.sip.message import (
    WIRE,
    Header,
    Request,
    Response,
    make_response,
    strip_top_value,
)
from sipguard.sip.parser import DEFAULT_LIMITS, Limits, MessageError, parse_message
from sipguard.sip.peer import Peer
from sipguard.sip.routing import (
    LOCAL_TAG_PREFIX,
    OWN_BRANCH,
    Identity,
    Trunk,
    branch_base,
    dialer_target,
    has_own_via,
    local_tag,
    own_branch,
    own_via,
    pop_own_routes,
    record_route,
    response_target,
    stamp_received,
    trunk_for_dialog,
)
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
)
from sipguard.sip.uri import OtherUri, Params, SipUri, parse_uri
from sipguard.sip.verdict import AdmissionHook, Block, DecisionHook

REFUSALS_KEPT = 200_000  # bounds the memory of refused INVITEs (32 s at 6,000 calls/s)
ALLOW_HEADER = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, REFER, NOTIFY, MESSAGE"


@dataclass(frozen=True, slots=True)
class ProxySettings:
    me: Identity
    trunks: tuple[Trunk, ...]  # in the order they are tried
    dialer_allowed: Callable[[str], bool]
    record_route: bool = True
    failover_timeout: float = 2.0
    trunk_retry: float = 30.0  # a trunk that failed is tried after the others this long
    timer_c: float = 181.0
    timers: TimerValues = field(default_factory=TimerValues)
    limits: Limits = DEFAULT_LIMITS
    trace: bool = False  # emit a TransactionDone per finished server transaction


@dataclass(frozen=True, slots=True)
class TransactionDone:
    """A finished server transaction (debug log)."""

    method: str
    call_id: str
    status: int | None
    source: Peer
    duration: float


@dataclass(frozen=True, slots=True)
class Problem:
    """Something an operator should see (warning log)."""

    kind: str
    detail: str
    peer: Peer | None = None


@dataclass(frozen=True, slots=True)
class TrunkState:
    """A trunk failed (and is tried after the others for a while), or answers again."""

    peer: Peer
    up: bool
    detail: str


CoreEvent = TransactionDone | Problem | TrunkState


def upstream_response(response: Response, request: Request | None) -> Response | None:
    """The response to relay upstream: without our Via (§16.7 step 3). A trunk that echoed
    only our Via would leave none, and a response without Via is malformed; the server
    transaction knows the Vias its request came with, so those are put back instead (None
    when it has settled: the response is then a retransmission of one relayed already)."""
    headers = strip_top_value(response.headers, "via")
    for h in headers:
        if h.name == "via":
            upstream = response.with_headers(headers)
            wire = response.memo.get(WIRE)
            top = response.headers[0]
            if wire is not None and top.name == "via" and len(headers) < len(response.headers):
                # Our Via was the first header line, alone: the bytes to relay are the
                # datagram without that line, as serialize() would build them.
                start = wire.find(b"\r\n") + 2
                end = start + len(top.raw)
                if wire[start:end] == top.raw:
                    upstream.memo[WIRE] = wire[:start] + wire[end + 2 :]
            return upstream
    if request is None:
        return None
    vias = tuple(h for h in request.headers if h.name == "via")
    return response.with_headers(vias + headers)


@lru_cache(maxsize=256)
def _one_hop_less(max_forwards: Header) -> Header:
    """§16.6 step 3; cached: dialers send the same one or two values."""
    return Header.make("max-forwards", str(int(max_forwards.value) - 1))


class _Context:
    """One proxied request (§16's response context): its server transaction and branches."""

    __slots__ = ("base", "cancel_pending", "cancelled", "client", "extra", "failover",
                 "final", "provisional", "request", "server", "target_index", "targets",
                 "timer_c", "trunk_index")

    def __init__(
        self, server: ServerTransaction, request: Request, targets: list[tuple[Peer, int]],
        base: str, extra: tuple[Header, ...],
    ) -> None:
        self.server = server
        # As it will be forwarded, minus our Via; None once final (no branch is left to try).
        self.request: Request | None = request
        self.targets = targets  # (peer, trunk index or -1 for a dialer)
        self.target_index = 0
        self.base = base
        self.extra = extra
        self.client: ClientTransaction | None = None
        self.cancelled = False
        self.cancel_pending = False
        self.provisional = False
        self.final = False
        self.failover: int | None = None
        self.timer_c: int | None = None
        self.trunk_index = -1


class ProxyCore:
    """The proxy: transaction tables, routing and the decision seam."""

    def __init__(
        self, settings: ProxySettings, hook: DecisionHook, admit: AdmissionHook | None = None
    ) -> None:
        self.settings = settings
        self.hook = hook
        self.admit = admit
        # INVITEs refused at admission, by server-transaction key, until Timer H would have
        # ended their transaction: a retransmission gets the same answer, never a call.
        self._refused: dict[str, Block] = {}
        self._refused_until: deque[tuple[float, str]] = deque()
        self._timers = TimerQueue()
        self._out: list[tuple[Peer, bytes]] = []
        self._events: list[CoreEvent] = []
        self._server: dict[str, ServerTransaction] = {}
        self._client: dict[str, ClientTransaction] = {}
        # The same, by peer: a transport error concerns one peer's transactions, and with
        # one dict to search a refused TCP connect cost ~1 ms per error with 30,000 calls
        # under way (once per new call while a TCP trunk refuses: enough to stall the loop).
        self._client_by_peer: dict[Peer, dict[str, ClientTransaction]] = {}
        self._contexts: dict[str, _Context] = {}  # by server and by client key
        self._trunk_peers = {(t.peer.host, t.peer.port) for t in settings.trunks}
        # Trunks that failed (transport error, or silence for failover_timeout): until when
        # new calls try them after the others. Kept past that time (the next call tries
        # the trunk again) until the trunk answers, so one outage is one down and one up.
        self._trunk_down: dict[int, float] = {}
        self._trunk_hosts = {t.peer.host for t in settings.trunks}

    # ---- outputs -------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[Peer, bytes]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[CoreEvent]:
        out, self._events = self._events, []
        return out

    def get_timer(self) -> float | None:
        return self._timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        self._timers.fire(now)

    def trunks_up(self) -> list[tuple[Peer, bool]]:
        """Each trunk, and whether it has answered since it last failed (for metrics)."""
        return [(t.peer, i not in self._trunk_down) for i, t in enumerate(self.settings.trunks)]

    @property
    def transaction_count(self) -> int:
        return len(self._server) + len(self._client)

    # ---- TransactionUser -----------------------------------------------------------------

    def send(self, peer: Peer, data: bytes) -> None:
        self._out.append((peer, data))

    def schedule(self, deadline: float, callback: Callable[[float], None]) -> int:
        return self._timers.schedule(deadline, callback)

    def cancel_timer(self, handle: int) -> None:
        self._timers.cancel(handle)

    # ---- inputs --------------------------------------------------------------------------

    def receive(self, data: bytes, source: Peer, now: float) -> None:
        """One datagram, or one framed message from a stream."""
        if not data.strip(b"\r\n \t"):
            return  # keep-alive
        try:
            message = parse_message(data, self.settings.limits, stream=source.transport != "udp")
        except MessageError as exc:
            self._problem("malformed", str(exc), source)
            if isinstance(exc.partial, Request) and exc.partial.method != "ACK":
                self._reply_stateless(exc.partial, source, exc.status, exc.reason)
            return
        except ProtocolError as unreadable:  # a name of its own: mypyc types `exc` above
            self._problem("malformed", str(unreadable), source)
            return
        try:
            if isinstance(message, Request):
                self._on_request(message, source, now)
            else:
                assert isinstance(message, Response)
                self._on_response(message, source, now)
        except ProtocolError as exc:  # a header the routing needed turned out unusable
            self._problem("malformed", str(exc), source)
            if isinstance(message, Request) and message.method != "ACK":
                self._reply_stateless(message, source, exc.status, exc.reason)

    def transport_error(self, peer: Peer, now: float) -> None:
        """Sending to `peer` failed (TCP connect refused or reset, ICMP error)."""
        self._problem("transport-error", "send failed", peer)
        for tx in list(self._client_by_peer.get(peer, {}).values()):
            if tx.state in (State.CALLING, State.TRYING, State.PROCEEDING):
                tx.handle(Event.TRANSPORT_ERROR, now)

    # ---- requests ------------------------------------------------------------------------

    def _source_kind(self, source: Peer) -> str:
        if (source.host, source.port) in self._trunk_peers:
            return "trunk"
        if self.settings.dialer_allowed(source.host):
            return "dialer"
        if source.host in self._trunk_hosts:
            return "trunk"
        return "unknown"

    def _on_request(self, req: Request, source: Peer, now: float) -> None:
        kind = self._source_kind(source)
        if kind == "unknown":
            self._problem("forbidden", f"{req.method} from a source outside [dialers] allow",
                          source)
            if req.method != "ACK":
                self._reply_stateless(req, source, 403, "Forbidden")
            return
        method = req.method
        via = req.top_via
        sent_by = f"{via.host}:{via.port}"
        key = f"{via.branch}|{sent_by}|{'INVITE' if method == 'ACK' else method}"
        if method == "ACK":
            self._on_ack(req, source, key, now)
            return
        existing = self._server.get(key)
        if existing is not None:
            existing.handle(Event.REQUEST, now)
            return
        if method == "CANCEL":
            self._on_cancel(req, source, key, f"{via.branch}|{sent_by}|INVITE", now)
            return
        if method == "OPTIONS" and self._addressed_to_me(req):
            self._reply_stateless(req, source, 200, "OK", (
                Header.make("allow", ALLOW_HEADER), Header.make("accept", "application/sdp")))
            return
        if isinstance(parse_uri(req.uri, "Request-URI"), OtherUri):
            # §16.3 step 1: a scheme the proxy does not understand is refused, not relayed.
            self._reply_stateless(req, source, 416, "Unsupported URI Scheme")
            return
        mf_text = req.get("max-forwards")
        if mf_text is not None and int(mf_text) == 0:
            self._reply_stateless(req, source, 483, "Too Many Hops")
            return
        required = req.values("proxy-require")
        if required:
            # §16.3 step 5: sipguard supports no proxy extension, so any is unsupported.
            self._reply_stateless(req, source, 420, "Bad Extension",
                                  (Header.make("unsupported", ", ".join(required)),))
            return
        if has_own_via(req, self.settings.me):
            self._problem("loop", "request carries sipguard's own Via", source)
            self._reply_stateless(req, source, 482, "Loop Detected")
            return
        if method == "INVITE" and self._refused_at_admission(req, source, kind, key, now):
            return
        self._route_new(req, source, kind, key, now)

    def _refused_at_admission(
        self, req: Request, source: Peer, kind: str, key: str, now: float
    ) -> bool:
        """Answer a new call the admission hook refuses, statelessly, and a retransmission
        of one refused before the same way (never a call); True when answered."""
        refusal = self._refused.get(key) if self._refused else None
        if refusal is None:
            if self.admit is None or kind != "dialer" or req.tag("to") is not None:
                return False
            refusal = self.admit(req, source, now)
            if refusal is None:
                return False
            until = self._refused_until
            while until and (until[0][0] <= now or len(until) >= REFUSALS_KEPT):
                self._refused.pop(until.popleft()[1], None)
            self._refused[key] = refusal
            until.append((now + self.settings.timers.b, key))  # as long as Timer H would
        # As received (not stamped): its ACK must find the same stateless To-tag.
        self._reply_stateless(req, source, refusal.status, refusal.reason, refusal.headers)
        return True

    def _addressed_to_me(self, req: Request) -> bool:
        uri = parse_uri(req.uri, "Request-URI")
        return isinstance(uri, SipUri) and uri.user is None and self.settings.me.uri_is_me(uri)

    def _route_new(self, req: Request, source: Peer, kind: str, key: str, now: float) -> None:
        req, rr_params = pop_own_routes(stamp_received(req, source), self.settings.me)
        in_dialog = req.tag("to") is not None
        if not in_dialog and kind == "trunk":
            self._problem("forbidden", f"out-of-dialog {req.method} from a trunk", source)
            self._reply_stateless(req, source, 403, "Forbidden")
            return
        targets = self._targets(req, kind, in_dialog, rr_params, now)
        if not targets:
            self._problem("forbidden", "in-dialog request to a non-dialer address", source)
            self._reply_stateless(req, source, 403, "Forbidden")
            return
        server: ServerTransaction
        if req.method == "INVITE":
            server = InviteServerTransaction(key, req, source, self, self.settings.timers, now)
        else:
            server = NonInviteServerTransaction(key, req, source, self, self.settings.timers, now)
        self._server[key] = server
        base = branch_base(req)
        extra: tuple[Header, ...] = ()
        if req.method == "INVITE":
            server.respond(make_response(req, 100, "Trying"), now)
            if not in_dialog:
                verdict = self.hook(req, source, now)
                if isinstance(verdict, Block):
                    server.respond(make_response(req, verdict.status, verdict.reason,
                                                 verdict.headers, to_tag=local_tag(base)), now)
                    return
                extra = verdict.headers
        ctx = _Context(server, self._prepare(req, extra), targets, base, extra)
        self._contexts[key] = ctx
        self._forward(ctx, now)

    def _targets(
        self, req: Request, kind: str, in_dialog: bool, rr_params: Params | None, now: float
    ) -> list[tuple[Peer, int]]:
        """Where the request may go, in order: (peer, trunk index or -1 for a dialer)."""
        trunks = self.settings.trunks
        if not in_dialog:
            targets = [(t.peer, i) for i, t in enumerate(trunks)]
            down = self._trunk_down
            if down:  # a trunk that failed lately comes last, so calls do not wait on it
                targets.sort(key=lambda target: down.get(target[1], 0.0) > now)
            return targets
        if self._downstream(req, kind, rr_params):
            trunk = trunk_for_dialog(req, trunks, rr_params)
            return [(trunk.peer, trunks.index(trunk))]
        peer = dialer_target(req, self.settings.dialer_allowed)
        return [] if peer is None else [(peer, -1)]

    @staticmethod
    def _downstream(req: Request, kind: str, rr_params: Params | None) -> bool:
        """Is an in-dialog request going toward the trunk? Our Record-Route's ftag says
        whether it comes from the caller (the dialer); without it, the source does."""
        ftag = param(rr_params, "ftag") if rr_params is not None else None
        return req.tag("from") == ftag if ftag else kind == "dialer"

    def _prepare(self, req: Request, extra: tuple[Header, ...]) -> Request:
        """§16.6 steps 1-3 and the verdict's headers: the copy every branch starts from."""
        drop = {h.name for h in extra}
        headers: list[Header] = []
        saw_mf = False
        for h in req.headers:
            if h.name in drop:
                continue  # a dialer cannot forge sipguard's own decision header
            if h.name == "max-forwards":
                saw_mf = True
                headers.append(_one_hop_less(h))
            else:
                headers.append(h)
        if not saw_mf:
            headers.append(Header.make("max-forwards", "70"))
        headers.extend(extra)
        return req.with_headers(tuple(headers))

    def _forward(self, ctx: _Context, now: float) -> None:
        """Send the request to the current target in a new client transaction."""
        peer, trunk = ctx.targets[ctx.target_index]
        req = ctx.request
        assert req is not None  # only forwarded before the final response
        me = self.settings.me
        branch = own_branch(ctx.base, ctx.target_index)
        front: tuple[Header, ...] = (own_via(me, peer.transport, branch, answered=True),)
        initial = req.tag("to") is None  # out of dialog
        if self.settings.record_route and initial and req.method in ("INVITE", "SUBSCRIBE",
                                                                     "REFER"):
            front += record_route(me, ctx.server.peer.transport, peer.transport,
                                  req.tag("from"), trunk)
        uri = req.uri
        if trunk >= 0 and initial:
            uri = self.settings.trunks[trunk].request_uri(uri)
        fwd = req.with_headers(front + req.headers, uri)
        ckey = f"{branch}|{req.method}"
        client: ClientTransaction
        if req.method == "INVITE":
            client = InviteClientTransaction(ckey, fwd, peer, self, self.settings.timers, now)
        else:
            client = NonInviteClientTransaction(ckey, fwd, peer, self, self.settings.timers, now)
        ctx.client = client
        ctx.trunk_index = trunk
        self._add_client(client)
        self._contexts[ckey] = ctx
        if trunk >= 0 and req.method == "INVITE" and initial:
            # A live trunk answers 100 Trying within 200 ms (§16.2); silence means it is
            # down, whether another trunk is left or the dialer must be told now.
            ctx.failover = self.schedule(now + self.settings.failover_timeout,
                                         lambda t: self._silent(ctx, client, t))
        if req.method == "INVITE":
            ctx.timer_c = self.schedule(now + self.settings.timer_c,
                                        lambda t: self._timer_c(ctx, t))
        client.start(now)

    def _silent(self, ctx: _Context, client: ClientTransaction, now: float) -> None:
        """The trunk said nothing at all within failover_timeout: treat it as down."""
        ctx.failover = None
        if client is ctx.client and client.last_status is None and not ctx.final:
            self._problem("trunk-silent", "no response within failover_timeout", client.peer)
            self._trunk_failed(ctx.trunk_index, client.peer, "no response", now)
            client.handle(Event.GIVE_UP, now)
            self._next_target_or_fail(ctx, 408, now)

    def _timer_c(self, ctx: _Context, now: float) -> None:
        """§16.6 step 11: a ringing INVITE that never completes is cancelled."""
        ctx.timer_c = None
        if ctx.final:
            return
        if ctx.provisional:
            self._send_cancel(ctx, now)
        elif ctx.client is not None:
            ctx.client.handle(Event.GIVE_UP, now)
            self._respond_locally(ctx, 408, now)

    def _next_target_or_fail(self, ctx: _Context, status: int, now: float) -> None:
        if not ctx.cancelled and ctx.target_index + 1 < len(ctx.targets):
            ctx.target_index += 1
            self._forward(ctx, now)
        else:
            self._respond_locally(ctx, 487 if ctx.cancelled else status, now)

    def _respond_locally(self, ctx: _Context, status: int, now: float) -> None:
        req = ctx.server.request
        if ctx.final or req is None:  # the server transaction is settled already
            return
        self._finish(ctx)
        ctx.server.respond(make_response(req, status, to_tag=local_tag(ctx.base)), now)

    def _finish(self, ctx: _Context) -> None:
        ctx.final = True
        ctx.request = None
        self._stop_context_timers(ctx)

    def _stop_context_timers(self, ctx: _Context) -> None:
        for handle in (ctx.failover, ctx.timer_c):
            if handle is not None:
                self.cancel_timer(handle)
        ctx.failover = ctx.timer_c = None

    # ---- ACK and CANCEL ------------------------------------------------------------------

    def _on_ack(self, req: Request, source: Peer, key: str, now: float) -> None:
        tx = self._server.get(key)
        if tx is not None and tx.state in (State.COMPLETED, State.CONFIRMED):
            tx.handle(Event.ACK, now)  # the ACK of a non-2xx final stops here (§16.7)
            return
        to_tag = req.tag("to") or ""
        if to_tag.startswith(LOCAL_TAG_PREFIX) and to_tag == self._stateless_tag(req):
            return  # the ACK of a final response sipguard sent statelessly (403, 483 ...)
        # The ACK of a 2xx is its own transaction: forwarded statelessly in the dialog.
        req, rr_params = pop_own_routes(stamp_received(req, source), self.settings.me)
        if self._downstream(req, self._source_kind(source), rr_params):
            peer = trunk_for_dialog(req, self.settings.trunks, rr_params).peer
        else:
            target = dialer_target(req, self.settings.dialer_allowed)
            if target is None:
                self._problem("forbidden", "ACK toward a non-dialer address", source)
                return
            peer = target
        fwd = self._prepare(req, ())
        via = own_via(self.settings.me, peer.transport, own_branch(branch_base(req), 0),
                      answered=False)  # the ACK of a 2xx has no response
        self.send(peer, fwd.with_headers((via, *fwd.headers)).serialize())

    def _on_cancel(self, req: Request, source: Peer, key: str, invite_key: str,
                   now: float) -> None:
        invite = self._server.get(invite_key)
        if invite is None:
            self._reply_stateless(req, source, 481, "Call/Transaction Does Not Exist")
            return
        server = NonInviteServerTransaction(key, req, source, self, self.settings.timers, now)
        self._server[key] = server
        server.respond(make_response(req, 200, "OK"), now)  # §16.10: answer the CANCEL at once
        ctx = self._contexts.get(invite_key)
        if ctx is None or ctx.final:
            return
        ctx.cancelled = True
        if ctx.provisional:
            self._send_cancel(ctx, now)
        else:
            ctx.cancel_pending = True  # §9.1: no CANCEL before a provisional response

    def _send_cancel(self, ctx: _Context, now: float) -> None:
        client = ctx.client
        invite = client.request if client is not None else None
        if client is None or invite is None or client.state not in (State.CALLING,
                                                                    State.PROCEEDING):
            return
        headers = [Header.make("via", invite.get("via") or "")]
        headers.extend(h for h in invite.headers
                       if h.name in ("route", "from", "to", "call-id", "max-forwards"))
        headers.append(Header.make("cseq", f"{invite.cseq[0]} CANCEL"))
        cancel = Request(tuple(headers), b"", "CANCEL", invite.uri)
        ckey = f"{invite.top_via.branch}|CANCEL"
        tx = NonInviteClientTransaction(ckey, cancel, client.peer, self, self.settings.timers, now)
        self._add_client(tx)
        tx.start(now)
        # If the trunk never answers the INVITE after our CANCEL, stop waiting (§16.10).
        self.schedule(now + self.settings.timers.b, lambda t: self._cancel_expired(ctx, t))

    def _cancel_expired(self, ctx: _Context, now: float) -> None:
        if not ctx.final and ctx.client is not None:
            ctx.client.handle(Event.GIVE_UP, now)
            self._respond_locally(ctx, 487, now)

    # ---- responses -----------------------------------------------------------------------

    def _on_response(self, resp: Response, source: Peer, now: float) -> None:
        if self._source_kind(source) == "unknown":
            self._problem("dropped", "response from an unknown source", source)
            return
        via = resp.top_via
        if not via.branch.startswith(OWN_BRANCH) or not self.settings.me.is_me(via.host, via.port):
            self._problem("dropped", "response whose top Via is not sipguard's", source)
            return
        client = self._client.get(f"{via.branch}|{resp.cseq[1]}")
        if client is not None:
            client.receive(resp, now)
            return
        self._forward_response_statelessly(resp, source)

    def _forward_response_statelessly(self, resp: Response, source: Peer) -> None:
        """§16.7 for a response no transaction wants (e.g. a late 2xx retransmission)."""
        upstream = resp.with_headers(strip_top_value(resp.headers, "via"))
        next_via = upstream.get("via")
        if next_via is None:
            return
        peer = response_target(next_via)
        if self._source_kind(peer) == "unknown":
            self._problem("dropped", "response toward an address outside the allow list", source)
            return
        self.send(peer, upstream.serialize())

    def on_response(self, tx: ClientTransaction, response: Response, now: float) -> None:
        ctx = self._contexts.get(tx.key)
        if ctx is None or (ctx.client is not tx and response.status >= 200):
            if response.status // 100 == 2 and tx.method == "INVITE":
                self._forward_response_statelessly(response, tx.peer)
            return
        status = response.status
        if self._trunk_down and ctx.trunk_index in self._trunk_down:
            del self._trunk_down[ctx.trunk_index]
            self._events.append(TrunkState(tx.peer, True, f"answered {status}"))
        if status < 200:
            ctx.provisional = True
            if ctx.failover is not None:
                self.cancel_timer(ctx.failover)
                ctx.failover = None
            if ctx.cancel_pending:
                ctx.cancel_pending = False
                self._send_cancel(ctx, now)
            if status == 100:
                return  # §16.7 step 5: a 100 is not forwarded
        elif status < 300:
            self._finish(ctx)
        elif status in (408, 503) and not ctx.cancelled and ctx.target_index + 1 < len(
            ctx.targets
        ):
            self._stop_context_timers(ctx)
            ctx.target_index += 1
            self._forward(ctx, now)
            return
        else:
            self._finish(ctx)
            if status == 503:  # §16.7 step 6: a 503 is not passed upstream as such
                response = Response(response.headers, response.body, 500, "Server Internal Error")
        upstream = upstream_response(response, ctx.server.request)
        if upstream is not None:
            ctx.server.respond(upstream, now)

    def on_failure(self, tx: ClientTransaction, event: Event, now: float) -> None:
        ctx = self._contexts.get(tx.key)
        if ctx is None or ctx.client is not tx or ctx.final:
            return
        self._stop_context_timers(ctx)
        if event is Event.TRANSPORT_ERROR:
            self._trunk_failed(ctx.trunk_index, tx.peer, "transport error", now)
            self._next_target_or_fail(ctx, 503, now)
        else:
            self._next_target_or_fail(ctx, 408, now)

    def on_terminated(self, tx: Transaction, now: float) -> None:
        if isinstance(tx, ServerTransaction):
            self._server.pop(tx.key, None)
            ctx = self._contexts.pop(tx.key, None)
            if ctx is not None:
                self._stop_context_timers(ctx)
            if self.settings.trace:
                self._events.append(TransactionDone(tx.method, tx.call_id, tx.last_status,
                                                    tx.peer, now - tx.created))
        else:
            self._client.pop(tx.key, None)
            self._contexts.pop(tx.key, None)
            of_peer = self._client_by_peer.get(tx.peer)
            if of_peer is not None and of_peer.pop(tx.key, None) is not None and not of_peer:
                del self._client_by_peer[tx.peer]

    def _trunk_failed(self, index: int, peer: Peer, why: str, now: float) -> None:
        retry = self.settings.trunk_retry
        if index < 0 or retry <= 0:
            return
        if index not in self._trunk_down:
            self._events.append(TrunkState(
                peer, False, f"{why}: new calls try it after the other trunks for {retry:g} s"))
        self._trunk_down[index] = now + retry

    def _add_client(self, tx: ClientTransaction) -> None:
        self._client[tx.key] = tx
        of_peer = self._client_by_peer.get(tx.peer)
        if of_peer is None:
            of_peer = self._client_by_peer[tx.peer] = {}
        of_peer[tx.key] = tx

    # ---- helpers -------------------------------------------------------------------------

    def _reply_stateless(
        self, req: Request, source: Peer, status: int, reason: str,
        extra: tuple[Header, ...] = (),
    ) -> None:
        # Answered to where it came from, so even a request whose Via cannot be parsed
        # (e.g. SIP/7.0, RFC 4475 §3.1.2.16) gets its 505.
        try:
            response = make_response(req, status, reason, extra, to_tag=self._stateless_tag(req))
            self.send(source, response.serialize())
        except (ProtocolError, ValueError) as exc:  # not even a response can be built: drop
            self._problem("dropped", f"cannot answer: {exc}", source)

    @staticmethod
    def _stateless_tag(req: Request) -> str:
        """The To-tag of a stateless reply: a hash of what the request and its ACK share
        (Call-ID, CSeq number, From tag, top Via), so that the ACK can be recognised."""
        num = (req.get("cseq") or "").strip().partition(" ")[0]
        seed = f"{req.call_id}|{num}|{req.tag('from')}|{req.get('via')}"
        return local_tag(hashlib.blake2b(seed.encode(), digest_size=8).hexdigest())

    def _problem(self, kind: str, detail: str, peer: Peer | None) -> None:
        self._events.append(Problem(kind, detail, peer))

