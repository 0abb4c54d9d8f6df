"""The timer queue: exact deadlines in order, whatever waits in the heap or in a bucket, and
cancelled long timers that never reach the heap (so it is never rebuilt under load)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.sip.timers import TimerQueue

DELAYS = [0.0, 0.5, 1.0, 2.0, 4.0, 5.0, 32.0, 181.0]  # RFC 3261 timers and Timer C
# One step: schedule a timer `delay` s from now, cancel the k-th timer scheduled so far, or
# let time run `advance` s (firing what falls due on the way, each at its own deadline).
steps = st.lists(st.one_of(
    st.tuples(st.just("schedule"), st.sampled_from(DELAYS) | st.floats(0, 200)),
    st.tuples(st.just("cancel"), st.integers(0, 60)),
    st.tuples(st.just("advance"), st.floats(0, 60)),
), max_size=60)


class Clock:
    """Runs a queue the way the proxy driver does: wake at next_deadline(), fire()."""

    def __init__(self, queue: TimerQueue, now: float) -> None:
        self.queue, self.now = queue, now

    def run_until(self, to: float) -> None:
        while (deadline := self.queue.next_deadline()) is not None and deadline <= to:
            self.now = max(self.now, deadline)
            self.queue.fire(self.now)
        self.now = max(self.now, to)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_timers_fire_once_at_their_deadline_in_order(program: list[tuple[str, float]]) -> None:
    queue = TimerQueue()
    clock = Clock(queue, 100.0)
    fired: list[tuple[float, float, int]] = []  # (when, deadline, order scheduled)
    handles: list[int] = []
    cancelled: set[int] = set()  # orders cancelled before they fired
    for op, arg in program:
        if op == "schedule":
            order, deadline = len(handles), clock.now + arg
            handles.append(queue.schedule(
                deadline, lambda t, d=deadline, o=order: fired.append((t, d, o))))
        elif op == "cancel" and handles:
            order = int(arg) % len(handles)
            queue.cancel(handles[order])
            if order not in {o for _, _, o in fired}:
                cancelled.add(order)
        else:
            clock.run_until(clock.now + arg)
    clock.run_until(clock.now + 400)
    assert sorted(o for _, _, o in fired) == [o for o in range(len(handles)) if o not in cancelled]
    assert all(when == deadline for when, deadline, _ in fired)  # never early, never late
    assert [(d, o) for _, d, o in fired] == sorted((d, o) for _, d, o in fired)
    assert len(queue) == 0 and queue.next_deadline() is None


def test_cancelled_long_timers_never_reach_the_heap_and_are_swept() -> None:
    queue = TimerQueue()
    clock = Clock(queue, 0.0)
    for tick in range(6000):  # ten minutes, fired every 0.1 s, at 500 calls/s
        now = tick / 10
        for _ in range(50):
            for delay in (32.0, 181.0):  # timers B and C, cancelled at the final response
                queue.cancel(queue.schedule(now + delay, lambda t: None))
            queue.schedule(now + 32.0, lambda t: None)  # timer L, left to fire
        clock.run_until(now)
        assert len(queue._heap) <= 500  # one second of timers L at most, none of B or C
    dead = sum(map(len, queue._buckets.values())) - len(queue)
    assert 0 <= dead < 500 * 2 * 10  # not ten minutes of cancelled timers: seconds of them
