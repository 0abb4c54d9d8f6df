"""RFC 3261 timer values (§17, Table 4) and a timer queue driven by an injected clock.

Nothing here reads a clock: callers pass `now` in, and ask `next_deadline()` when to come
back (aioquic's `get_timer()` / `handle_timer(now)` shape).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimerValues:
    t1: float = 0.5  # RTT estimate
    t2: float = 4.0  # longest retransmit interval for non-INVITE requests and INVITE responses
    t4: float = 5.0  # longest time a message stays in the network

    @property
    def b(self) -> float:
        """Timers B, F, H, L, M and J (unreliable): 64*T1."""
        return 64 * self.t1

    def d(self, reliable: bool) -> float:
        """Timer D: at least 32 s for unreliable transports, 0 for reliable ones."""
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    def k(self, reliable: bool) -> float:
        """Timers I and K: T4 for unreliable transports, 0 for reliable ones."""
        return 0.0 if reliable else self.t4


class TimerQueue:
    """Deadlines with callbacks.

    Cancelling drops the callback at once (so whatever it holds is freed); the small heap
    entry left behind is skipped when reached, and the heap is compacted when such entries
    outnumber the live ones (long timers like C would otherwise pile up under load).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._callbacks: dict[int, Callable[[float], None]] = {}
        self._seq = itertools.count()

    def schedule(self, deadline: float, callback: Callable[[float], None]) -> int:
        handle = next(self._seq)
        heapq.heappush(self._heap, (deadline, handle))
        self._callbacks[handle] = callback
        return handle

    def cancel(self, handle: int) -> None:
        if self._callbacks.pop(handle, None) is not None and len(self._heap) > 2 * len(
            self._callbacks
        ) + 1024:
            self._heap = [entry for entry in self._heap if entry[1] in self._callbacks]
            heapq.heapify(self._heap)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][1] not in self._callbacks:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire(self, now: float) -> int:
        """Run every callback whose deadline has passed; returns how many ran."""
        heap, ran = self._heap, 0
        while heap and heap[0][0] <= now:
            _, handle = heapq.heappop(heap)
            callback = self._callbacks.pop(handle, None)
            if callback is not None:
                callback(now)
                ran += 1
            heap = self._heap  # a callback may have compacted the heap
        return ran

    def __len__(self) -> int:
        return len(self._callbacks)
