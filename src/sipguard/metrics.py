"""Prometheus metrics for `serve` (`[metrics] listen = "HOST:PORT"`), read when scraped.

Nothing here runs on the call path: the decision sinks tally each loop turn's decisions
(`DecisionTally.add`, a dict update per decision), and everything else is read from what
the gateway keeps anyway (transactions, the overload guard, the store writer, the index,
the log) by `GatewayCollector.collect`, in the HTTP server's thread, only when Prometheus
asks. Reads of plain ints and a `list()` of a dict's items are atomic under the GIL, so a
scrape needs no lock and never holds up the event loop for more than a moment.

Names follow the Prometheus conventions (`_total` counters, base units: seconds); the
process's own CPU, memory and open files come from prometheus_client's ProcessCollector
(`process_cpu_seconds_total` over calls answered gives CPU per call in production).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from sipguard.policy.model import DecisionRecord

# Decision latency buckets, µs (INVITE read -> decision made; decide() takes ~5 µs)
LATENCY_BUCKETS_US = (10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000)


class DecisionTally:
    """Decisions by (action, reason), and a histogram of their latency."""

    __slots__ = ("buckets", "by_outcome", "latency_sum_us")

    def __init__(self) -> None:
        self.by_outcome: dict[tuple[str, str], int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS_US) + 1)  # the last one: above them all
        self.latency_sum_us = 0

    def add(self, records: Iterable[DecisionRecord]) -> None:
        by_outcome, buckets = self.by_outcome, self.buckets
        for record in records:
            decision = record.decision
            key = (decision.action.value, decision.reason.value)
            by_outcome[key] = by_outcome.get(key, 0) + 1
            latency = record.latency_us
            buckets[bisect_left(LATENCY_BUCKETS_US, latency)] += 1
            self.latency_sum_us += latency


@dataclass(frozen=True, slots=True)
class BusFigures:
    """The MQTT bus as a scrape sees it."""

    connected: bool
    published: int
    queued: int
    dropped: int
    control: Sequence[tuple[str, str, int]]  # (topic, status, messages)


@dataclass(frozen=True, slots=True)
class Sources:
    """Where each figure is read from (callables, so that the collector holds no state)."""

    decisions: DecisionTally
    transactions: Callable[[], int]
    overloaded: Callable[[], bool | None]  # None: no overload guard configured
    calls_shed: Callable[[], int]
    store_rows: Callable[[], tuple[int, int, int]]  # written, pending, dropped
    store_error: Callable[[], str | None]
    list_sizes: Callable[[], Sequence[tuple[str, int]]]
    log_lines_lost: Callable[[], int]
    trunks_up: Callable[[], Sequence[tuple[str, bool]]]  # (trunk, answering since it failed)
    bus: Callable[[], BusFigures | None]  # None: no [mqtt] bus


class GatewayCollector(Collector):
    """sipguard's own metrics, built from `Sources` at each scrape."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Any]:
        s = self.sources
        decisions = CounterMetricFamily(
            "sipguard_decisions", "Policy decisions made, by action and reason code.",
            labels=["action", "reason"])
        for (action, reason), count in sorted(s.decisions.by_outcome.items()):
            decisions.add_metric([action, reason], count)
        yield decisions
        yield _latency(s.decisions)
        yield GaugeMetricFamily("sipguard_transactions",
                                "SIP transactions alive (calls in progress and their timers).",
                                value=s.transactions())
        overloaded = s.overloaded()
        if overloaded is not None:
            yield GaugeMetricFamily("sipguard_overloaded",
                                    "1 while new calls are being shed for overload.",
                                    value=int(overloaded))
            yield CounterMetricFamily("sipguard_calls_shed",
                                      "New calls answered 503 for overload since start.",
                                      value=s.calls_shed())
        written, pending, dropped = s.store_rows()
        yield CounterMetricFamily("sipguard_store_rows_written",
                                  "Decision and attempt rows written to the store.",
                                  value=written)
        yield GaugeMetricFamily("sipguard_store_rows_pending",
                                "Rows waiting for the store (they grow while it fails).",
                                value=pending)
        yield CounterMetricFamily("sipguard_store_rows_dropped",
                                  "Rows lost because the store stayed unwritable too long.",
                                  value=dropped)
        yield GaugeMetricFamily("sipguard_store_up",
                                "1 while calls are decided on the store's data (0: "
                                "store-unavailable).",
                                value=int(s.store_error() is None))
        sizes = GaugeMetricFamily("sipguard_list_numbers", "Numbers on each list.",
                                  labels=["list"])
        for name, size in s.list_sizes():
            sizes.add_metric([name], size)
        yield sizes
        trunks = GaugeMetricFamily("sipguard_trunk_up", "1 while a trunk answers; 0 from a "
                                   "transport error or silence until it answers again.",
                                   labels=["trunk"])
        for trunk, up in s.trunks_up():
            trunks.add_metric([trunk], int(up))
        yield trunks
        yield CounterMetricFamily("sipguard_log_lines_lost",
                                  "Log lines dropped because the log could not be written.",
                                  value=s.log_lines_lost())
        bus = s.bus()
        if bus is not None:
            yield from _bus(bus)


def _bus(bus: BusFigures) -> Iterator[Any]:
    yield GaugeMetricFamily("sipguard_mqtt_connected", "1 while connected to the broker.",
                            value=int(bus.connected))
    yield CounterMetricFamily("sipguard_mqtt_events_published",
                              "Decision events the broker acknowledged.", value=bus.published)
    yield GaugeMetricFamily("sipguard_mqtt_events_queued",
                            "Decision events waiting for the broker.", value=bus.queued)
    yield CounterMetricFamily("sipguard_mqtt_events_dropped", "Decision events dropped "
                              "because the queue was full (the store keeps them).",
                              value=bus.dropped)
    control = CounterMetricFamily("sipguard_mqtt_control_messages", "Control messages, by "
                                  "topic and outcome (applied, rejected, duplicate, failed).",
                                  labels=["topic", "status"])
    for topic, status, count in bus.control:
        control.add_metric([topic, status], count)
    yield control


def _latency(tally: DecisionTally) -> HistogramMetricFamily:
    counts = list(tally.buckets)
    cumulative, buckets = 0, []
    for bound, count in zip((*LATENCY_BUCKETS_US, None), counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound is None else repr(bound / 1e6), float(cumulative)))
    return HistogramMetricFamily(
        "sipguard_decision_latency_seconds",
        "From the INVITE read to its decision made.",
        buckets=buckets, sum_value=tally.latency_sum_us / 1e6)


def serve_metrics(host: str, port: int, sources: Sources) -> Callable[[], None]:
    """Start the HTTP endpoint (a daemon thread); returns what stops it."""
    registry = CollectorRegistry()
    registry.register(GatewayCollector(sources))
    ProcessCollector(registry=registry)
    server, thread = start_http_server(port, host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
