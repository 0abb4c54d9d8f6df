"""Overload protection: while sipguard falls behind, new calls get 503 + Retry-After.

Sans-IO, like the core: readings and the clock come in, state changes come out. The
transport edge (`transport/backlog.py`) samples the UDP receive queues on a timer and
hands each `Reading` to `OverloadGuard.observe`; `Shedder` is the core's admission hook.

Why the receive queue, not the event loop's lag: under overload the backlog waits in the
kernel's socket buffer, and the loop reads it in batches while its timers stay nearly on
time. How long the datagrams just read had waited in that queue is what a dialer and a
trunk feel: past RFC 3261's T1 (0.5 s) round trips, they retransmit, which multiplies
the load (RFC 6357 §2: the collapse an overload control must prevent).

States and inputs (one reading every `sample_interval`; f = fraction of new calls shed):

    accepting  + high reading                 -> overloaded, f = ENTRY      (Started)
    overloaded + high reading                 -> f rises by RISE per second
    overloaded + low reading                  -> f falls by FALL per second
    overloaded + f = 0 and low for `hold`     -> accepting                  (Ended)
    overloaded + `log_interval` elapsed       -> a summary                  (Shedding)

High: queue delay >= max_queue_delay, or queue fill >= max_queue_fill, or the kernel
dropped datagrams since the last reading. Low: delay and fill under half their marks and
no new drops. The gap (hysteresis) and `hold` keep one overload one episode: two log
lines and at most one summary per `log_interval`, however many calls are shed; the
fraction settles where the gateway keeps up, instead of flapping between all and none.

Only NEW calls are shed (initial INVITEs from a dialer: the admission hook is called for
nothing else). Responses, ACK, CANCEL, BYE and re-INVITEs still pass, so calls in progress
finish, and each shed call costs a small fraction of a placed one: the core answers it
statelessly (INVITE in, 503 out, ACK in; no transaction, no 100, nothing to the trunk)
and answers its retransmissions the same way. Emergency numbers, and an INVITE re-sent
after a 401/407 challenge (the call is under way: `Gate.decided`), are never shed.

What a shed call leaves in the log: no `call.decision` line and no decisions/attempts
row. No decision about the number was made (the policy never ran, no rule, no decision
id), the call was not placed (frequency caps must not count it), and writing a log line
and a SQLite row per shed call would put back, at the worst moment, the per-call work
shedding exists to avoid. The episode is logged instead, as Kamailio's pike logs a
blocked source and not each packet: `overload.start` (why: the delay, fill and drops
measured), `overload.shedding` summaries (calls shed, by campaign) and `overload.end`
(duration, calls shed by campaign, worst delay, kernel drops). A compliance officer
asking why a call was not placed finds the 503 with `Reason: ...text="overload"` in the
dialer's records and the episode covering its time here; a store-unavailable 503 differs:
the policy was asked and failed, so that one is a decision and is logged per call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sipguard.policy.gate import campaign_of
from sipguard.policy.numbers import Numbers, emergency_dialled
from sipguard.sip.message import Header, Request
from sipguard.sip.peer import Peer
from sipguard.sip.verdict import Block

REASON = "overload"  # the reason text on the wire (Reason, Warning) and in the log
ENTRY = 0.5  # fraction of new calls shed from the first high reading
RISE = 5.0  # per second while readings are high: all new calls shed 0.1 s after entry
FALL = 1.0  # per second while readings are low: from all to none in 1 s


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of the UDP receive queues (the worst socket's, when several)."""

    delay: float  # seconds the last datagram read had waited in the kernel; 0 when none queued
    queued: int  # bytes in the receive queue (kernel accounting: ~2.3 KiB per small datagram)
    fill: float  # queued / the socket's receive buffer size, 0..1
    drops: int  # datagrams the kernel dropped for a full buffer, since the socket opened


@dataclass(frozen=True, slots=True)
class Marks:
    """When to shed and when to stop (from `[overload]`)."""

    max_delay: float
    max_fill: float
    hold: float
    log_interval: float


@dataclass(frozen=True, slots=True)
class Started:
    cause: str  # "queue-delay", "queue-fill" or "drops"
    reading: Reading


@dataclass(frozen=True, slots=True)
class Shedding:
    """A summary while overloaded: calls shed since the last one, by campaign."""

    shed: int
    by_campaign: dict[str, int]
    reading: Reading
    worst_delay: float
    fraction: float  # of new calls shed now


@dataclass(frozen=True, slots=True)
class Ended:
    duration: float  # seconds from Started to now
    shed: int  # calls shed in the whole episode
    by_campaign: dict[str, int]
    worst_delay: float  # the longest queue delay seen in the episode
    drops: int  # datagrams the kernel dropped during the episode
    reading: Reading


Transition = Started | Shedding | Ended


@dataclass(slots=True)
class _Episode:
    started: float
    drops_at_start: int
    last_summary: float
    worst_delay: float
    calm_since: float | None = None
    shed: Counter[str] = field(default_factory=Counter)
    since_summary: Counter[str] = field(default_factory=Counter)


class OverloadGuard:
    """Which new calls are shed now, from the readings it was given.

    Loss-based control (RFC 6357 §5.5; Kamailio ratelimit's feedback algorithm): while
    overloaded, a fraction of new calls is shed. It rises by RISE per second while the
    readings are high, falls by FALL per second while they are low, and stays while they
    are in between; the episode ends once it has been 0 with low readings for `hold`.
    Shedding all new calls until the queue is empty would leave the gateway idle after
    the backlog drains (measured: 190 calls/s placed of the ~1,000 it can carry).
    """

    __slots__ = ("_credit", "_drops", "_episode", "_last", "episodes", "fraction", "marks",
                 "overloaded", "shed_total")

    def __init__(self, marks: Marks) -> None:
        self.marks = marks
        self.overloaded = False  # read by Shedder on every new call
        self.fraction = 0.0  # of new calls shed while overloaded
        self.shed_total = 0  # calls shed since start (all episodes)
        self.episodes = 0
        self._credit = 0.0
        self._drops: int | None = None
        self._last = 0.0
        self._episode: _Episode | None = None

    def observe(self, reading: Reading, now: float) -> Transition | None:
        """Take one reading; what changed, for the log (None most of the time)."""
        new_drops = self._drops is not None and reading.drops > self._drops
        self._drops = reading.drops
        elapsed, self._last = now - self._last, now
        episode = self._episode
        if episode is None:
            cause = self._cause(reading, new_drops)
            if cause is None:
                return None
            self._episode = _Episode(now, reading.drops, now, reading.delay)
            self.overloaded = True
            self.fraction = ENTRY
            self.episodes += 1
            return Started(cause, reading)
        episode.worst_delay = max(episode.worst_delay, reading.delay)
        if self._cause(reading, new_drops) is not None:
            self.fraction = min(1.0, self.fraction + RISE * elapsed)
            episode.calm_since = None
        elif self._low(reading):
            self.fraction = max(0.0, self.fraction - FALL * elapsed)
            if self.fraction > 0:
                episode.calm_since = None
            elif episode.calm_since is None:
                episode.calm_since = now
            elif now - episode.calm_since >= self.marks.hold:
                return self._end(episode, reading, now)
        else:
            episode.calm_since = None
        if now - episode.last_summary >= self.marks.log_interval:
            summary = Shedding(sum(episode.since_summary.values()), dict(episode.since_summary),
                               reading, episode.worst_delay, self.fraction)
            episode.since_summary.clear()
            episode.last_summary = now
            return summary
        return None

    def admit(self) -> bool:
        """While overloaded: whether this new call goes on (1 - fraction of them do,
        evenly spread: a credit, not a coin, so a test knows which)."""
        self._credit += 1.0 - self.fraction
        if self._credit >= 1.0:
            self._credit -= 1.0
            return True
        return False

    def _end(self, episode: _Episode, reading: Reading, now: float) -> Ended:
        self._episode = None
        self.overloaded = False
        self._credit = 0.0
        return Ended(now - episode.started, sum(episode.shed.values()), dict(episode.shed),
                     episode.worst_delay, reading.drops - episode.drops_at_start, reading)

    def _low(self, reading: Reading) -> bool:
        marks = self.marks
        return reading.delay < marks.max_delay / 2 and reading.fill < marks.max_fill / 2

    def _cause(self, reading: Reading, new_drops: bool) -> str | None:
        if new_drops:
            return "drops"
        if reading.delay >= self.marks.max_delay:
            return "queue-delay"
        if reading.fill >= self.marks.max_fill:
            return "queue-fill"
        return None

    def shed(self, campaign: str) -> None:
        """Count one call answered 503 (Shedder calls this)."""
        self.shed_total += 1
        episode = self._episode
        if episode is not None:
            episode.shed[campaign] += 1
            episode.since_summary[campaign] += 1


def overload_blocks(retry_after: int, host: str) -> tuple[Block, ...]:
    """503 Service Unavailable with Retry-After (RFC 3261 §21.5.4), and the reason in the
    same Reason (RFC 3326) and Warning (§20.43) headers as every other refusal.

    One answer per Retry-After value spread over retry_after ± 20%: calls shed together
    are told to come back at different times, not all in the same second (RFC 6357 §4:
    synchronised retries make the next overload)."""
    spread = retry_after // 5  # none under 5 s
    values = sorted({retry_after - spread, retry_after, retry_after + spread})
    return tuple(Block(503, "Service Unavailable", (
        Header.make("Retry-After", str(value)),
        Header.make("Reason", f'SIP;cause=503;text="{REASON}"'),
        Header.make("Warning", f'399 {host} "{REASON}"'),
    )) for value in values)


def emergency_exempt(
    numbers: Numbers, number_source: str, emergency: tuple[str, ...]
) -> Callable[[Request], bool]:
    """Whether a call dials an emergency number (policy.emergency_numbers, after a strip
    prefix): those are never shed, as the policy never blocks them (rule `emergency`)."""
    table = frozenset(emergency)

    def exempt(request: Request) -> bool:
        raw = numbers.called_raw(request, number_source)
        return emergency_dialled(raw, table, numbers.strip_prefixes) is not None

    return exempt


def none_decided(_request: Request, _now: float) -> bool:
    """No call is known to be under way (when there is no gate to ask)."""
    return False


class Shedder:
    """The core's admission hook (`sip.verdict.AdmissionHook`): while `guard.overloaded`,
    a share of new calls get one of `blocks` at once, statelessly, before any transaction, 100
    Trying or policy decision (so no decision record: see the module's docstring).
    Emergency numbers (`exempt`) and calls under way (`decided`) are never shed."""

    __slots__ = ("blocks", "campaign_header", "decided", "exempt", "guard")

    def __init__(
        self,
        guard: OverloadGuard,
        blocks: tuple[Block, ...],
        exempt: Callable[[Request], bool] = lambda _request: False,
        campaign_header: str = "x-campaign",
        decided: Callable[[Request, float], bool] = none_decided,
    ) -> None:
        self.guard = guard
        self.blocks = blocks  # handed out in turn (overload_blocks: spread Retry-After)
        self.exempt = exempt
        self.campaign_header = campaign_header.lower()
        self.decided = decided  # a call under way (Gate.decided: re-sent after a challenge)

    def __call__(self, request: Request, source: Peer, now: float) -> Block | None:
        guard = self.guard
        if (not guard.overloaded or self.exempt(request) or self.decided(request, now)
                or guard.admit()):
            return None
        campaign = campaign_of(request, self.campaign_header)
        guard.shed(campaign)
        return self.blocks[guard.shed_total % len(self.blocks)]
