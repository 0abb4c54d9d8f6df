"""The MQTT bus against a real Mosquitto, with a real store and index (no SIP here: the
end-to-end tests put a gateway between SIPp and the broker)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from structlog.testing import capture_logs

from e2e.harness import Mosquitto
from sipguard.bus.mqtt import MqttBus
from sipguard.config import Config, parse_config
from sipguard.log import Pseudonymizer
from sipguard.policy.model import Action, Decision, DecisionRecord, Reason
from sipguard.store.db import Store
from sipguard.store.index import Index
from sipguard.store.sync import load_index

NUMBER = "+12125551234"
KEY = Pseudonymizer(b"k" * 32)


def bus_config(broker: Mosquitto, tmp_path: Path, **mqtt: Any) -> Config:
    return parse_config({
        "node": {"name": "gw7"},
        "store": {"path": str(tmp_path / "sipguard.db")},
        "mqtt": {"enabled": True, "url": broker.url, "topic_prefix": "acme/sg", **mqtt},
    })


class Running:
    """A bus running as the app runs it, and a second client watching the broker."""

    def __init__(self, bus: MqttBus, store: Store, index: Index, watcher: aiomqtt.Client):
        self.bus, self.store, self.index, self.watcher = bus, store, index, watcher
        self.task = asyncio.create_task(bus.run())

    async def until(self, topic: str, count: int = 1, within: float = 5.0) -> list[Any]:
        got: list[Any] = []

        async def take() -> None:
            async for message in self.watcher.messages:
                if str(message.topic) == topic:
                    assert isinstance(message.payload, bytes)
                    got.append(json.loads(message.payload))
                    if len(got) == count:
                        return

        await asyncio.wait_for(take(), within)
        return got

    async def send(self, topic: str, payload: Any, retain: bool = False) -> dict[str, Any]:
        await self.watcher.publish(f"acme/sg/control/{topic}", json.dumps(payload), 1,
                                   retain=retain)
        (answer,) = await self.until("acme/sg/gw7/control/result")
        return dict(answer)


@pytest.fixture
async def running(
    mosquitto: Mosquitto, tmp_path: Path
) -> AsyncIterator[Running]:
    config = bus_config(mosquitto, tmp_path)
    store = await Store.open(tmp_path / "sipguard.db")
    index = await load_index(store)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as watcher:
        await watcher.subscribe("acme/sg/#", 1)
        with capture_logs() as logs:
            bus = MqttBus(config, store, index, log=_Log(logs), pseudonymize=KEY)
            run = Running(bus, store, index, watcher)
            (status,) = await run.until("acme/sg/gw7/status")
            assert status["status"] == "online" and status["node"] == "gw7"
            yield run
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)
    await store.close()


class _Log:
    """A logger that keeps (event, fields) pairs, as capture_logs does for structlog."""

    def __init__(self, into: list[dict[str, Any]]) -> None:
        self.into = into

    def _add(self, level: str, event: str, **fields: Any) -> None:
        self.into.append({"event": event, "log_level": level, **fields})

    def info(self, event: str, **fields: Any) -> None:
        self._add("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._add("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._add("error", event, **fields)


def record(i: int) -> DecisionRecord:
    decision = Decision(Action.ALLOW, Reason.NO_RESTRICTION, "no-restriction", ())
    return DecisionRecord(
        decision_id=f"gw7-{i}", ts=datetime(2026, 6, 1, 12, 0, 0, i, tzinfo=UTC), node="gw7",
        call_id=f"call-{i}", campaign="default", callee=NUMBER, callee_raw=NUMBER,
        caller=None, source="udp:127.0.0.1:5070", decision=decision, latency_us=7)


async def test_an_opt_out_is_applied_to_the_store_and_the_index_before_it_is_answered(
    running: Running,
) -> None:
    assert not running.index.memberships(NUMBER)
    answer = await running.send("dnc", {"id": "m1", "op": "add", "list": "internal",
                                        "number": "(212) 555-1234", "source": "crm 42"})
    assert answer["status"] == "applied" and answer["id"] == "m1" and answer["topic"] == "dnc"
    # in memory at once: the very next call to the number is decided with it
    assert [m.list_name for m in running.index.memberships(NUMBER)] == ["internal"]
    rows = await running.store.fetchall("SELECT number, op, source FROM list_entries")
    assert [tuple(r) for r in rows] == [(NUMBER, "add", "crm 42")]


async def test_consent_is_granted_then_revoked(running: Running) -> None:
    answer = await running.send("consent", {
        "id": "c1", "op": "grant", "number": NUMBER, "campaign": "default",
        "type": "express-written", "source": "form 9", "expires": "2099-01-01"})
    assert answer["status"] == "applied", answer
    (consent,) = running.index.consents(NUMBER)
    assert consent.source == "form 9" and consent.revoked_at is None
    answer = await running.send("consent", {"id": "c2", "op": "revoke", "number": NUMBER,
                                            "source": "sms STOP"})
    assert answer == {**answer, "status": "applied", "detail": "1 consent(s) revoked"}
    (consent,) = running.index.consents(NUMBER)
    assert consent.revoked_at is not None and consent.revoke_source == "sms STOP"


async def test_an_objection_blocks_from_the_answer_on_and_a_withdrawal_ends_it(
    running: Running,
) -> None:
    answer = await running.send("subject", {"id": "s1", "op": "object", "number": NUMBER,
                                            "source": "crm ticket 7"})
    assert answer["status"] == "applied" and answer["topic"] == "subject", answer
    (request,) = running.index.subject_requests(NUMBER)
    assert (request.right.value, request.source) == ("object", "crm ticket 7")
    answer = await running.send("subject", {"id": "s2", "op": "withdraw", "number": NUMBER,
                                            "source": "by phone"})
    assert answer["detail"] == "1 object request(s) ended", answer
    assert not running.index.subject_requests(NUMBER)


async def test_a_redelivered_id_is_answered_again_but_applied_once(running: Running) -> None:
    message = {"id": "m1", "op": "add", "list": "internal", "number": NUMBER, "source": "x"}
    assert (await running.send("dnc", message))["status"] == "applied"
    again = await running.send("dnc", message)
    assert again["status"] == "duplicate" and again["id"] == "m1"
    rows = await running.store.fetchall("SELECT count(*) FROM list_entries")
    assert rows[0][0] == 1


async def test_faulty_messages_are_refused_and_change_nothing(
    running: Running,
) -> None:
    answer = await running.send("dnc", {"id": "m1", "op": "remove", "list": "nosuch",
                                        "number": NUMBER, "source": "x"})
    assert answer["status"] == "rejected" and "unknown list 'nosuch'" in answer["detail"]
    answer = await running.send("consent", {"id": "m2", "op": "grant", "number": NUMBER,
                                            "campaign": "c", "type": "express",
                                            "source": "x", "expire": "2030-01-01"})
    assert answer["status"] == "rejected" and "unknown field(s) expire" in answer["detail"]
    assert not running.index.memberships(NUMBER)
    assert (await running.store.fetchall("SELECT count(*) FROM list_entries"))[0][0] == 0
    assert running.bus.control_counts == {("dnc", "rejected"): 1, ("consent", "rejected"): 1}


async def test_a_retained_control_message_replayed_by_the_broker_is_not_applied(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as sender:
        await sender.publish("acme/sg/control/dnc", json.dumps({
            "id": "r1", "op": "add", "list": "internal", "number": NUMBER, "source": "x"}),
            1, retain=True)
    store = await Store.open(tmp_path / "sipguard.db")
    logs: list[dict[str, Any]] = []
    bus = MqttBus(bus_config(mosquitto, tmp_path), store, await load_index(store),
                  log=_Log(logs), pseudonymize=None)
    task = asyncio.create_task(bus.run())
    try:
        await _wait(lambda: any(e["event"] == "mqtt.control_ignored" for e in logs))
        assert (await store.fetchall("SELECT count(*) FROM list_entries"))[0][0] == 0
        assert bus.control_counts == {}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def test_the_log_names_the_number_only_by_its_pseudonym(running: Running) -> None:
    await running.send("dnc", {"id": "m1", "op": "add", "list": "internal", "number": NUMBER,
                               "source": "x"})
    logs: list[dict[str, Any]] = running.bus._log.into  # type: ignore[attr-defined]
    (line,) = [e for e in logs if e["event"] == "mqtt.control"]
    assert line["number"] == KEY(NUMBER) and NUMBER not in json.dumps(logs)


async def test_decisions_are_published_in_order_with_pseudonyms(running: Running) -> None:
    running.bus.publish([record(i) for i in range(500)])
    events = await running.until("acme/sg/gw7/decisions", 500)
    assert sorted(e["decision_id"] for e in events) == sorted(f"gw7-{i}" for i in range(500))
    assert {e["callee"] for e in events} == {KEY(NUMBER)}
    assert set(events[0]) >= {"ts", "event", "node", "decision", "reason", "rule",
                              "decision_id", "call_id", "campaign", "callee", "caller",
                              "latency_us"}
    await _wait(lambda: running.bus.published == 500)  # PUBACKs may trail the deliveries
    assert running.bus.queued == 0


async def test_decisions_go_at_most_once_with_qos_0(mosquitto: Mosquitto, tmp_path: Path) -> None:
    bus = MqttBus(bus_config(mosquitto, tmp_path, decisions_qos=0), None,  # type: ignore[arg-type]
                  Index(), log=_Log([]), pseudonymize=None)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as watcher:
        await watcher.subscribe("acme/sg/gw7/decisions", 1)
        task = asyncio.create_task(bus.run())
        try:
            await _wait(lambda: bus.connected)
            bus.publish([record(i) for i in range(100)])
            got = []
            async for message in watcher.messages:
                got.append(message)
                if len(got) == 100:
                    break
            assert {m.qos for m in got} == {0}  # delivered at the lower of the two QoS
            assert bus.published == 100
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_the_newest_audit_checkpoint_is_kept_retained_at_the_broker(
    running: Running, mosquitto: Mosquitto,
) -> None:
    running.bus.checkpoint({"rows": 1, "head": "aa" * 32, "decision_id": "gw7-1"})
    running.bus.checkpoint({"rows": 2, "head": "bb" * 32, "decision_id": "gw7-2"})
    (sent,) = await running.until("acme/sg/gw7/audit")
    assert (sent["rows"], sent["head"], sent["node"]) == (2, "bb" * 32, "gw7")
    # retained: whoever subscribes later (an auditor's collector) still gets it
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as late:
        await late.subscribe("acme/sg/gw7/audit", 1)
        message = await asyncio.wait_for(anext(aiter(late.messages)), 5)
        assert message.retain and isinstance(message.payload, bytes)
        assert json.loads(message.payload)["head"] == "bb" * 32


async def test_a_full_queue_drops_the_oldest_events_and_says_so_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """No broker at all here: publish() must neither wait nor grow without bound."""
    mosquitto.stop()
    config = bus_config(mosquitto, tmp_path, queue_size=100)
    logs: list[dict[str, Any]] = []
    bus = MqttBus(config, None, Index(), log=_Log(logs),  # type: ignore[arg-type]
                  pseudonymize=None)
    for start in range(0, 1000, 10):
        bus.publish([record(i) for i in range(start, start + 10)])
    assert bus.queued == 100 and bus.dropped == 900
    assert [e["event"] for e in logs] == ["mqtt.events_dropped"]


async def test_events_wait_out_a_broker_outage_and_all_arrive_after_it(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = bus_config(mosquitto, tmp_path)
    logs: list[dict[str, Any]] = []
    bus = MqttBus(config, None, Index(), log=_Log(logs),  # type: ignore[arg-type]
                  pseudonymize=None)
    task = asyncio.create_task(bus.run())
    try:
        await _wait(lambda: bus.connected)
        mosquitto.stop()
        await _wait(lambda: not bus.connected)
        bus.publish([record(i) for i in range(50)])  # while the broker is away
        assert bus.queued == 50
        mosquitto.start()
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as watcher:
            await watcher.subscribe("acme/sg/gw7/decisions", 1)
            await _wait(lambda: bus.connected, 10)
            got: set[str] = set()

            async def take() -> None:
                async for message in watcher.messages:
                    assert isinstance(message.payload, bytes)
                    got.add(json.loads(message.payload)["decision_id"])
                    if len(got) == 50:
                        return

            await asyncio.wait_for(take(), 10)
        assert got == {f"gw7-{i}" for i in range(50)}
        events = [e["event"] for e in logs]
        assert events[:2] == ["mqtt.connected", "mqtt.disconnected"]
        assert "mqtt.connected" in events[2:]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_clean_stop_says_offline_and_a_lost_connection_leaves_the_will(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = bus_config(mosquitto, tmp_path)
    bus = MqttBus(config, None, Index(), log=_Log([]),  # type: ignore[arg-type]
                  pseudonymize=None)
    task = asyncio.create_task(bus.run())
    await _wait(lambda: bus.connected)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert (await _retained(mosquitto, "acme/sg/gw7/status"))["reason"] == "stopped"
    # The will: the connection dies without a goodbye (the process killed, the link cut).
    will_config = replace(config, node=replace(config.node, name="gw8"))
    bus = MqttBus(will_config, None, Index(), log=_Log([]),  # type: ignore[arg-type]
                  pseudonymize=None)
    bus._client = _with_socket_kept(bus._client)  # type: ignore[method-assign]
    task = asyncio.create_task(bus.run())
    await _wait(lambda: bus.connected)
    assert (await _retained(mosquitto, "acme/sg/gw8/status"))["status"] == "online"
    _KEPT[-1].shutdown(2)  # the TCP connection breaks under the client
    status = await _retained(mosquitto, "acme/sg/gw8/status", want="offline")
    assert status["reason"] == "connection lost"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


_KEPT: list[Any] = []


def _with_socket_kept(make: Any) -> Any:
    def client() -> aiomqtt.Client:
        made = make()
        opened = made._client.on_socket_open

        def keep(client: Any, userdata: Any, sock: Any) -> None:
            _KEPT.append(sock)
            opened(client, userdata, sock)

        made._client.on_socket_open = keep
        return made

    return client


async def _retained(broker: Mosquitto, topic: str, want: str | None = None) -> dict[str, Any]:
    for _ in range(100):
        async with aiomqtt.Client(broker.host, broker.port) as reader:
            await reader.subscribe(topic, 1)
            try:
                message = await asyncio.wait_for(anext(aiter(reader.messages)), 1)
            except TimeoutError:
                continue
            assert isinstance(message.payload, bytes)
            status: dict[str, Any] = json.loads(message.payload)
            if want is None or status["status"] == want:
                return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"no retained {want or 'status'} on {topic}")


async def _wait(condition: Any, within: float = 5.0) -> None:
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")
