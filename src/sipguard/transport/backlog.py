"""Measures the UDP receive backlog on a timer and feeds `overload.OverloadGuard`.

Two kernel facts per socket, both Linux, both read between batches of datagrams (never per
datagram, so the hot path pays nothing):

* `getsockopt(SOL_SOCKET, SO_MEMINFO)`: the bytes waiting in the receive queue
  (`SK_MEMINFO_RMEM_ALLOC`, kernel accounting: ~2,304 bytes for a 900-byte datagram on
  loopback), the buffer size (`SK_MEMINFO_RCVBUF`) and the datagrams dropped for a full
  buffer (`SK_MEMINFO_DROPS`). About 1.5 µs a call. The kernel gives a UDP socket's
  memory back lazily (`udp_rmem_release`: a quarter of the buffer at a time, all of it
  when the queue is empty), so the bytes may count datagrams already read, up to a
  quarter of the buffer: exact at 0, coarse above. The delay is the finer measure.
* `ioctl(SIOCGSTAMP)`: the kernel's arrival time of the last datagram read from the socket.
  Read right after the loop read a batch, `now - arrival` is how long that datagram
  waited: the queue delay (CoDel's sojourn time, RFC 8289). About 4 µs, at every sample.
  The first call turns receive timestamps on for the socket (the probe makes it when
  created: datagrams queued before carry no arrival time).

The delay is counted only when the queue is not empty and a datagram was read since the
last sample (the arrival time moved since then); with an empty queue it is 0; with no read
since the last sample (the loop was blocked, or a datagram just arrived on an idle socket)
the previous value stands. Where neither call works (not Linux), `QueueProbe.read` returns
None and the gateway says once that it cannot measure its backlog.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import struct
import time
from collections.abc import Callable, Sequence

from sipguard.overload import OverloadGuard, Reading, Transition

SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)  # Linux include/uapi/asm-generic/socket.h
SK_MEMINFO_RMEM_ALLOC, SK_MEMINFO_RCVBUF, SK_MEMINFO_DROPS = 0, 1, 8  # linux/sock_diag.h
SK_MEMINFO_BYTES = 9 * 4
SIOCGSTAMP = 0x8906  # linux/sockios.h (SIOCGSTAMP_OLD): a struct timeval
TIMEVAL = struct.Struct("@ll")
MEMINFO = struct.Struct("@9I")


class QueueProbe:
    """The backlog of one UDP socket."""

    __slots__ = ("_delay", "_stamp", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._stamp: float | None = None
        self._delay = 0.0
        # The first SIOCGSTAMP turns receive timestamps on; datagrams queued before it
        # carry none (the kernel then answers "now": a delay of 0). So ask once, first.
        self._arrival()

    def read(self, wall: float) -> Reading | None:
        """The socket's backlog at wall-clock time `wall`; None if it cannot be measured."""
        try:
            info = MEMINFO.unpack(self.sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO,
                                                       SK_MEMINFO_BYTES))
        except (OSError, struct.error):
            return None
        queued, size, drops = (info[SK_MEMINFO_RMEM_ALLOC], info[SK_MEMINFO_RCVBUF],
                               info[SK_MEMINFO_DROPS])
        # Asked at every sample: a stamp that moved since the last one belongs to a datagram
        # read within one interval, so `wall - stamp` is its wait (plus at most an interval).
        # A stamp that did not move may be minutes old: a datagram just arrived on an idle
        # socket would read as minutes of backlog.
        stamp = self._arrival()
        moved = stamp is not None and stamp != self._stamp
        self._stamp = stamp
        if queued == 0:
            self._delay = 0.0
        elif moved and stamp is not None:
            self._delay = max(0.0, wall - stamp)
        return Reading(self._delay, queued, queued / size if size else 0.0, drops)

    def _arrival(self) -> float | None:
        try:
            sec, usec = TIMEVAL.unpack(fcntl.ioctl(self.sock.fileno(), SIOCGSTAMP,
                                                   bytes(TIMEVAL.size)))
        except OSError:  # ENOENT: nothing read since timestamps were turned on
            return None
        return float(sec) + float(usec) / 1e6


def worst(readings: Sequence[Reading]) -> Reading:
    """Several sockets: the longest delay, the fullest queue, all drops."""
    return Reading(
        max(r.delay for r in readings),
        max(r.queued for r in readings),
        max(r.fill for r in readings),
        sum(r.drops for r in readings),
    )


class BacklogSampler:
    """Reads every probe each `interval` seconds on the loop and tells the guard."""

    def __init__(
        self,
        probes: Sequence[QueueProbe],
        guard: OverloadGuard,
        loop: asyncio.AbstractEventLoop,
        interval: float,
        on_transition: Callable[[Transition], None],
        on_unmeasurable: Callable[[], None],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.probes = tuple(probes)
        self.guard = guard
        self.loop = loop
        self.interval = interval
        self.on_transition = on_transition
        self.on_unmeasurable = on_unmeasurable
        self.wall_clock = wall_clock
        self.last: Reading | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._timer = self.loop.call_later(0, self._tick)

    def _tick(self) -> None:
        wall = self.wall_clock()
        readings = [r for p in self.probes if (r := p.read(wall)) is not None]
        if len(readings) < len(self.probes) or not readings:
            self._timer = None
            self.on_unmeasurable()
            return
        reading = readings[0] if len(readings) == 1 else worst(readings)
        self.last = reading
        change = self.guard.observe(reading, self.loop.time())
        if change is not None:
            self.on_transition(change)
        self._timer = self.loop.call_later(self.interval, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
