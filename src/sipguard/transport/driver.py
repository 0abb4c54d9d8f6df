"""Runs the sans-IO proxy core on an asyncio loop (aioquic's protocol.py shape).

Every input is handed to the core with the loop's clock, then `flush()` sends what the
core produced, hands its events to the log and re-arms the single loop timer.
"""

from __future__ import annotations

import asyncio
import math
import traceback
from collections.abc import Callable

from sipguard.sip.peer import Peer
from sipguard.sip.proxy import CoreEvent, Problem, ProxyCore

Sender = Callable[[Peer, bytes], None]
TICK = 0.01  # seconds: the granularity of the loop timer that drives the core's timers
STALL = 0.05  # seconds a timer may fire late before its expiry waits for pending I/O
EventSink = Callable[[CoreEvent], None]


class CoreDriver:
    def __init__(self, core: ProxyCore, loop: asyncio.AbstractEventLoop, on_event: EventSink):
        self.core = core
        self.loop = loop
        self.on_event = on_event
        self.senders: dict[str, Sender] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._deferred = False
        self._received = 0  # datagrams handled since the last deferred timer

    def receive(self, data: bytes, source: Peer) -> None:
        self._received += 1
        try:
            self.core.receive(data, source, self.loop.time())
        except Exception as exc:  # a fault in the core costs this message, not the gateway
            start = data[: data.find(b"\r\n")] if b"\r\n" in data else data[:80]
            self._fault(exc, f"handling {start.decode('utf-8', 'replace')!r}", source)
        self.flush()

    def transport_error(self, peer: Peer) -> None:
        self.core.transport_error(peer, self.loop.time())
        self.flush()

    def flush(self) -> None:
        core = self.core
        for peer, data in core.datagrams_to_send():
            self.senders[peer.transport](peer, data)
        for event in core.events():
            self.on_event(event)
        deadline = core.get_timer()
        if deadline is not None:
            # Wake on TICK boundaries: timers due within the same tick fire in one wake-up
            # and the loop timer is re-armed once per tick, not once per transaction.
            # RFC 3261 timers are 500 ms and up; 10 ms late changes nothing on the wire.
            deadline = math.ceil(deadline / TICK) * TICK
            if self._armed is None or deadline < self._armed:
                if self._timer is not None:
                    self._timer.cancel()
                self._armed = deadline
                self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        now = self.loop.time()
        if self._armed is not None and now - self._armed > STALL and (
            self._received or not self._deferred
        ):
            # The loop was stalled (a busy host, a long GC) and a backlog of datagrams is
            # waiting; the loop reads only a few dozen per round. Let it read on while
            # they keep coming, or a trunk that answered in time looks silent (false 408).
            self._deferred = True
            self._received = 0
            self._timer = self.loop.call_later(0.001, self._on_timer)  # 0 would re-run now
            return
        self._deferred = False
        self._timer = None
        self._armed = None
        try:
            self.core.handle_timer(now)
        except Exception as exc:  # the timers due after the failing one fire next tick
            self._fault(exc, "running timers", None)
        self.flush()

    def _fault(self, exc: Exception, doing: str, peer: Peer | None) -> None:
        """Report a bug in the core as a `sip.problem` line an operator can act on: what it
        was doing, the exception and the line that raised it (compiled code names it too).
        Whatever the core had queued before it failed is still sent."""
        where = traceback.extract_tb(exc.__traceback__)[-1:]
        at = f" at {where[0].filename}:{where[0].lineno} in {where[0].name}" if where else ""
        detail = f"{type(exc).__name__}: {exc}{at}, {doing}"
        self.on_event(Problem("internal-error", detail, peer))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
