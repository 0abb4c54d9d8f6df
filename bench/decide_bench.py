"""Microbenchmark of the policy hot path on one core (issue 4: decide() >= 200,000/s).

    .venv/bin/python bench/decide_bench.py [--calls 200000] [--listed 0.1]

Times are CPU time of this process (time.process_time), so that other load on the
machine does not count; each figure is the best of three runs. Prints, for warm caches
(a dialer calls the same area codes all day):
* decide() alone: decisions/s with attempts built beforehand, and with the Index for two
  campaigns that check different lists taking turns call by call;
* Numbers.e164() on dialled strings: ns per number (NANP fast path and other formats);
* Gate(request): µs per initial INVITE, already parsed, normalisation, decision, verdict,
  decision record and id included; once with a no-op emit and once with the JSON
  decision log written to /dev/null (pseudonyms on);
* the app's deferred decision sinks (`decision_sinks`): µs per decision for a loop turn
  of 8 decisions (JSON log line to /dev/null, rows queued), and for the store writer's
  batches of 500 into SQLite in a temporary directory (both threads: aiosqlite's too).
The gate's wall clock starts at the same instant as decide()'s `now` (15:00 UTC, 10 µs a
call), so its figures do not depend on the time of day the bench runs (at night in the
US nearly every call is refused by the calling window, a different path).
Facts: 10% of the numbers are on the national list, 1% on the internal list, 2% hold an
express-written consent; decide() and the gate are timed against both the plain-dict
`MemoryFacts` and the store's real in-memory `Index` (pyroaring bitmap + overlay).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from pyroaring import BitMap64

from sipguard.app import decision_sinks
from sipguard.config import CampaignConfig, Config, LogConfig, PolicyConfig
from sipguard.log import PSEUDONYM_ENV, DecisionLog, Pseudonymizer, configure_logging, decision_log
from sipguard.policy.engine import decide
from sipguard.policy.facts import MemoryFacts
from sipguard.policy.gate import Gate
from sipguard.policy.model import (
    Attempt,
    Consent,
    ConsentType,
    DecisionRecord,
    Facts,
    ListKind,
    Membership,
)
from sipguard.policy.numbers import Numbers
from sipguard.sip.message import Request
from sipguard.sip.parser import parse_message
from sipguard.sip.peer import Peer
from sipguard.store.db import Store
from sipguard.store.index import Index, ListInfo
from sipguard.store.writer import RecordWriter

AREA_CODES = ("415", "212", "305", "512", "602", "617", "713", "808", "917", "202")
NOW = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


def numbers(count: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(count):
        out.append(f"{rng.choice(AREA_CODES)}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}")
    return out


def facts_for(e164s: list[str], listed: float, rng: random.Random) -> MemoryFacts:
    facts = MemoryFacts()
    national = Membership("national", ListKind.NATIONAL, None, None, None)
    internal = Membership("internal", ListKind.INTERNAL, None, datetime(2026, 1, 1, tzinfo=UTC),
                          None)
    for i, number in enumerate(e164s):
        r = rng.random()
        if r < listed:
            facts.add_membership(number, national)
        elif r < listed + 0.01:
            facts.add_membership(number, internal)
        elif r < listed + 0.03:
            facts.add_consent(Consent(i, number, "default", ConsentType.EXPRESS_WRITTEN,
                                      datetime(2026, 2, 1, tzinfo=UTC), None, None, None, "bench"))
    return facts


def index_of(facts: MemoryFacts, numbers: list[str]) -> Facts:
    """The store's Index with the same content: bulk bitmaps per list, consents."""
    index = Index()
    by_list: dict[str, tuple[Membership, list[int]]] = {}
    for number in numbers:
        for m in facts.memberships(number):
            by_list.setdefault(m.list_name, (m, []))[1].append(int(number[1:]))
        for c in facts.consents(number):
            index.put_consent(c)
    for i, (name, (m, keys)) in enumerate(sorted(by_list.items()), 1):
        info = ListInfo(i, name, m.kind, None, "bench", None, 1, 0, len(keys))
        index.set_list(info, BitMap64(keys), ())
    index.mark_healthy()
    return index


def invite(number: str, i: int) -> Request:
    message = parse_message(
        (
            f"INVITE sip:{number}@gw.example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 10.1.0.5:5060;branch=z9hG4bK{i}\r\n"
            "Max-Forwards: 70\r\n"
            f"To: <sip:{number}@gw.example.com>\r\n"
            f"From: \"Dialer\" <sip:+12125550100@10.1.0.5>;tag={i}\r\n"
            f"Call-ID: bench-{i}@10.1.0.5\r\n"
            "CSeq: 1 INVITE\r\n"
            "X-Campaign: default\r\n"
            "Contact: <sip:dialer@10.1.0.5:5060>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Request)
    return message


class LoopTurns:
    """The event loop as `decision_sinks` uses it: what `call_soon` queued runs at `turn()`.
    Keeps the loop's own per-turn cost out of the sinks' figure."""

    def __init__(self) -> None:
        self.ready: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.ready.append(callback)

    def turn(self) -> None:
        ready, self.ready = self.ready, []
        for callback in ready:
            callback()


def time_sinks(config: Config, records: list[DecisionRecord]) -> tuple[float, float]:
    """CPU seconds of the sinks on the loop thread, and of the writer's flushes."""
    turn, batch = 8, 500
    with tempfile.TemporaryDirectory() as tmp:
        runner = asyncio.Runner()
        store = runner.run(Store.open(Path(tmp) / "bench.db"))
        writer = RecordWriter(store, batch=batch)
        loop = LoopTurns()
        emit = decision_sinks(decision_log(config), writer, loop)  # type: ignore[arg-type]
        sinks = flushes = 0.0
        for start in range(0, len(records), batch):
            t = time.process_time()
            for i in range(start, min(start + batch, len(records)), turn):
                for record in records[i : i + turn]:
                    emit(record)
                loop.turn()
            sinks += time.process_time() - t
            t = time.process_time()
            runner.run(writer.flush())
            flushes += time.process_time() - t
        runner.run(store.close())
        runner.close()
    return sinks, flushes


def best_of(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def bench_gate(dialled: list[str], num: Numbers, index: Facts, config: Config) -> None:
    """The gate's figures (with and without the log line), then the sinks'."""
    n = len(dialled)
    requests = [invite(d, i) for i, d in enumerate(dialled)]
    peer = Peer("udp", "10.1.0.5", 5060)

    def run_gate(emit: Callable[[DecisionRecord], None]) -> float:
        gate = Gate(config, index, emit, itertools.count(NOW.timestamp(), 1e-5).__next__)
        gate.numbers = num  # warm
        t = time.process_time()
        for i, r in enumerate(requests):
            gate(r, peer, float(i))
        return time.process_time() - t

    elapsed = best_of(3, lambda: run_gate(lambda r: None))
    print(f"  Gate(request), Index, no-op emit:  {elapsed / n * 1e6:8.2f} µs/INVITE "
          f"({n / elapsed:,.0f}/s)")
    with open(os.devnull, "w") as sink:
        configure_logging(config, stream=sink)
        log = DecisionLog(Pseudonymizer(b"bench-key"))
        elapsed = best_of(3, lambda: run_gate(log))
    print(f"  Gate(request) + JSON decision log: {elapsed / n * 1e6:8.2f} µs/INVITE "
          f"({n / elapsed:,.0f}/s)")

    records: list[DecisionRecord] = []
    run_gate(records.append)
    os.environ.setdefault(PSEUDONYM_ENV, "bench-key")
    with open(os.devnull, "w") as sink:
        configure_logging(config, stream=sink)
        timings = [time_sinks(config, records) for _ in range(3)]
    sinks = min(t[0] for t in timings)
    flushes = min(t[1] for t in timings)
    print(f"  decision sinks, log line + rows:   {sinks / n * 1e6:8.2f} µs/decision")
    print(f"  store writer, batches of 500:      {flushes / n * 1e6:8.2f} µs/decision")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--listed", type=float, default=0.1)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = random.Random(42)
    dialled = numbers(args.calls, rng)
    num = Numbers("US")
    t = time.process_time()
    e164s = [num.e164(d) for d in dialled]
    cold = time.process_time() - t
    assert all(e164s), "the bench numbers must be valid"
    valid: list[str] = [e for e in e164s if e]
    facts = facts_for(valid, args.listed, rng)
    campaign, policy = CampaignConfig(), PolicyConfig()
    n = len(dialled)
    print(f"one core, {n:,} calls, {args.listed:.0%} on the national list, warm caches")
    print(f"  normalisation, cold NPA-NXX cache: {cold / n * 1e6:8.2f} µs/number "
          f"({len({d[:6] for d in dialled}):,} distinct NPA-NXX)")

    attempts = [Attempt(d, e, "+12125550100", "default", "") for d, e in zip(dialled, e164s,
                                                                             strict=True)]

    index = index_of(facts, sorted(set(valid)))
    for label, source in (("MemoryFacts", facts), ("store Index", index)):
        def run_decide(source: Facts = source) -> float:
            t = time.process_time()
            for a in attempts:
                decide(a, source, campaign, policy, NOW)
            return time.process_time() - t

        elapsed = best_of(3, run_decide)
        print(f"  decide(), {label:12s}            {n / elapsed:10,.0f} decisions/s "
              f"({elapsed / n * 1e6:.2f} µs each)")

    # A dialer running two campaigns that check different lists, call by call.
    other = CampaignConfig(lists=("internal", "national"))
    turns = [(a, campaign) if i % 2 else (replace(a, campaign="other"), other)
             for i, a in enumerate(attempts)]

    def run_turns() -> float:
        t = time.process_time()
        for a, c in turns:
            decide(a, index, c, policy, NOW)
        return time.process_time() - t

    elapsed = best_of(3, run_turns)
    print(f"  decide(), Index, 2 campaigns {n / elapsed:15,.0f} decisions/s "
          f"({elapsed / n * 1e6:.2f} µs each)")

    forms = [f"({d[:3]}) {d[3:6]}-{d[6:]}" for d in dialled[:50_000]]
    for label, items in (("plain 10 digits", dialled), ("'(415) 555-2671'", forms),
                         ("'+1...' E.164", ["+1" + d for d in dialled])):
        def run_norm(items: list[str] = items) -> float:
            t = time.process_time()
            for d in items:
                num.e164(d)
            return time.process_time() - t
        elapsed = best_of(3, run_norm)
        print(f"  Numbers.e164 {label:22s} {elapsed / len(items) * 1e9:8.0f} ns/number")

    config = Config(policy=policy, campaigns={"default": campaign}, log=LogConfig())
    bench_gate(dialled, num, index, config)


if __name__ == "__main__":
    main()
