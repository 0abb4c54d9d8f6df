"""The MQTT bus end to end (CONTRACT §7): sipguard serving SIPp calls, a real Mosquitto,
and a watcher subscribed to everything the gateway publishes.

* Every decision is published; an opt-out sent on the control topic decides the very next
  call; the answer on the result topic comes only once it does.
* A broker that is down (at start, and while calls flow) neither delays nor drops a call,
  and the events of that time arrive once it is back.
* A gateway killed outright leaves its last will: status offline, retained.

The called number is in London: no statutory calling window is shipped for GB, so the
outcome does not depend on the hour the test runs at.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from e2e.checks import assert_all_succeeded, show
from e2e.harness import Gateway, Mosquitto, Sipp, Trunk, scenario_variant

pytestmark = pytest.mark.e2e

LONDON = "+442079460123"
PREFIX = "sipguard"


class Watcher:
    """A paho client (its own thread) that keeps every message under `{PREFIX}/#`."""

    def __init__(self, broker: Mosquitto) -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/#", 1)
        self.client.on_message = self._keep
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _keep(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload or b"null"),
                                  bool(message.retain)))

    def on(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [payload for t, payload, _ in self.messages if t == f"{PREFIX}/{topic}"]

    def wait(self, topic: str, ok: Callable[[list[dict[str, Any]]], bool],
             timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.on(topic)
            if ok(got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"not seen on {topic} within {timeout} s: {self.on(topic)}")

    def send(self, topic: str, payload: dict[str, Any]) -> None:
        self.client.publish(f"{PREFIX}/control/{topic}", json.dumps(payload), 1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def watcher(mosquitto: Mosquitto) -> Any:
    w = Watcher(mosquitto)
    yield w
    w.close()


def gateway_with_bus(start_gateway: Callable[..., Gateway], broker: Mosquitto, trunk_port: int,
                     **kwargs: Any) -> Gateway:
    return start_gateway([Trunk(trunk_port)], overrides={
        "mqtt": {"enabled": True, "url": broker.url},
        "log": {"pseudonymize": True},
    }, **kwargs)


def _calls(n: int, rate: int = 10) -> list[str]:
    return ["-s", LONDON, "-m", str(n), "-r", str(rate), "-l", str(n), "-d", "50"]


def test_an_opt_out_over_mqtt_blocks_the_very_next_call_and_each_decision_is_published(
    start_gateway: Callable[..., Gateway], sipp: Callable[..., Sipp], mosquitto: Mosquitto,
    watcher: Watcher, tmp_path: Path,
) -> None:
    uas = sipp("uas_basic.xml", "uas")
    gw = gateway_with_bus(start_gateway, mosquitto, uas.port)
    watcher.wait("e2e/status", lambda got: any(s["status"] == "online" for s in got))
    assert_all_succeeded(sipp("uac_basic.xml", "uac1", remote=gw.address,
                              args=_calls(1)).wait(30), 1)
    (first,) = watcher.wait("e2e/decisions", lambda got: len(got) == 1)
    assert (first["decision"], first["reason"]) == ("allow", "no-restriction")
    assert first["callee"] != LONDON and len(first["callee"]) == 32  # the keyed pseudonym

    watcher.send("dnc", {"id": "opt-1", "op": "add", "list": "internal", "number": LONDON,
                         "source": "agent 7, call 2026-11-29"})
    (answer,) = watcher.wait("e2e/control/result", lambda got: len(got) == 1)
    assert (answer["id"], answer["status"]) == ("opt-1", "applied"), answer

    expect_603 = scenario_variant("uac_expect_403.xml", tmp_path / "scenarios",
                                  {'<recv response="403"/>': '<recv response="603"/>'})
    blocked = sipp(expect_603, "uac2", remote=gw.address, args=_calls(1)).wait(30)
    assert_all_succeeded(blocked, 1)
    (resp,) = blocked.received("INVITE", 603)
    assert resp.header("Reason") == 'SIP;cause=603;text="dnc-internal"', show(resp)
    (_, second) = watcher.wait("e2e/decisions", lambda got: len(got) == 2)
    assert (second["decision"], second["reason"]) == ("block", "dnc-internal")
    assert len(uas.stop().received("INVITE")) == 1, "the trunk saw the opted-out call"
    control = [e for e in gw.events() if e.get("event") == "mqtt.control"]
    assert [(e["id"], e["status"]) for e in control] == [("opt-1", "applied")]
    assert LONDON not in gw.output()  # pseudonyms only, in the log as on the bus
    gw.assert_alive()


def test_a_broker_outage_neither_delays_nor_drops_a_call(
    start_gateway: Callable[..., Gateway], sipp: Callable[..., Sipp], mosquitto: Mosquitto,
    watcher: Watcher,
) -> None:
    mosquitto.stop()  # down before the gateway starts: it serves all the same
    uas = sipp("uas_basic.xml", "uas")
    gw = gateway_with_bus(start_gateway, mosquitto, uas.port)
    started = time.monotonic()
    result = sipp("uac_basic.xml", "uac", remote=gw.address, args=_calls(20, 20)).wait(30)
    took = time.monotonic() - started
    assert_all_succeeded(result, 20)
    decisions = [e for e in gw.events() if e.get("event") == "call.decision"]
    assert len(decisions) == 20
    # 20 calls at 20/s, each held 50 ms: a call that waited on the broker would show here
    assert took < 5.0, f"20 calls took {took:.1f} s"
    assert max(int(e["latency_us"]) for e in decisions) < 20_000
    assert [e["event"] for e in gw.events() if e["event"].startswith("mqtt.")] == [
        "mqtt.unreachable"]

    mosquitto.start()  # same port: the gateway reconnects (backoff 1, 2, 4... s)
    got = watcher.wait("e2e/decisions", lambda got: len(got) >= 20, timeout=20)
    assert sorted(e["decision_id"] for e in got) == sorted(e["decision_id"] for e in decisions)
    connected = [e for e in gw.events() if e.get("event") == "mqtt.connected"]
    assert connected and connected[0]["queued"] == 20, connected
    gw.assert_alive()


def test_a_gateway_killed_outright_leaves_its_last_will(
    start_gateway: Callable[..., Gateway], sipp: Callable[..., Sipp], mosquitto: Mosquitto,
    watcher: Watcher,
) -> None:
    uas = sipp("uas_basic.xml", "uas")
    gw = gateway_with_bus(start_gateway, mosquitto, uas.port)
    watcher.wait("e2e/status", lambda got: any(s["status"] == "online" for s in got))
    assert gw.proc is not None
    gw.proc.kill()  # SIGKILL: no goodbye, the broker sees the connection drop
    gw.proc.wait(5)
    status = watcher.wait("e2e/status", lambda got: got[-1]["status"] == "offline")[-1]
    assert status == {"status": "offline", "node": "e2e", "reason": "connection lost"}
    gw.exit_code = -9
