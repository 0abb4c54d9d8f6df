"""Prometheus metrics (`[metrics] listen`): what a scrape shows, read from the gateway."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from e2e.harness import Gateway, Sipp, Trunk, free_port
from sipguard.config import parse_config
from sipguard.errors import ConfigError
from sipguard.metrics import BusFigures, DecisionTally, GatewayCollector, Sources
from sipguard.policy.model import Action, Decision, DecisionRecord, Reason, Step


def record(action: Action, reason: Reason, latency_us: int) -> DecisionRecord:
    decision = Decision(action, reason, "r", (Step("r", action.value),))
    return DecisionRecord(
        decision_id="gw-1", ts=datetime(2026, 6, 3, 16, tzinfo=UTC), node="gw", call_id="c",
        campaign="default", callee="+12025550143", callee_raw="2025550143", caller=None,
        source="udp:127.0.0.1:5070", decision=decision, latency_us=latency_us,
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_scrape_shows_the_gateway_as_its_sources_have_it() -> None:
    tally = DecisionTally()
    tally.add([record(Action.BLOCK, Reason.DNC_NATIONAL, 8), record(Action.ALLOW,
               Reason.NO_RESTRICTION, 40), record(Action.BLOCK, Reason.DNC_NATIONAL, 20_000)])
    registry = CollectorRegistry()
    registry.register(GatewayCollector(Sources(
        decisions=tally, transactions=lambda: 12, overloaded=lambda: True,
        calls_shed=lambda: 5, store_rows=lambda: (100, 7, 2), store_error=lambda: None,
        list_sizes=lambda: [("national", 10_000_000), ("internal", 3)],
        log_lines_lost=lambda: 4,
        trunks_up=lambda: [("udp:192.0.2.10:5060", False), ("tcp:192.0.2.20:5060", True)],
        bus=lambda: BusFigures(False, 90, 30, 6, [("dnc", "applied", 3), ("dnc", "rejected", 1)]),
    )))
    got = samples(generate_latest(registry).decode())
    assert got[("sipguard_decisions_total",
                (("action", "block"), ("reason", "dnc-national")))] == 2
    assert got[("sipguard_decisions_total",
                (("action", "allow"), ("reason", "no-restriction")))] == 1
    buckets = {dict(labels)["le"]: value for (name, labels), value in got.items()
               if name == "sipguard_decision_latency_seconds_bucket"}
    assert buckets["1e-05"] == 1 and buckets["5e-05"] == 2 and buckets["0.01"] == 2
    assert buckets["+Inf"] == 3
    assert got[("sipguard_decision_latency_seconds_sum", ())] == pytest.approx(0.020048)
    assert got[("sipguard_transactions", ())] == 12
    assert got[("sipguard_overloaded", ())] == 1 and got[("sipguard_calls_shed_total", ())] == 5
    assert got[("sipguard_store_rows_written_total", ())] == 100
    assert got[("sipguard_store_rows_pending", ())] == 7
    assert got[("sipguard_store_rows_dropped_total", ())] == 2
    assert got[("sipguard_store_up", ())] == 1
    assert got[("sipguard_list_numbers", (("list", "national"),))] == 10_000_000
    assert got[("sipguard_log_lines_lost_total", ())] == 4
    assert got[("sipguard_trunk_up", (("trunk", "udp:192.0.2.10:5060"),))] == 0
    assert got[("sipguard_trunk_up", (("trunk", "tcp:192.0.2.20:5060"),))] == 1
    assert got[("sipguard_mqtt_connected", ())] == 0
    assert got[("sipguard_mqtt_events_published_total", ())] == 90
    assert got[("sipguard_mqtt_events_queued", ())] == 30
    assert got[("sipguard_mqtt_events_dropped_total", ())] == 6
    assert got[("sipguard_mqtt_control_messages_total",
                (("status", "rejected"), ("topic", "dnc")))] == 1


def test_without_a_bus_no_mqtt_metric_is_shown() -> None:
    registry = CollectorRegistry()
    registry.register(GatewayCollector(Sources(
        decisions=DecisionTally(), transactions=lambda: 0, overloaded=lambda: None,
        calls_shed=lambda: 0, store_rows=lambda: (0, 0, 0), store_error=lambda: None,
        list_sizes=list, log_lines_lost=lambda: 0, trunks_up=list, bus=lambda: None)))
    assert not [k for k in samples(generate_latest(registry).decode()) if "mqtt" in k[0]]


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"metrics": {"listen": "9090"}}, "metrics.listen"),
        ({"metrics": {"listen": "127.0.0.1:http"}}, "metrics.listen"),
    ],
)
def test_metrics_settings_that_cannot_work_name_their_key(
    table: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(table)
    assert caught.value.key == key


def scrape(url: str, deadline: float = 10.0) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                       float]:
    end = time.monotonic() + deadline
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return samples(response.read().decode())
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def test_the_running_gateway_counts_its_calls(
    start_gateway: Callable[..., Gateway], sipp: Callable[..., Sipp]
) -> None:
    port = free_port()
    uas = sipp("uas_basic.xml", "uas", args=["-m", "4"])
    # every call would be blocked at any hour (no consent, or outside the calling window):
    # in monitor mode, each is forwarded flagged
    gw = start_gateway([Trunk(uas.port)], overrides={
        "policy": {"mode": "monitor"}, "metrics": {"listen": f"127.0.0.1:{port}"},
        "campaigns": {"default": {"require_consent": True}}})
    uac = sipp("uac_basic.xml", "uac", remote=gw.address,
               args=["-s", "+12125551234", "-m", "4", "-r", "20"])
    assert uac.wait(30).successful == 4
    url = f"http://127.0.0.1:{port}/metrics"
    got = scrape(url)
    flagged = [v for (name, labels), v in got.items()
               if name == "sipguard_decisions_total" and ("action", "flag") in labels]
    assert sum(flagged) == 4, got
    assert got[("sipguard_decision_latency_seconds_count", ())] == 4
    assert got[("sipguard_store_up", ())] == 1
    assert got[("process_cpu_seconds_total", ())] > 0
    assert ("sipguard_transactions", ()) in got and ("sipguard_overloaded", ()) in got
    assert got[("sipguard_trunk_up", (("trunk", f"udp:127.0.0.1:{uas.port}"),))] == 1
    for _ in range(100):  # the writer flushes every 0.1 s: 4 decisions and 4 attempts
        if got[("sipguard_store_rows_written_total", ())] == 8:
            break
        time.sleep(0.05)
        got = scrape(url)
    assert got[("sipguard_store_rows_written_total", ())] == 8
    gw.assert_alive()


def test_a_metrics_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gw = Gateway(tmp_path / "gw", [Trunk(free_port())],
                     overrides={"metrics": {"listen": f"127.0.0.1:{port}"}}).spawn()
        try:
            assert gw.proc is not None and gw.proc.wait(timeout=20) != 0
        finally:
            gw.stop()
    out = gw.output()
    assert f"metrics.listen: cannot listen on '127.0.0.1:{port}'" in out, out
    assert "Traceback" not in out

