"""The MQTT edge (CONTRACT §7): decision events and status out; opt-outs, consent and
data-subject requests in.

Nothing here is on the call path. The decision sinks hand `publish(records)` a loop
turn's decisions: an append to a bounded deque, nothing else. `run()` (a task the app
owns) connects, publishes what waits with up to `MAX_INFLIGHT` QoS 1 messages
unacknowledged (one at a time would cap a broker 10 ms away at 100 events/s), and
applies control messages one at a time in arrival order. When the broker goes away the
calls go on: events wait in the deque (the oldest dropped and counted beyond
`queue_size`), `run()` reconnects with backoff, and an event whose PUBACK never came is
sent again (at least once: a consumer dedupes by `decision_id`).

The session is persistent (clean session off, client id `sipguard-{node}`), so a control
message published while this gateway was away is delivered when it comes back. The
broker's replay of a retained control message is ignored: it was applied when it was
published, and would otherwise be applied again at every reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiomqtt

from sipguard import __version__
from sipguard.bus.control import Command, Rejected, Topic, apply, parse
from sipguard.config import Config
from sipguard.errors import StoreError
from sipguard.log import Pseudonymizer, decision_line
from sipguard.metrics import BusFigures
from sipguard.policy.model import DecisionRecord
from sipguard.store.db import Store
from sipguard.store.index import Index

QOS = 1  # CONTRACT §7
PASSWORD_ENV = "SIPGUARD_MQTT_PASSWORD"
# PUBACKs outstanding at once. Enough for ~3,000 events/s to a broker 10 ms away; aiomqtt
# walks every outstanding call on each publish, so more would cost CPU per event.
MAX_INFLIGHT = 32
RETRY_FIRST, RETRY_MAX = 1.0, 30.0  # seconds between connection attempts, doubling
REPORT_EVERY = 60.0  # seconds between two mqtt.unreachable lines while the broker stays away
REMEMBERED_IDS = 10_000  # control ids answered, so that a re-delivery is not applied twice
STOP_TIMEOUT = 1.0  # seconds the offline status may take at a clean stop


@dataclass(frozen=True, slots=True)
class Topics:
    decisions: str
    status: str
    audit: str
    result: str
    control: dict[str, Topic] = field(hash=False)

    @classmethod
    def of(cls, prefix: str, node: str) -> Topics:
        return cls(f"{prefix}/{node}/decisions", f"{prefix}/{node}/status",
                   f"{prefix}/{node}/audit", f"{prefix}/{node}/control/result",
                   {f"{prefix}/control/{topic}": topic for topic in ("dnc", "consent", "subject")})


class _LastProblem(logging.Handler):
    """Keeps paho-mqtt's last warning or error. Some failures reach aiomqtt only as a
    timeout (a TLS 1.3 broker that wanted a client certificate says so after our side of
    the handshake ended: paho logs the alert, aiomqtt waits out the CONNACK), so this is
    what `mqtt.unreachable` can say instead of "Operation timed out"; and paho's lines
    then go nowhere else (not as plain text on stderr beside the JSON log)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.text: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.text = record.getMessage()


class MqttBus:
    """Publishes decisions and status; applies control messages to the store and index."""

    def __init__(
        self, config: Config, store: Store, index: Index, *, log: Any,
        pseudonymize: Pseudonymizer | None, password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        mqtt = config.mqtt
        self.config = config
        self.store = store
        self.index = index
        self.topics = Topics.of(mqtt.topic_prefix, config.node.name)
        self.queue_size = mqtt.queue_size
        self.published = 0
        self.dropped = 0
        self.connected = False
        self.control_counts: dict[tuple[Topic, str], int] = {}  # (topic, status) -> count
        self._log = log
        self._pseudonymize = pseudonymize
        self._password = password
        self._tls = tls_context
        self._queue: deque[DecisionRecord] = deque()
        self._checkpoint: dict[str, Any] | None = None  # the newest, not yet sent
        self._wake = asyncio.Event()
        self._answered: OrderedDict[tuple[Topic, str], dict[str, Any]] = OrderedDict()
        self._started = _now()
        self._down_since: float | None = None
        self._reported_at = 0.0
        self._dropping = False
        self._paho = logging.getLogger(f"sipguard.mqtt.paho.{id(self):x}")
        self._paho.propagate = False
        self._paho_problem = _LastProblem()
        self._paho.addHandler(self._paho_problem)

    # -- the call side -------------------------------------------------------------------

    def publish(self, records: Sequence[DecisionRecord]) -> None:
        """Queue these decisions' events (from the loop thread; never waits)."""
        queue = self._queue
        queue.extend(records)
        over = len(queue) - self.queue_size
        if over > 0:
            for _ in range(over):
                queue.popleft()
            self.dropped += over
            if not self._dropping:
                self._dropping = True
                self._log.warning("mqtt.events_dropped", queue_size=self.queue_size,
                                  detail="the broker is away or too slow; the oldest decision "
                                  "events are dropped (the store keeps every decision)")
        self._wake.set()

    def checkpoint(self, fields: dict[str, Any]) -> None:
        """The audit chain's newest checkpoint (`audit.checkpoint`), kept retained on
        `{prefix}/{node}/audit`: a copy of the head off the machine, for `audit verify
        --head`. A newer one replaces one still waiting."""
        self._checkpoint = {**fields, "node": self.config.node.name, "ts": _now()}
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def figures(self) -> BusFigures:
        return BusFigures(self.connected, self.published, len(self._queue), self.dropped,
                          [(t, s, n) for (t, s), n in sorted(self.control_counts.items())])

    # -- the connection ------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled, reconnecting with backoff."""
        loop = asyncio.get_running_loop()
        wait = RETRY_FIRST
        while True:
            self._paho_problem.text = None
            try:
                async with self._client() as client:
                    wait = RETRY_FIRST
                    await self._on_connect(client, loop.time())
                    try:
                        async with asyncio.TaskGroup() as tasks:
                            tasks.create_task(self._send_events(client, tasks))
                            tasks.create_task(self._listen(client))
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
            except* aiomqtt.MqttError as failure:
                self._on_failure(loop.time(), failure.exceptions[0])
            except* Exception as failure:  # a fault of ours: said loudly, and tried again
                self._log.error("mqtt.failed", detail=repr(failure.exceptions[0]),
                                exc_info=failure.exceptions[0])
            self.connected = False
            await asyncio.sleep(wait)
            wait = min(wait * 2, RETRY_MAX)

    def _client(self) -> aiomqtt.Client:
        mqtt = self.config.mqtt
        _tls, host, port = mqtt.broker()
        offline = json.dumps({"status": "offline", "node": self.config.node.name,
                              "reason": "connection lost"})
        client = aiomqtt.Client(
            host, port, username=mqtt.username or None, password=self._password,
            identifier=f"sipguard-{self.config.node.name}", clean_session=False,
            keepalive=mqtt.keepalive, tls_context=self._tls,
            will=aiomqtt.Will(self.topics.status, offline, QOS, retain=True),
            max_inflight_messages=MAX_INFLIGHT, logger=self._paho,
        )
        client.pending_calls_threshold = MAX_INFLIGHT  # its warning would fire per event
        return client

    async def _on_connect(self, client: aiomqtt.Client, now: float) -> None:
        self.connected = True
        await client.publish(self.topics.status, json.dumps({
            "status": "online", "node": self.config.node.name, "ts": _now(),
            "started_at": self._started, "version": __version__,
            "control": self.config.mqtt.control,
        }), QOS, retain=True)
        if self.config.mqtt.control:
            await client.subscribe([(topic, QOS) for topic in self.topics.control])
        self._wake.set()  # what waited through the outage (events, a checkpoint) goes now
        since, self._down_since = self._down_since, None
        self._log.info("mqtt.connected", broker=self.config.mqtt.url, queued=len(self._queue),
                       dropped=self.dropped,
                       down_s=None if since is None else round(now - since, 1))
        self._dropping = False

    def _on_failure(self, now: float, error: BaseException) -> None:
        since = self._down_since
        first = since is None
        if since is None:
            since = self._down_since = now
        elif now - self._reported_at < REPORT_EVERY:
            return
        self._reported_at = now
        detail = str(error) or type(error).__name__
        if self._paho_problem.text and self._paho_problem.text not in detail:
            detail = f"{detail} ({self._paho_problem.text})"
        self._log.warning("mqtt.disconnected" if first and self.connected else "mqtt.unreachable",
                          broker=self.config.mqtt.url, detail=detail,
                          queued=len(self._queue), dropped=self.dropped,
                          down_s=round(now - since, 1))

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """At a clean stop: the status the last will would have said, as a clean goodbye
        (leaving the connection cleanly sends no will)."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await client.publish(self.topics.status, json.dumps({
                "status": "offline", "node": self.config.node.name, "ts": _now(),
                "reason": "stopped"}), QOS, retain=True, timeout=STOP_TIMEOUT)

    # -- decision events -----------------------------------------------------------------

    async def _send_events(self, client: aiomqtt.Client, tasks: asyncio.TaskGroup) -> None:
        inflight = asyncio.Semaphore(MAX_INFLIGHT)
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            checkpoint, self._checkpoint = self._checkpoint, None
            if checkpoint is not None:
                tasks.create_task(self._send_checkpoint(client, checkpoint))
            while queue:
                await inflight.acquire()
                if not queue:  # what waited went while this waited for room
                    inflight.release()
                    break
                tasks.create_task(self._send_one(client, queue.popleft(), inflight))

    async def _send_one(
        self, client: aiomqtt.Client, record: DecisionRecord, inflight: asyncio.Semaphore
    ) -> None:
        try:
            # No timeout of its own (aiomqtt would arm a timer per event): a connection that
            # drops ends this task through _listen, which puts the event back.
            await client.publish(self.topics.decisions,
                                 decision_line(record, self._pseudonymize),
                                 self.config.mqtt.decisions_qos, timeout=math.inf)
        except BaseException:
            # Not acknowledged: it goes again after the reconnect (at least once).
            self._queue.appendleft(record)
            raise
        finally:
            inflight.release()
        self.published += 1

    async def _send_checkpoint(self, client: aiomqtt.Client, checkpoint: dict[str, Any]) -> None:
        try:
            await client.publish(self.topics.audit, json.dumps(checkpoint), QOS, retain=True,
                                 timeout=math.inf)
        except BaseException:
            if self._checkpoint is None:  # sent after the reconnect, unless a newer one is
                self._checkpoint = checkpoint
            raise

    # -- control messages ----------------------------------------------------------------

    async def _listen(self, client: aiomqtt.Client) -> None:
        """Raises MqttError when the connection drops, which ends this connection's tasks."""
        async for message in client.messages:
            topic = self.topics.control.get(str(message.topic))
            if topic is None:
                continue
            if message.retain:
                # The broker replays a retained message at every subscription: applied
                # when it was published, it must not be applied again at each reconnect.
                self._log.warning("mqtt.control_ignored", topic=topic, detail="a retained "
                                  "control message, replayed by the broker: publish control "
                                  "messages unretained")
                continue
            answer = await self._control(topic, message)
            await client.publish(self.topics.result, json.dumps(answer), QOS)

    async def _control(self, topic: Topic, message: aiomqtt.Message) -> dict[str, Any]:
        payload = message.payload if isinstance(message.payload, bytes) else str(
            message.payload or "").encode()
        command: Command | None = None
        try:
            command = parse(topic, payload, self.config.policy.default_region)
            known = self._answered.get((topic, command.id))
            if known is not None:
                return {**known, "status": "duplicate", "ts": _now()}
            status, detail = "applied", await apply(self.store, self.index, command)
        except Rejected as exc:
            status, detail = "rejected", str(exc)
            id = exc.id if command is None else command.id
        except StoreError as exc:  # not remembered: the same id may be sent again
            status, detail = "failed", f"the store failed: {exc}"
        if command is not None:
            id = command.id
        answer = {"id": id, "topic": topic, "status": status, "detail": detail, "ts": _now()}
        if status != "failed" and id is not None:
            self._answered[topic, id] = answer
            if len(self._answered) > REMEMBERED_IDS:
                self._answered.popitem(last=False)
        self.control_counts[topic, status] = self.control_counts.get((topic, status), 0) + 1
        number = None if command is None else command.number
        self._log.info("mqtt.control", topic=topic, id=id, status=status, detail=detail,
                       op=None if command is None else command.op,
                       number=self._pseudonymize(number)
                       if number is not None and self._pseudonymize is not None else number)
        return answer


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
