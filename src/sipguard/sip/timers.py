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
    """Deadlines with callbacks; cancelled entries are skipped lazily."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[float], None]]] = []
        self._cancelled: set[int] = set()
        self._seq = itertools.count()

    def schedule(self, deadline: float, callback: Callable[[float], None]) -> int:
        handle = next(self._seq)
        heapq.heappush(self._heap, (deadline, handle, callback))
        return handle

    def cancel(self, handle: int) -> None:
        self._cancelled.add(handle)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][1] in self._cancelled:
            self._cancelled.discard(heapq.heappop(heap)[1])
        return heap[0][0] if heap else None

    def fire(self, now: float) -> int:
        """Run every callback whose deadline has passed; returns how many ran."""
        heap, ran = self._heap, 0
        while heap and heap[0][0] <= now:
            _, handle, callback = heapq.heappop(heap)
            if handle in self._cancelled:
                self._cancelled.discard(handle)
                continue
            callback(now)
            ran += 1
        return ran

    def __len__(self) -> int:
        return len(self._heap) - len(self._cancelled)
