"""RFC 3261 timer values (§17, Table 4) and a timer queue driven by an injected clock.

Nothing here reads a clock: callers pass `now` in, and ask `next_deadline()` when to come
back (aioquic's `get_timer()` / `handle_timer(now)` shape).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

LONG = 5.0  # seconds: a timer this far away waits in a bucket (T2-capped retransmits do not)
SWEEP = 0.1  # seconds between two bucket sweeps
CYCLE = 5.0  # seconds in which every bucket is swept once


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

    Short timers (retransmissions, failover) wait in a heap. Long ones (LONG seconds or
    more away: B, D, F, H, J, K, L, M, C), most of which are cancelled long before they
    are due, wait in one-second buckets and join the heap in the second they fall due. So
    the heap stays small, and it never has to be rebuilt under load: with every timer in
    one heap, cancelled timers B, F and C piled up at 1,000 calls/s until a rebuild of some
    300,000 entries stalled the loop for ~100 ms every half minute.

    Cancelling drops the callback at once (so whatever it holds is freed); the entry left
    behind is skipped when reached, and the buckets are swept of such entries a few at a
    time (every bucket about every CYCLE seconds).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._buckets: dict[int, list[tuple[float, int]]] = {}
        self._seconds: list[int] = []  # the buckets' seconds, as a heap
        self._callbacks: dict[int, Callable[[float], None]] = {}
        self._seq = itertools.count()
        self._clock = -math.inf  # the last `now` fire() was given: what "far" is measured from
        self._next_sweep = -math.inf
        self._swept = 0  # position of the bucket swept last, in `_seconds`

    def schedule(self, deadline: float, callback: Callable[[float], None]) -> int:
        handle = next(self._seq)
        self._callbacks[handle] = callback
        if deadline - self._clock < LONG:
            heapq.heappush(self._heap, (deadline, handle))
        else:
            second = math.floor(deadline)
            bucket = self._buckets.get(second)
            if bucket is None:
                bucket = self._buckets[second] = []
                heapq.heappush(self._seconds, second)
            bucket.append((deadline, handle))
        return handle

    def cancel(self, handle: int) -> None:
        if self._callbacks.pop(handle, None) is not None and len(self._heap) > 2 * len(
            self._callbacks
        ) + 1024:
            self._heap = [entry for entry in self._heap if entry[1] in self._callbacks]
            heapq.heapify(self._heap)

    def next_deadline(self) -> float | None:
        if not self._callbacks:  # nothing live: forget what cancelled timers left behind
            if self._heap or self._seconds:
                self._heap.clear()
                self._buckets.clear()
                self._seconds.clear()
            return None
        heap = self._heap
        while heap and heap[0][1] not in self._callbacks:
            heapq.heappop(heap)
        first = heap[0][0] if heap else None
        seconds = self._seconds
        if seconds and (first is None or seconds[0] < first):
            return float(seconds[0])  # a bucket to open (at worst a wake-up for nothing)
        return first

    def fire(self, now: float) -> int:
        """Run every callback whose deadline has passed; returns how many ran."""
        self._clock = now
        seconds, callbacks = self._seconds, self._callbacks
        while seconds and seconds[0] <= now:
            for entry in self._buckets.pop(heapq.heappop(seconds)):
                if entry[1] in callbacks:
                    heapq.heappush(self._heap, entry)
        if now >= self._next_sweep:
            self._sweep(now)
        heap, ran = self._heap, 0
        while heap and heap[0][0] <= now:
            _, handle = heapq.heappop(heap)
            callback = callbacks.pop(handle, None)
            if callback is not None:
                callback(now)
                ran += 1
            heap = self._heap  # a callback may have compacted the heap
        return ran

    def _sweep(self, now: float) -> None:
        """Drop the cancelled entries of a few buckets, taken in turn, so that each bucket
        is swept about every CYCLE seconds."""
        self._next_sweep = now + SWEEP
        seconds, buckets, callbacks = self._seconds, self._buckets, self._callbacks
        for _ in range(math.ceil(len(seconds) * SWEEP / CYCLE)):
            self._swept = (self._swept + 1) % len(seconds)
            bucket = buckets[seconds[self._swept]]
            bucket[:] = [entry for entry in bucket if entry[1] in callbacks]

    def __len__(self) -> int:
        return len(self._callbacks)
