"""The composition root: config -> store -> index -> gate -> proxy core -> transports.

Everything that waits (sockets, SQLite, MQTT, signals) lives here or in the edge modules
it wires; the core it drives is synchronous and never waits.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from datetime import UTC, datetime
from functools import lru_cache

import phonenumbers
import structlog

from sipguard import housekeeping as rules
from sipguard.bus.mqtt import PASSWORD_ENV, MqttBus
from sipguard.bus.tls import tls_context
from sipguard.config import Config, ListenAddress, is_wildcard, split_host_port
from sipguard.errors import ConfigError
from sipguard.log import (
    DecisionLog,
    Pseudonymizer,
    configure_logging,
    decision_log,
    log_lines_lost,
    record_logger,
    reopen_log_file,
)
from sipguard.metrics import DecisionTally, Sources, serve_metrics
from sipguard.overload import (
    Ended,
    Marks,
    OverloadGuard,
    Shedder,
    Started,
    Transition,
    emergency_exempt,
    none_decided,
    overload_blocks,
)
from sipguard.policy.gate import Gate
from sipguard.policy.model import DecisionRecord
from sipguard.policy.numbers import Numbers
from sipguard.policy.windows import warm_holidays
from sipguard.sip import proxy as sip_proxy
from sipguard.sip.message import Request
from sipguard.sip.parser import Limits
from sipguard.sip.peer import Transport
from sipguard.sip.proxy import CoreEvent, Problem, ProxyCore, ProxySettings, TrunkState
from sipguard.sip.routing import Identity
from sipguard.sip.timers import TimerValues
from sipguard.sip.verdict import AdmissionHook, DecisionHook, allow_all
from sipguard.store import serve_lock
from sipguard.store.control import remove_control, serve_control
from sipguard.store.db import Store
from sipguard.store.index import Index
from sipguard.store.session import socket_path, store_path
from sipguard.store.sync import load_index, sync_now, watch
from sipguard.store.writer import RecordWriter
from sipguard.transport.backlog import BacklogSampler, QueueProbe
from sipguard.transport.driver import CoreDriver
from sipguard.transport.tcp import TcpPool
from sipguard.transport.udp import UdpEndpoint, open_udp
from sipguard.trunks import resolve_trunks

log = structlog.get_logger("sipguard")


def dialer_matcher(config: Config) -> Callable[[str], bool]:
    networks = config.dialers.networks()

    @lru_cache(maxsize=4096)
    def allowed(host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in networks)

    return allowed


def identity(config: Config) -> Identity:
    listen = config.sip.addresses()
    ports: dict[Transport, int] = {}
    for address in listen:
        ports.setdefault(address.transport, address.port)
    host = config.sip.own_host()
    hosts = {host.lower()} | {a.host.lower() for a in listen if not is_wildcard(a.host)}
    return Identity(host, ports, frozenset(hosts))


def proxy_settings(config: Config) -> ProxySettings:
    sip = config.sip
    return ProxySettings(
        me=identity(config),
        trunks=resolve_trunks(config),
        dialer_allowed=dialer_matcher(config),
        record_route=sip.record_route,
        failover_timeout=sip.failover_timeout,
        trunk_retry=sip.trunk_retry,
        timer_c=sip.timer_c,
        timers=TimerValues(sip.timer_t1, sip.timer_t2, sip.timer_t4),
        limits=Limits(sip.max_message_size, sip.max_headers, sip.max_line_length),
        trace=config.log.level == "debug",
    )


def core_build() -> str:
    """"compiled" when the call path runs as mypyc's extension (setup.py), else "interpreted":
    an operator reading the start-up line can tell which build is serving."""
    return "interpreted" if (sip_proxy.__file__ or "").endswith(".py") else "compiled"


def log_core_event(event: CoreEvent) -> None:
    if isinstance(event, Problem):
        # A fault of our own (the driver's "internal-error") is an error; the rest, a peer's.
        report = log.error if event.kind == "internal-error" else log.warning
        report("sip.problem", kind=event.kind, detail=event.detail,
               peer=str(event.peer) if event.peer else None)
    elif isinstance(event, TrunkState):
        if event.up:
            log.info("trunk.up", trunk=str(event.peer), detail=event.detail)
        else:
            log.warning("trunk.down", trunk=str(event.peer), detail=event.detail)
    else:
        log.debug("sip.transaction", method=event.method, call_id=event.call_id,
                  status=event.status, peer=str(event.source),
                  duration_ms=round(event.duration * 1000, 3))


def log_overload(change: Transition) -> None:
    """One line when shedding starts, one when it ends, a summary per log_interval."""
    reading = change.reading
    measured = {"queue_delay_ms": round(reading.delay * 1000, 1), "queue_bytes": reading.queued,
                "queue_fill": round(reading.fill, 3), "kernel_drops": reading.drops}
    if isinstance(change, Started):
        log.warning("overload.start", cause=change.cause, **measured)
    elif isinstance(change, Ended):
        log.warning("overload.end", duration_s=round(change.duration, 3), shed=change.shed,
                    shed_by_campaign=change.by_campaign,
                    worst_queue_delay_ms=round(change.worst_delay * 1000, 1),
                    dropped=change.drops, **measured)
    else:
        log.warning("overload.shedding", shed=change.shed, shed_by_campaign=change.by_campaign,
                    shed_fraction=round(change.fraction, 2),
                    worst_queue_delay_ms=round(change.worst_delay * 1000, 1), **measured)


def overload_guard(config: Config) -> OverloadGuard:
    o = config.overload
    return OverloadGuard(Marks(o.max_queue_delay, o.max_queue_fill, o.hold, o.log_interval))


def shedder(
    config: Config, guard: OverloadGuard, decided: Callable[[Request, float], bool] | None
) -> Shedder:
    policy = config.policy
    exempt = emergency_exempt(Numbers(policy.default_region, policy.strip_prefixes),
                              policy.number_source, policy.emergency_numbers)
    blocks = overload_blocks(config.overload.retry_after, config.sip.warn_agent())
    return Shedder(guard, blocks, exempt, policy.campaign_header, decided or none_decided)


class Gateway:
    """The running gateway: sockets, the core driver, and the tasks that feed them."""

    def __init__(
        self, config: Config, hook: DecisionHook = allow_all,
        decided: Callable[[Request, float], bool] | None = None,
    ) -> None:
        """`decided`: whether an INVITE re-sends a call already decided (`Gate.decided`),
        which overload shedding lets through."""
        self.config = config
        self.hook = hook
        self.driver: CoreDriver | None = None
        # [overload]: new calls get 503 while the UDP receive queues hold a backlog
        self.guard: OverloadGuard | None = None
        self.admit: AdmissionHook | None = None
        self.sampler: BacklogSampler | None = None
        if config.overload.enabled:
            self.guard = overload_guard(config)
            self.admit = shedder(config, self.guard, decided)
        self._closers: list[Callable[[], object]] = []

    async def start(self) -> None:
        """Open every `sip.listen` socket, or none: one that cannot be opened (a port in
        use, an address not on this machine) closes those opened before it and raises a
        ConfigError naming its entry."""
        try:
            await self._open()
        except BaseException:
            self.close()
            raise

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        core = ProxyCore(proxy_settings(self.config), self.hook, self.admit)
        driver = CoreDriver(core, loop, log_core_event)
        self.driver = driver
        sip = self.config.sip
        pool = TcpPool(driver, core.settings.limits, connect_timeout=sip.failover_timeout)
        driver.senders["tcp"] = pool.send
        self._closers.append(pool.close)
        # Before any socket opens: a datagram may arm the core's timer before a later
        # socket fails to open, and that timer must go with the sockets.
        self._closers.append(driver.close)
        # No UDP socket yet: nothing can be sent that way (nor arrive) until one opens.
        driver.senders["udp"] = lambda peer, _data: driver.transport_error(peer)
        # UDP first and its sender at once: a datagram may arrive the moment a socket is
        # bound, and its answer must have a way out while the TCP listeners still open.
        entries = sorted(enumerate(sip.addresses()), key=lambda e: e[1].transport != "udp")
        sending: UdpEndpoint | None = None
        probes = []
        for index, address in entries:
            try:
                endpoint = await self._listen(pool, driver, address)
            except OSError as exc:
                raise ConfigError(f"sip.listen[{index}]", f"cannot listen on "
                                  f"{sip.listen[index]!r}: {os_reason(exc)}") from None
            if endpoint is None:
                continue
            if endpoint.sock is not None:
                probes.append(QueueProbe(endpoint.sock))
            if sending is None:  # the first UDP socket is the one sipguard sends from
                sending = endpoint
                driver.senders["udp"] = endpoint.send
        if self.guard is not None and probes:
            self._watch_backlog(loop, probes, self.guard)
        log.info("sipguard.listening", listen=list(sip.listen),
                 trunks=[str(t.peer) for t in core.settings.trunks], core=core_build())

    async def _listen(
        self, pool: TcpPool, driver: CoreDriver, address: ListenAddress
    ) -> UdpEndpoint | None:
        """One listen socket, closed with the gateway; its endpoint when it is UDP."""
        if address.transport == "tcp":
            server = await pool.listen(address.host, address.port)
            self._closers.append(server.close)
            return None
        transport, endpoint = await open_udp(driver, address.host, address.port,
                                             self.config.sip.udp_buffer_bytes)
        self._closers.append(transport.close)
        return endpoint

    def _watch_backlog(
        self, loop: asyncio.AbstractEventLoop, probes: list[QueueProbe], guard: OverloadGuard
    ) -> None:
        def unmeasurable() -> None:
            log.warning("overload.unmeasurable", detail="the UDP receive queue cannot be read "
                        "here (SO_MEMINFO / SIOCGSTAMP are Linux-only): no overload protection")

        sampler = BacklogSampler(probes, guard, loop, self.config.overload.sample_interval,
                                 log_overload, unmeasurable)
        self.sampler = sampler
        sampler.start()
        self._closers.append(sampler.close)  # closed first: before the sockets it reads

    def close(self) -> None:
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()


def os_reason(exc: OSError) -> str:
    """What went wrong, in the system's words ("Address already in use"); asyncio and
    uvloop put their own longer text in strerror, the errno says it plainly."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def decision_sinks(
    decision_lines: DecisionLog, writer: RecordWriter, loop: asyncio.AbstractEventLoop,
    tally: DecisionTally | None = None, bus: MqttBus | None = None,
) -> Callable[[DecisionRecord], None]:
    """Where each decision goes: the decisions table and (for calls that were placed) the
    attempts table that frequency caps count, the JSON log line and, with `[mqtt]`, the
    decisions topic.

    The gate hands records over while the INVITE is still being processed; writing them
    is deferred to the next loop turn, so the INVITE leaves for the trunk (or the 603 for
    the dialer) before the log line is formatted. The records of one turn go to each sink
    together: one write of their log lines, one pass queueing their rows (and, with
    `[metrics]`, one pass counting them).
    """
    pending: list[DecisionRecord] = []

    def drain() -> None:
        records = pending.copy()
        pending.clear()
        writer.submit(records)  # first: the store is the system of record
        decision_lines.write(records)
        if tally is not None:
            tally.add(records)
        if bus is not None:
            bus.publish(records)

    def emit(record: DecisionRecord) -> None:
        if not pending:
            loop.call_soon(drain)
        pending.append(record)

    return emit


def mqtt_bus(
    config: Config, store: Store, index: Index, pseudonymize: Pseudonymizer | None,
    environ: Mapping[str, str] = os.environ,
) -> MqttBus:
    """The `[mqtt]` bus; its password (SIPGUARD_MQTT_PASSWORD) and its TLS key's passphrase
    (SIPGUARD_MQTT_TLS_KEY_PASSWORD) come from the environment, never the file."""
    return MqttBus(config, store, index, log=structlog.get_logger("sipguard.mqtt"),
                   pseudonymize=pseudonymize, password=environ.get(PASSWORD_ENV),
                   tls_context=tls_context(config, environ))


def warm_up(gate: Gate, config: Config) -> None:
    """Decide once for an example number of the default region before serving, and build
    every holiday calendar the calling-window rules use, so that the first real calls do
    not pay for lazily loaded number metadata, time zones and holiday calendars (stalls
    of 0.1-0.3 s otherwise, which every call queued behind them waits out)."""
    example = phonenumbers.example_number(config.policy.default_region)
    if example is not None:
        gate.check(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    warm_holidays(datetime.now(UTC).date())


async def run(config: Config, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or `stop` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    configure_logging(config)
    # SIGHUP would end the process (its default): it reopens the log file instead, as
    # logrotate's postrotate (or an operator used to other daemons) expects.
    loop.add_signal_handler(signal.SIGHUP, _reopen_log, config)
    async with AsyncExitStack() as stack:
        stack.callback(serve_lock.hold(store_path(config)))  # before the store is touched
        store = await Store.open(store_path(config))
        stack.push_async_callback(store.close)
        index = await load_index(store)
        # issue 5: frequency caps count the stored attempts of their longest period;
        # stale national lists and lists campaigns name that the store lacks are warned
        # about now and hourly (run_housekeeping)
        counter = await rules.load_counter(store, config)
        rules.warn_stale_lists(index, config, log)
        rules.warn_missing_lists(index, config, log)
        writer = RecordWriter(store, log=log, on_loss=index.recording_lost)
        tally = DecisionTally() if config.metrics.listen else None
        decision_lines = decision_log(config)
        bus = mqtt_bus(config, store, index, decision_lines.pseudonymize) \
            if config.mqtt.enabled else None
        # a record (the chain's head, to ship off the machine): written at any [log] level
        checkpoints = rules.Checkpoints(writer, record_logger("sipguard.audit"),
                                        None if bus is None else bus.checkpoint)
        gate = Gate(config, index, emit=decision_sinks(decision_lines, writer, loop, tally, bus),
                    counter=counter)
        warm_up(gate, config)
        stack.enter_context(serving_interpreter())
        gateway = Gateway(config, gate, gate.decided)
        if tally is not None:  # first: a port it cannot have stops serve before SIP starts
            stack.callback(start_metrics(config, Sources(
                decisions=tally,
                transactions=lambda: gateway.driver.core.transaction_count
                if gateway.driver is not None else 0,
                overloaded=lambda: None if gateway.guard is None else gateway.guard.overloaded,
                calls_shed=lambda: 0 if gateway.guard is None else gateway.guard.shed_total,
                store_rows=lambda: (writer.written, writer.pending, writer.dropped),
                store_error=lambda: index.error,
                list_sizes=lambda: [(i.name, index.list_size(i.name)) for i in index.lists()],
                log_lines_lost=log_lines_lost,
                trunks_up=lambda: [] if gateway.driver is None else [
                    (str(peer), up) for peer, up in gateway.driver.core.trunks_up()],
                bus=lambda: None if bus is None else bus.figures(),
            )))
        await gateway.start()
        stack.callback(gateway.close)
        control = socket_path(config)
        server = await serve_control(control, lambda: sync_now(store, index))
        stack.callback(remove_control, control)
        stack.push_async_callback(server.wait_closed)
        stack.callback(server.close)
        tasks = [
            asyncio.create_task(writer.run(), name="record-writer"),
            asyncio.create_task(
                watch(store, index, config.store.poll_interval, on_error=_store_problem),
                name="store-watch",
            ),
            asyncio.create_task(rules.run_housekeeping(counter, index, config, log),
                                name="rules-housekeeping"),
            asyncio.create_task(rules.run_retention(store, config, log), name="retention"),
            asyncio.create_task(checkpoints.run(config.audit.checkpoint_every),
                                name="audit-checkpoints"),
        ]
        if bus is not None:
            tasks.append(asyncio.create_task(bus.run(), name="mqtt-bus"))
        log.info("sipguard.ready", lists={i.name: index.list_size(i.name) for i in index.lists()},
                 control_socket=str(control), attempts_counted=len(counter))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            checkpoints.log_if_moved()  # the writer's last flush is in: the final head
    log.info("sipguard.stopped")


# Seconds a thread may hold the GIL while another waits for it (CPython's default: 5 ms).
# The record writer's thread (aiosqlite) runs Python between SQLite steps; each time it
# took the GIL, the event loop could wait up to the whole interval before reading the next
# datagram. Through SIPp at 1,000 calls/s, six alternating pairs of 20 s runs:
# INVITE->final p99 5.4-77 ms (median 13) with 5 ms, 4.9-15.9 ms (median 6.5) with 0.5 ms,
# at the same CPU per call.
SWITCH_INTERVAL = 0.0005


@contextmanager
def serving_interpreter() -> Iterator[None]:
    """The interpreter as serve wants it while calls flow; as it was again afterwards.

    No cyclic garbage collection: under load ~30 s of calls are alive at once
    (transactions wait out timers J, L and M), a million objects and more, which the
    collector kept re-scanning for nothing. Measured through SIPp at 500 calls/s: 1,060 µs
    of CPU per call with collections, 780 without; collections forced every second over a
    5,000-call run found 0 cyclic objects. The proxy core frees everything by reference
    counting (tests/core/test_no_cycles.py holds every in-memory proxy flow to that). What
    loading left is frozen first. And a short GIL switch interval (SWITCH_INTERVAL).
    """
    gc.freeze()
    collecting = gc.isenabled()
    gc.disable()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if collecting:
            gc.enable()


def start_metrics(config: Config, sources: Sources) -> Callable[[], None]:
    """The Prometheus endpoint of `[metrics] listen`; returns what stops it."""
    host, port = split_host_port("metrics.listen", config.metrics.listen)
    try:
        stop = serve_metrics(host, port, sources)
    except OSError as exc:
        raise ConfigError("metrics.listen", f"cannot listen on {config.metrics.listen!r}: "
                                            f"{exc.strerror or exc}") from None
    log.info("metrics.listening", listen=config.metrics.listen)
    return stop


def _reopen_log(config: Config) -> None:
    if reopen_log_file(config):
        log.info("log.reopened", file=config.log.file)
    elif config.log.file:
        log.warning("log.reopen_failed", file=config.log.file,
                    detail="cannot open it; still writing to the file open before")


def _store_problem(message: str) -> None:
    log.warning("store.unreadable", detail=message)


def serve(config: Config) -> int:
    """Run the gateway on uvloop when available (about half the CPU per call)."""
    try:
        import uvloop  # noqa: PLC0415  (optional at run time)
    except ImportError:
        asyncio.run(run(config))
    else:
        uvloop.run(run(config))
    return 0
