"""The overload state logic, sans-IO: readings and a clock in, transitions and verdicts out."""

from __future__ import annotations

import pytest

from sipguard.app import shedder as app_shedder
from sipguard.config import parse_config
from sipguard.errors import ConfigError
from sipguard.overload import (
    ENTRY,
    Ended,
    Marks,
    OverloadGuard,
    Reading,
    Shedder,
    Shedding,
    Started,
    emergency_exempt,
    overload_blocks,
)
from sipguard.policy.numbers import Numbers
from sipguard.sip.message import Request
from sipguard.sip.parser import parse_message
from sipguard.sip.peer import Peer
from sipguard.sip.verdict import Block

MARKS = Marks(max_delay=0.1, max_fill=0.5, hold=1.0, log_interval=10.0)
QUIET = Reading(0.0, 0, 0.0, 0)
HIGH = Reading(0.15, 1_500_000, 0.09, 0)
MIDDLE = Reading(0.07, 600_000, 0.04, 0)  # under the mark, over half of it
STEP = 0.01


def feed(guard: OverloadGuard, reading: Reading, start: float, seconds: float) -> list[object]:
    """Readings every STEP from `start` for `seconds`; the transitions they produced."""
    out = []
    for i in range(round(seconds / STEP)):
        change = guard.observe(reading, start + i * STEP)
        if change is not None:
            out.append(change)
    return out


def test_quiet_readings_never_shed() -> None:
    guard = OverloadGuard(MARKS)
    assert feed(guard, Reading(0.04, 200_000, 0.2, 0), 0.0, 5.0) == []
    assert not guard.overloaded and guard.episodes == 0


@pytest.mark.parametrize(
    ("reading", "cause"),
    [(HIGH, "queue-delay"), (Reading(0.0, 9_000_000, 0.55, 0), "queue-fill")],
)
def test_a_high_reading_starts_an_episode(reading: Reading, cause: str) -> None:
    guard = OverloadGuard(MARKS)
    guard.observe(QUIET, 0.0)
    change = guard.observe(reading, STEP)
    assert change == Started(cause, reading)
    assert guard.overloaded and guard.fraction == ENTRY and guard.episodes == 1


def test_drops_start_an_episode_but_drops_from_before_do_not() -> None:
    guard = OverloadGuard(MARKS)
    assert guard.observe(Reading(0.0, 0, 0.0, 500), 0.0) is None  # dropped before we looked
    assert guard.observe(Reading(0.0, 0, 0.0, 500), STEP) is None
    change = guard.observe(Reading(0.0, 0, 0.0, 503), 2 * STEP)
    assert isinstance(change, Started) and change.cause == "drops"


def test_admit_sheds_the_fraction_evenly_and_the_first_call_of_an_episode() -> None:
    guard = OverloadGuard(MARKS)
    guard.observe(HIGH, 0.0)
    assert guard.fraction == 0.5
    assert [guard.admit() for _ in range(6)] == [False, True, False, True, False, True]


def test_the_fraction_rises_while_high_holds_in_between_and_falls_while_low() -> None:
    guard = OverloadGuard(MARKS)
    feed(guard, HIGH, 0.0, 0.2)
    assert guard.fraction == 1.0
    assert not any(guard.admit() for _ in range(100))
    feed(guard, MIDDLE, 0.2, 0.5)
    assert guard.fraction == 1.0
    feed(guard, QUIET, 0.7, 0.5)
    assert 0.4 < guard.fraction < 0.6 and guard.overloaded


def test_one_episode_ends_once_after_hold_with_its_counts() -> None:
    guard = OverloadGuard(MARKS)
    changes = feed(guard, HIGH, 0.0, 0.3)
    for campaign in ("renewals", "renewals", "default"):
        guard.shed(campaign)
    quiet = Reading(0.0, 0, 0.0, 7)  # 7 datagrams dropped in the episode (the counter grows)
    changes += feed(guard, quiet, 0.3, 1.5)
    assert guard.overloaded, "ended before the fraction reached 0 and stayed there for hold"
    changes += feed(guard, quiet, 1.8, 1.0)
    assert [type(c) for c in changes] == [Started, Ended]
    ended = changes[1]
    assert isinstance(ended, Ended)
    assert ended.shed == 3 and ended.by_campaign == {"renewals": 2, "default": 1}
    assert ended.worst_delay == HIGH.delay and ended.drops == 7
    assert 2.3 < ended.duration < 2.6  # 0.3 high, (drops: higher,) 1 s falling, 1 s hold
    assert not guard.overloaded and guard.shed_total == 3
    assert guard.admit(), "the credit of the last episode was kept"


def test_a_new_high_reading_while_falling_resets_the_calm() -> None:
    guard = OverloadGuard(MARKS)
    changes = feed(guard, HIGH, 0.0, 0.2)
    changes += feed(guard, QUIET, 0.2, 1.9)
    changes += feed(guard, HIGH, 2.1, 0.05)
    changes += feed(guard, QUIET, 2.15, 1.0)  # hold counts again from when f is back at 0
    assert [type(c) for c in changes] == [Started], "one burst inside the hold is one episode"
    assert guard.overloaded
    changes += feed(guard, QUIET, 3.15, 0.5)
    assert [type(c) for c in changes] == [Started, Ended]


def test_summaries_while_shedding_come_once_per_log_interval() -> None:
    guard = OverloadGuard(Marks(0.1, 0.5, 1.0, log_interval=2.0))
    guard.observe(HIGH, 0.0)
    guard.shed("default")
    changes = feed(guard, HIGH, STEP, 5.0)
    assert [type(c) for c in changes] == [Shedding, Shedding]
    first = changes[0]
    assert isinstance(first, Shedding)
    assert first.shed == 1 and first.by_campaign == {"default": 1} and first.fraction == 1.0
    assert isinstance(changes[1], Shedding) and changes[1].shed == 0


# -- the hook ---------------------------------------------------------------------------


def invite(user: str, campaign: str | None = None) -> Request:
    extra = f"X-Campaign: {campaign}\r\n" if campaign else ""
    msg = parse_message(
        f"INVITE sip:{user}@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\nMax-Forwards: 70\r\n"
        "From: <sip:+13125557000@127.0.0.1>;tag=f\r\nTo: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: c1@test\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n".encode()
    )
    assert isinstance(msg, Request)
    return msg


def shedder(guard: OverloadGuard) -> Shedder:
    exempt = emergency_exempt(Numbers("US", ("9",)), "ruri", ("911", "112"))
    return Shedder(guard, overload_blocks(7, "gw.example"), exempt)


DIALER = Peer("udp", "127.0.0.1", 5070)


def test_calls_are_admitted_while_not_overloaded() -> None:
    guard = OverloadGuard(MARKS)
    assert shedder(guard)(invite("+12125551234"), DIALER, 0.0) is None
    assert guard.shed_total == 0


def test_a_shed_call_gets_503_retry_after_and_is_counted_by_campaign() -> None:
    guard = OverloadGuard(MARKS)
    feed(guard, HIGH, 0.0, 0.2)
    refusal = shedder(guard)(invite("+12125551234", "renewals"), DIALER, 0.3)
    assert isinstance(refusal, Block)
    assert (refusal.status, refusal.reason) == (503, "Service Unavailable")
    headers = {h.name: h.raw.decode() for h in refusal.headers}
    assert headers == {
        "retry-after": "Retry-After: 7",
        "reason": 'Reason: SIP;cause=503;text="overload"',
        "warning": 'Warning: 399 gw.example "overload"',
    }
    assert guard.shed_total == 1
    ended = feed(guard, QUIET, 0.3, 2.5)[-1]
    assert isinstance(ended, Ended) and ended.by_campaign == {"renewals": 1}


def test_the_503_names_the_host_via_names() -> None:
    """`Warning: 399 <host>` of a shed call, as the gateway builds it: with advertised_host
    empty, the listen host Via uses (it was the node name)."""
    config = parse_config({"node": {"name": "gw-node"}, "sip": {
        "listen": ["udp:10.0.0.7:5060"], "advertised_host": ""}})
    guard = OverloadGuard(MARKS)
    feed(guard, HIGH, 0.0, 0.2)
    refusal = app_shedder(config, guard, None)(invite("+12125551234"), DIALER, 0.3)
    assert isinstance(refusal, Block)
    assert {h.name: h.raw.decode() for h in refusal.headers}["warning"] == (
        'Warning: 399 10.0.0.7 "overload"')


@pytest.mark.parametrize(("retry_after", "spread"), [
    (5, ["4", "5", "6"]), (30, ["24", "30", "36"]), (4, ["4"]), (0, ["0"]),
])
def test_retry_after_is_spread_over_the_calls_shed(retry_after: int, spread: list[str]) -> None:
    guard = OverloadGuard(MARKS)
    feed(guard, HIGH, 0.0, 0.2)
    shed = Shedder(guard, overload_blocks(retry_after, "gw"))
    told = []
    for _ in range(len(spread) * 2):
        refusal = shed(invite("+12125551234"), DIALER, 0.3)
        assert refusal is not None
        told.append(refusal.headers[0].value)
    assert sorted(set(told), key=int) == spread
    assert all(told.count(value) == 2 for value in spread)  # handed out evenly


def test_a_call_under_way_is_never_shed() -> None:
    guard = OverloadGuard(MARKS)
    feed(guard, HIGH, 0.0, 0.2)
    asked: list[float] = []

    def decided(request: Request, now: float) -> bool:
        asked.append(now)
        return request.call_id == "c1@test"  # re-sent after a 407, say

    shed = Shedder(guard, overload_blocks(5, "gw"), decided=decided)
    for _ in range(20):
        assert shed(invite("+12125551234"), DIALER, 0.3) is None
    assert guard.shed_total == 0 and asked == [0.3] * 20


@pytest.mark.parametrize("user", ["911", "9911", "1-1-2"])
def test_emergency_calls_are_never_shed(user: str) -> None:
    guard = OverloadGuard(MARKS)
    feed(guard, HIGH, 0.0, 0.2)
    assert shedder(guard)(invite(user), DIALER, 0.3) is None
    assert guard.shed_total == 0


# -- configuration ------------------------------------------------------------------------


def test_overload_is_on_by_default() -> None:
    overload = parse_config({}).overload
    assert overload.enabled and overload.max_queue_delay == 0.1 and overload.retry_after == 5


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"max_queue_fill": 0}, "overload.max_queue_fill"),
        ({"max_queue_fill": 1.5}, "overload.max_queue_fill"),
        ({"max_queue_delay": 0}, "overload.max_queue_delay"),
        ({"retry_after": -1}, "overload.retry_after"),
        ({"hold": -1}, "overload.hold"),
        ({"sample_interval": 0.5}, "overload.sample_interval"),
        ({"enable": True}, "overload.enable"),
    ],
)
def test_bad_overload_settings_name_their_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"overload": table})
    assert caught.value.key == key
