"""Typed settings from TOML plus the environment.

Every section is a frozen dataclass; each field carries its documentation in
`metadata["doc"]` so that the config reference (`sipguard config doc`) is generated
from here, not written twice. Loading walks the dataclasses, so an unknown or
mistyped key is reported with its full dotted name.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from sipguard.errors import ConfigError, PolicyError
from sipguard.policy.caps import configured_cap
from sipguard.policy.consent_rules import normalise_caller_ids
from sipguard.policy.model import ALLOW_REASONS, TAGGABLE, UNTAGGABLE, Reason
from sipguard.policy.numbers import Numbers
from sipguard.policy.windows import WeekHours
from sipguard.sip.uri import parse_trunk_uri

DEFAULT_CONFIG = Path("config/sipguard.toml")
T = TypeVar("T")

MAX_RETENTION_DAYS = 36_500

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def doc(text: str, default: Any = MISSING, factory: Any = MISSING) -> Any:
    """A dataclass field with its documentation attached."""
    if factory is not MISSING:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True, slots=True)
class ListenAddress:
    transport: Literal["udp", "tcp"]
    host: str
    port: int

    @classmethod
    def parse(cls, key: str, text: str) -> ListenAddress:
        proto, sep, rest = text.partition(":")
        if not sep or proto not in ("udp", "tcp"):
            raise ConfigError(key, f"{text!r} must look like 'udp:HOST:PORT' or 'tcp:HOST:PORT'")
        host, port = split_host_port(key, rest)
        return cls(typing.cast(Literal["udp", "tcp"], proto), host, port)


def split_host_port(key: str, text: str, default_port: int | None = None) -> tuple[str, int]:
    """Split 'host:port', '[v6]:port' or (with a default) a bare host."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(key, f"{text!r} has an unclosed '['")
        host, rest = text[1:end], text[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not port_text:
        if default_port is None:
            raise ConfigError(key, f"{text!r} needs a port")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(key, f"{text!r} has an invalid port")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str = doc("This gateway's name in logs, decision ids and MQTT topics.", "gw1")


@dataclass(frozen=True, slots=True)
class SipConfig:
    listen: tuple[str, ...] = doc(
        "Sockets to serve, 'udp:HOST:PORT' or 'tcp:HOST:PORT'.",
        factory=lambda: ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"),
    )
    advertised_host: str = doc(
        "Host (or IP) sipguard calls itself in its Via, Record-Route and the Warning of the "
        "responses it makes; empty means the host of the first listen address, which must "
        "then not be a wildcard (0.0.0.0, ::).",
        "",
    )
    record_route: bool = doc("Add Record-Route so in-dialog requests come through sipguard.", True)
    failover_timeout: float = doc(
        "Seconds without any response from a trunk before the call tries the next one "
        "(a trunk's silence is treated like a transport error, as SBCs do).",
        2.0,
    )
    trunk_retry: float = doc(
        "Seconds a trunk that failed (transport error, or silence for failover_timeout) is "
        "tried after the other trunks, so that calls do not each wait on it; the first "
        "call after that tries it first again, and its first answer restores it "
        "(logged as trunk.down / trunk.up). 0: always in the configured order.",
        30.0,
    )
    max_message_size: int = doc("Largest SIP message accepted, in bytes (413/513 above).", 65535)
    max_headers: int = doc("Most header fields accepted in one message (400 above).", 256)
    max_line_length: int = doc("Longest header line accepted, in bytes (400 above).", 8192)
    timer_t1: float = doc("RFC 3261 T1 (RTT estimate), seconds.", 0.5)
    timer_t2: float = doc("RFC 3261 T2 (longest non-INVITE retransmit interval), seconds.", 4.0)
    timer_t4: float = doc("RFC 3261 T4 (how long a message stays in the network), seconds.", 5.0)
    timer_c: float = doc("RFC 3261 §16.6 timer C for a proxied INVITE, seconds (> 180).", 181.0)
    udp_buffer_bytes: int = doc("SO_RCVBUF / SO_SNDBUF asked for on UDP sockets.", 8 * 1024 * 1024)

    def addresses(self) -> tuple[ListenAddress, ...]:
        return tuple(
            ListenAddress.parse(f"sip.listen[{i}]", text) for i, text in enumerate(self.listen)
        )

    def own_host(self) -> str:
        """The host sipguard calls itself (Via, Record-Route, Warning): advertised_host, else
        the host of the first listen address. A wildcard names no host a peer could send
        to, so it is refused here, for `config check` and `serve` alike."""
        listen = self.addresses()
        if not listen:
            raise ConfigError("sip.listen", "needs at least one address")
        if self.advertised_host and is_wildcard(self.advertised_host):
            raise ConfigError("sip.advertised_host", f"{self.advertised_host!r} is a wildcard "
                              "address; give the host or IP peers reach sipguard at")
        if not self.advertised_host and is_wildcard(listen[0].host):
            raise ConfigError("sip.advertised_host", "must be set when listening on a wildcard "
                              f"address ({self.listen[0]!r})")
        return self.advertised_host or listen[0].host

    def warn_agent(self) -> str:
        """`own_host` as a Warning's warn-agent (RFC 3261 §20.43): a hostport, so an IPv6
        address goes in brackets, as in Via's sent-by."""
        host = self.own_host()
        return f"[{host}]" if ":" in host else host


def is_wildcard(host: str) -> bool:
    """0.0.0.0 or :: in any spelling: every local address to bind, none to send to."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class DialersConfig:
    allow: tuple[str, ...] = doc(
        "Networks (CIDR) allowed to send calls through sipguard.", factory=lambda: ("127.0.0.0/8",)
    )

    def networks(self) -> tuple[Network, ...]:
        nets: list[Network] = []
        for i, text in enumerate(self.allow):
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                raise ConfigError(f"dialers.allow[{i}]", str(exc)) from None
        return tuple(nets)


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    uri: str = doc("The trunk's SIP URI, e.g. 'sip:trunk.example.net:5060;transport=udp'.")
    priority: int = doc("Lower is tried first; equal priorities keep file order.", 1)
    name: str = doc("A name for logs; defaults to host:port.", "")
    request_uri: Literal["keep", "trunk"] = doc(
        "'keep' forwards the dialer's Request-URI untouched; 'trunk' puts this trunk's host "
        "and port in it (user part and parameters kept), for carriers that refuse a "
        "Request-URI naming another host.",
        "keep",
    )


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str = doc("The SQLite file (created with mode 0600).", "var/sipguard.db")
    control_socket: str = doc(
        "Unix socket through which CLI writes reach a running server at once; "
        "empty means '<store.path>.ctl'.",
        "",
    )
    poll_interval: float = doc("Seconds between cheap checks for writes by other processes.", 1.0)


@dataclass(frozen=True, slots=True)
class BlockResponse:
    code: int = doc("Final response code for a blocked call: 603 Decline or 608 Rejected "
                    "(RFC 8688) say it was refused on purpose; any 4xx-6xx is taken, but a "
                    "dialer may retry other codes.", 603)
    reason: str = doc("Its reason phrase.", "Decline")


@dataclass(frozen=True, slots=True)
class CapConfig:
    max_calls: int = doc("Most allowed calls to one number within `period` (0 = none).")
    period: str = doc("Rolling period: '24h', '7d', '90m'.")
    scope: Literal["campaign", "all"] = doc(
        "'campaign': counted per campaign; 'all': calls of every campaign count.", "campaign"
    )


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    mode: Literal["enforce", "monitor"] = doc(
        "'enforce' blocks; 'monitor' forwards everything and flags what it would block.",
        "enforce",
    )
    default_region: str = doc("ISO 3166 region for numbers dialled without a country code.", "US")
    number_source: str = doc(
        "Where the called number comes from: 'ruri', 'to' or 'header:NAME'.", "ruri"
    )
    strip_prefixes: tuple[str, ...] = doc(
        "Dial prefixes removed before normalisation (e.g. an outside-line '9').", factory=tuple
    )
    on_store_error: Literal["reject", "allow"] = doc(
        "When the store cannot be read, or cannot take decision records and they are being "
        "lost: 'reject' answers 503, 'allow' lets calls through (flagged store-unavailable).",
        "reject",
    )
    block_response: BlockResponse = doc(
        "The response a blocked call gets.", factory=BlockResponse
    )
    tag_header: str = doc("Header added to forwarded INVITEs.", "X-Sipguard-Decision")
    campaign_header: str = doc("Header naming the campaign.", "X-Campaign")
    emergency_numbers: tuple[str, ...] = doc(
        "Numbers always allowed.", factory=lambda: ("911", "112", "999", "000")
    )
    retry_after: int = doc(
        "Seconds in the Retry-After of the 503 a call gets when the store is unavailable "
        "and on_store_error = 'reject' (RFC 3261 §21.5.4).",
        30,
    )
    reuse_seconds: float = doc(
        "How long a decision waits for the INVITE re-sent after a 401/407 challenge (same "
        "Call-ID, From tag and dialled number); within it the re-sent INVITE gets the first "
        "decision and is not decided, logged or counted again.",
        60.0,
    )
    reuse_entries: int = doc(
        "Most decisions remembered for such re-sent INVITEs (oldest dropped first).", 65536
    )
    revoke_scope: Literal["campaign", "all"] = doc(
        "A campaign-scoped revocation voids that campaign's consent only ('campaign') or "
        "every consent of the number given before it ('all'). A revocation without a "
        "campaign always voids all.",
        "campaign",
    )
    stale_list: Literal["warn", "block"] = doc(
        "A list a campaign checks that cannot be relied on: a national DNC list older than "
        "its safe-harbor limit (US/CA 31 days, UK TPS 28, AU 30), no national list at "
        "all for a campaign naming 'national' or none for the called number's country, "
        "or a list a campaign names by name that the store does not hold. 'warn' logs "
        "it at start and hourly (dnc.list_stale, dnc.list_missing) and notes it in the "
        "rule trail; 'block' also blocks the calls "
        "that depend on it (rule stale-list): dnc-national for a stale or absent national "
        "list, dnc-custom for another missing one.",
        "warn",
    )
    caps: tuple[CapConfig, ...] = doc(
        "System-wide frequency caps (every campaign), e.g. "
        "[{ max_calls = 10, period = '24h', scope = 'all' }].",
        factory=tuple,
    )
    wireless_from_number_type: bool = doc(
        "Outside NANP, treat numbers phonenumbers types MOBILE as wireless even when they "
        "are on no wireless list.",
        True,
    )
    extra_holidays: dict[str, tuple[str, ...]] = doc(
        "Extra legal holidays by region for calling windows that close on holidays, e.g. "
        "{ US-LA = ['2023-07-03'] } for a day a governor declares.",
        factory=dict,
    )
    tag_reasons: tuple[str, ...] = doc(
        "Block reasons in tag mode, for every campaign, e.g. ['outside-calling-window', "
        "'frequency-cap']: a call such a rule would block is forwarded flagged instead "
        "(<tag_header>: flag;reason=...), unless a later rule blocks it for a reason not "
        "in tag mode (then it is blocked). Any block reason but invalid-number and "
        "store-unavailable (see on_store_error).",
        factory=tuple,
    )


@dataclass(frozen=True, slots=True)
class CampaignConfig:
    # A closed vocabulary: the shipped rules match purposes by name (TCPA written consent
    # for 'telemarketing', Reg F's call cap for 'debt-collection'), so a misspelt one would
    # silently escape them.
    purpose: Literal["telemarketing", "informational", "debt-collection", "political",
                     "survey", "charitable"] = doc(
        "What the calls are for. 'telemarketing' needs prior express written consent to "
        "call a wireless number autodialed (47 CFR 64.1200(a)(2)); 'debt-collection' gets "
        "Regulation F's cap (12 CFR 1006.14(b)(2)); calling windows, lists and the other "
        "caps apply to every purpose.",
        "telemarketing",
    )
    lists: tuple[str, ...] = doc(
        "Lists checked for this campaign, by kind (every list of that kind: 'national', "
        "'state', 'litigator', 'custom', ...) or by list name (e.g. 'acme-suppression'). "
        "Internal lists always apply. A name that is neither a kind nor a list in the store "
        "is warned about (see policy.stale_list).",
        factory=lambda: ("internal", "national", "state", "litigator"),
    )
    require_consent: bool = doc("Block calls without an active consent for this campaign.", False)
    autodialed: bool = doc(
        "Calls are placed by an automatic dialer: calling a wireless number then needs "
        "'express' consent ('express-written' for telemarketing).",
        False,
    )
    allowed_caller_ids: tuple[str, ...] = doc(
        "Caller IDs (numbers the company owns) this campaign may present; a missing, invalid "
        "or other caller is blocked caller-id-not-allowed. Empty = not checked. Normalised "
        "with policy.default_region.",
        factory=tuple,
    )
    window: dict[str, str] = doc(
        "Narrower calling hours, local to the called party: keys daily / weekdays / weekends "
        "/ mon..sun, values 'HH:MM-HH:MM[,HH:MM-HH:MM]' or 'closed'; a day no key mentions "
        "is closed. Empty = only the legal windows.",
        factory=dict,
    )
    caps: tuple[CapConfig, ...] = doc(
        "Extra frequency caps for this campaign, e.g. [{ max_calls = 2, period = '24h' }].",
        factory=tuple,
    )
    tag_reasons: tuple[str, ...] = doc(
        "Extra block reasons in tag mode for this campaign (added to policy.tag_reasons).",
        factory=tuple,
    )


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: Literal["json", "console"] = doc("Decision log format.", "json")
    pseudonymize: bool = doc("Replace numbers in logs by keyed HMAC pseudonyms.", True)
    level: Literal["debug", "info", "warning", "error"] = doc(
        "Lowest level of the operational lines written. The call.decision and "
        "audit.checkpoint lines are written whatever the level: they are records.",
        "info",
    )
    file: str = doc("Write the log to this file instead of stdout; empty means stdout. A log that "
                    "cannot be written (full disk, closed pipe) drops its lines, says so on "
                    "stderr at most every 10 s, and stops no call: decisions are still stored.",
                    "")


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool = doc(
        "Publish each decision and this gateway's status, and apply the opt-outs and consent "
        "that arrive on the control topics (README \"MQTT\"). A broker that is away or slow "
        "never delays or refuses a call: events wait in memory (queue_size) until it is back.",
        False,
    )
    url: str = doc("Broker URL: mqtt://HOST[:PORT] (port 1883), or mqtts://HOST[:PORT] (8883, "
                   "TLS, the broker's certificate verified).", "mqtt://127.0.0.1:1883")
    topic_prefix: str = doc("Prefix of every topic.", "sipguard")
    username: str = doc("Broker user; the password comes from SIPGUARD_MQTT_PASSWORD.", "")
    tls_ca_file: str = doc("With mqtts://: the CA certificates (PEM) that sign the broker's "
                           "certificate; empty means the system's.", "")
    tls_cert_file: str = doc("With mqtts://, for a broker that asks for a client certificate "
                             "(require_certificate): this gateway's certificate (PEM), "
                             "followed by its key unless tls_key_file names it.", "")
    tls_key_file: str = doc("The key of tls_cert_file (PEM), when in a file of its own; an "
                            "encrypted key's passphrase comes from "
                            "SIPGUARD_MQTT_TLS_KEY_PASSWORD.", "")
    control: bool = doc("Subscribe to {prefix}/control/dnc, /consent and /subject and "
                        "apply what arrives; false publishes only.", True)
    queue_size: int = doc("Decision events kept while the broker is away or slow; beyond it the "
                          "oldest are dropped and counted (mqtt.events_dropped). The store "
                          "keeps every decision regardless.", 100_000)
    decisions_qos: int = doc("QoS of the decision events: 1 (at least once; CONTRACT §7) or 0 "
                             "(at most once: about half the CPU per event, and what is in "
                             "flight when the connection drops is lost; the store keeps it).",
                             1)
    keepalive: int = doc("Seconds between keep-alives. The broker publishes the last will "
                         "(status offline) when it hears nothing for 1.5 times this.", 30)

    def broker(self) -> tuple[bool, str, int]:
        """(TLS, host, port) of `url`; a ConfigError naming mqtt.url when it is none."""
        scheme, sep, rest = self.url.partition("://")
        if not sep or scheme not in ("mqtt", "mqtts") or not rest or "/" in rest.rstrip("/"):
            raise ConfigError("mqtt.url", f"{self.url!r} must look like 'mqtt://HOST[:PORT]' or "
                                          "'mqtts://HOST[:PORT]'")
        tls = scheme == "mqtts"
        host, port = split_host_port("mqtt.url", rest.rstrip("/"), 8883 if tls else 1883)
        if not host:
            raise ConfigError("mqtt.url", f"{self.url!r} names no host")
        return tls, host, port


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str = doc("Prometheus endpoint HOST:PORT (metrics at /metrics, README \"Metrics\"); "
                      "empty disables it.", "")


@dataclass(frozen=True, slots=True)
class OverloadConfig:
    enabled: bool = doc(
        "Answer new calls 503 + Retry-After while the UDP receive queue holds a backlog, so "
        "that calls in progress finish and the gateway recovers (RFC 6357). In-dialog "
        "requests, ACK, CANCEL, responses, an INVITE re-sent after a 401/407 challenge "
        "and emergency numbers are never shed.",
        True,
    )
    max_queue_delay: float = doc(
        "Shed when a datagram has waited this many seconds in the kernel's receive queue. "
        "An INVITE's round trip crosses that queue twice (the INVITE, then the trunk's "
        "answer): at 0.25 s each, dialers and trunks start retransmitting (T1 = 0.5 s).",
        0.1,
    )
    max_queue_fill: float = doc(
        "Shed when the receive queue is this full (a fraction of the buffer the kernel "
        "granted, see sip.udp_buffer_bytes); datagrams dropped for a full buffer shed too.",
        0.5,
    )
    retry_after: int = doc(
        "Seconds in the Retry-After of the 503 (RFC 3261 §21.5.4): when the dialer may "
        "try the call again; spread ±20% over the calls shed, so they do not all return "
        "in the same second.",
        5,
    )
    hold: float = doc(
        "While overloaded, the share of new calls shed rises while the queue is above a "
        "mark and falls (to none in 1 s) while it is under half of both marks; the episode "
        "ends after this many seconds with none shed (one overload stays one episode).",
        1.0,
    )
    sample_interval: float = doc("Seconds between two readings of the receive queues.", 0.01)
    log_interval: float = doc(
        "While shedding, seconds between two overload.shedding summaries (calls shed by "
        "campaign); entering and leaving overload are logged once each.",
        10.0,
    )


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    decisions_days: int = doc(
        "Days a decision record (why a call was or was not placed, with its rule trail) is "
        "kept. 1826 = 5 years: the Telemarketing Sales Rule's recordkeeping period (16 CFR "
        "310.5, 5 years since the 2024 amendment), which covers the TCPA's 4-year "
        "limitation for claims (28 U.S.C. 1658(a)); no longer, as GDPR Art. 5(1)(e) "
        "(storage limitation) asks.",
        1826,
    )
    consents_days: int = doc(
        "Days a consent record is kept after it ENDED (revoked, expired, or an EBR past its "
        "longest term); a consent in force is never deleted, nor a revocation that still "
        "voids one in force. 1826 = the 5 years 16 CFR 310.5(a)(5) asks for records of "
        "express agreement.",
        1826,
    )
    lists_days: int = doc(
        "Days list history no longer in effect is kept: a bulk generation after a later one "
        "of the same list replaced it, a single add/remove after a replace-import "
        "superseded it. A list's current generation and entries in effect are never "
        "deleted. 1826: as decisions_days, so the lists that explain a kept decision stay.",
        1826,
    )
    hold: bool = doc(
        "Litigation hold: while true nothing is purged (logged as retention.held; the CLI "
        "says \"hold\": true).",
        False,
    )
    purge_every: float = doc(
        "Seconds between two scheduled purges in `serve` (the first runs shortly after "
        "start). Call attempts (what frequency caps count) have no key: they are kept as "
        "long as the longest cap's period, at least a day; decisions hold the same calls.",
        3600.0,
    )


@dataclass(frozen=True, slots=True)
class AuditConfig:
    checkpoint_every: float = doc(
        "Seconds between two audit.checkpoint log lines in `serve` (rows chained so far and "
        "the chain's head), logged only when decisions were written since the last one. "
        "Keep them outside the machine: `sipguard audit verify --head HEX` proves the chain "
        "still holds that head (README \"Audit\").",
        300.0,
    )


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeConfig = doc("This gateway.", factory=NodeConfig)
    sip: SipConfig = doc("SIP transports and timers.", factory=SipConfig)
    dialers: DialersConfig = doc("Who may send calls.", factory=DialersConfig)
    trunks: tuple[TrunkConfig, ...] = doc(
        "The business trunks, tried by priority.",
        factory=lambda: (TrunkConfig(uri="sip:127.0.0.1:5080;transport=udp"),),
    )
    store: StoreConfig = doc("The SQLite store.", factory=StoreConfig)
    policy: PolicyConfig = doc("The decision.", factory=PolicyConfig)
    campaigns: dict[str, CampaignConfig] = doc(
        "Campaigns by name; 'default' applies when the INVITE names none.",
        factory=lambda: {"default": CampaignConfig()},
    )
    log: LogConfig = doc("Decision and event log.", factory=LogConfig)
    mqtt: MqttConfig = doc("Optional MQTT bus.", factory=MqttConfig)
    metrics: MetricsConfig = doc("Optional Prometheus metrics.", factory=MetricsConfig)
    overload: OverloadConfig = doc("Overload protection.", factory=OverloadConfig)
    retention: RetentionConfig = doc("How long personal data is kept.", factory=RetentionConfig)
    audit: AuditConfig = doc("The tamper-evident decision record.", factory=AuditConfig)
    base_dir: str = doc("Directory relative paths are resolved from (set by the loader).", ".")

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p

    def campaign(self, name: str) -> CampaignConfig:
        return self.campaigns.get(name) or self.campaigns.get("default") or CampaignConfig()


def _convert(key: str, value: Any, hint: Any) -> Any:
    """Check and convert one TOML value to the type a field declares."""
    if is_dataclass(hint) and isinstance(hint, type):
        return _build(key, hint, _table(key, value))
    converter = _CONVERTERS.get(get_origin(hint))
    return converter(key, value, hint) if converter else _scalar(key, value, hint)


def _table(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(key, f"must be a table, not {type(value).__name__}")
    return value


def _literal(key: str, value: Any, hint: Any) -> Any:
    if value not in get_args(hint):
        allowed = ", ".join(repr(a) for a in get_args(hint))
        raise ConfigError(key, f"{value!r} is not one of {allowed}")
    return value


def _union(key: str, value: Any, hint: Any) -> Any:
    errors = []
    for arg in get_args(hint):
        try:
            return _convert(key, value, arg)
        except ConfigError as exc:
            errors.append(exc.problem)
    raise ConfigError(key, "; ".join(errors))


def _tuple(key: str, value: Any, hint: Any) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list, not {type(value).__name__}")
    item = get_args(hint)[0]
    return tuple(_convert(f"{key}[{i}]", v, item) for i, v in enumerate(value))


def _dict(key: str, value: Any, hint: Any) -> dict[str, Any]:
    item = get_args(hint)[1]
    return {k: _convert(f"{key}.{k}", v, item) for k, v in _table(key, value).items()}


def _scalar(key: str, value: Any, hint: Any) -> Any:
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(hint, type) or not isinstance(value, hint) or (
        hint is int and isinstance(value, bool)
    ):
        name = getattr(hint, "__name__", str(hint))
        raise ConfigError(key, f"must be {name}, not {type(value).__name__} ({value!r})")
    return value


_CONVERTERS: dict[Any, Callable[[str, Any, Any], Any]] = {
    Literal: _literal,
    types.UnionType: _union,
    typing.Union: _union,
    tuple: _tuple,
    dict: _dict,
}


def _build(prefix: str, cls: type[T], data: dict[str, Any]) -> T:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for name in data:
        if name not in known:
            where = f"{prefix}.{name}" if prefix else name
            raise ConfigError(where, f"unknown key (known: {', '.join(sorted(known))})")
    kwargs = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            where = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _convert(where, data[f.name], hints[f.name])
        elif f.default is MISSING and f.default_factory is MISSING:
            where = f"{prefix}.{f.name}" if prefix else f.name
            raise ConfigError(where, "is required")
    return cls(**kwargs)


def parse_config(data: dict[str, Any], base_dir: str = ".") -> Config:
    """Build and validate a Config from parsed TOML."""
    data = dict(data)
    data.pop("base_dir", None)
    config = _build("", Config, data)
    config = _replace(config, base_dir=base_dir)
    validate(config)
    return config


def _replace(config: Config, **changes: Any) -> Config:
    return replace(config, **changes)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config named by `path`, else $SIPGUARD_CONFIG, else config/sipguard.toml."""
    chosen = Path(path or os.environ.get("SIPGUARD_CONFIG") or DEFAULT_CONFIG)
    try:
        with chosen.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("", f"config file {str(chosen)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"config file {str(chosen)!r} is not valid TOML: {exc}") from None
    base = chosen.resolve().parent
    # A config kept in a 'config/' folder names paths relative to the project root.
    if base.name == "config":
        base = base.parent
    return parse_config(data, str(base))


def validate(config: Config) -> None:
    """Checks across fields that types alone cannot express."""
    config.sip.addresses()
    config.dialers.networks()
    config.sip.own_host()  # at least one listen address, and a host to call itself
    if not config.trunks:
        raise ConfigError("trunks", "needs at least one [[trunks]] entry")
    for i, trunk in enumerate(config.trunks):
        parse_trunk_uri(f"trunks[{i}].uri", trunk.uri)
    if config.policy.block_response.code not in range(400, 700):
        raise ConfigError("policy.block_response.code", "must be a 4xx-6xx final response code")
    source = config.policy.number_source
    if source not in ("ruri", "to") and not (source.startswith("header:") and len(source) > 7):
        raise ConfigError(
            "policy.number_source", f"{source!r} must be 'ruri', 'to' or 'header:NAME'"
        )
    if config.sip.timer_c <= 180:
        raise ConfigError("sip.timer_c", "must be greater than 180 seconds (RFC 3261 §16.6)")
    if config.sip.failover_timeout <= 0:
        raise ConfigError("sip.failover_timeout", "must be positive")
    if config.sip.trunk_retry < 0:
        raise ConfigError("sip.trunk_retry", "must not be negative")
    if "default" not in config.campaigns:
        raise ConfigError("campaigns.default", "is required (it applies when no campaign is named)")
    _validate_policy(config.policy)
    _validate_overload(config.overload)
    _validate_retention(config.retention)
    _validate_audit(config.audit)
    if config.metrics.listen:
        split_host_port("metrics.listen", config.metrics.listen)
    if config.mqtt.enabled:
        _validate_mqtt(config)
    for name, campaign in config.campaigns.items():
        _validate_campaign(f"campaigns.{name}", campaign, config.policy.default_region)


def _validate_policy(policy: PolicyConfig) -> None:
    try:
        Numbers(policy.default_region)
    except ValueError as exc:
        raise ConfigError("policy.default_region", str(exc)) from None
    if policy.retry_after < 0:
        raise ConfigError("policy.retry_after", "must not be negative")
    if policy.reuse_seconds <= 0:
        raise ConfigError("policy.reuse_seconds", "must be positive")
    if policy.reuse_entries < 1:
        raise ConfigError("policy.reuse_entries", "must be at least 1")
    _validate_caps("policy.caps", policy.caps)
    _validate_tag_reasons("policy.tag_reasons", policy.tag_reasons)
    for region, days in policy.extra_holidays.items():
        for i, day in enumerate(days):
            try:
                date.fromisoformat(day)
            except ValueError:
                raise ConfigError(
                    f"policy.extra_holidays.{region}[{i}]", f"{day!r} is not a date YYYY-MM-DD"
                ) from None


def _validate_mqtt(config: Config) -> None:
    mqtt, node = config.mqtt, config.node.name
    mqtt.broker()
    # Each is one or more topic levels: MQTT forbids wildcards in a topic name (MQTT 3.1.1
    # §4.7.1), and an empty level would make a topic subscribers do not expect.
    for key, value in (("mqtt.topic_prefix", mqtt.topic_prefix), ("node.name", node)):
        if not value or "+" in value or "#" in value or "" in value.split("/"):
            raise ConfigError(key, f"{value!r} must be a topic without '+', '#' or an empty "
                                   "level")
    if "/" in node:
        raise ConfigError("node.name", f"{node!r} must be one topic level (no '/')")
    if mqtt.queue_size < 1:
        raise ConfigError("mqtt.queue_size", "must be at least 1")
    if mqtt.decisions_qos not in (0, 1):
        raise ConfigError("mqtt.decisions_qos", "must be 0 or 1")
    if not 5 <= mqtt.keepalive <= 65535:  # the protocol's field is 16 bits
        raise ConfigError("mqtt.keepalive", "must be between 5 and 65535 seconds")
    if mqtt.tls_key_file and not mqtt.tls_cert_file:
        raise ConfigError("mqtt.tls_key_file", "needs mqtt.tls_cert_file (the certificate)")
    for key, path in (("mqtt.tls_ca_file", mqtt.tls_ca_file),
                      ("mqtt.tls_cert_file", mqtt.tls_cert_file),
                      ("mqtt.tls_key_file", mqtt.tls_key_file)):
        if path and not mqtt.url.startswith("mqtts://"):
            raise ConfigError(key, "only applies to an mqtts:// url")
        if path and not config.resolve(path).is_file():
            raise ConfigError(key, f"{str(config.resolve(path))!r} is not a file")


def _validate_overload(overload: OverloadConfig) -> None:
    for key, value in (("max_queue_delay", overload.max_queue_delay),
                       ("sample_interval", overload.sample_interval),
                       ("log_interval", overload.log_interval)):
        if value <= 0:
            raise ConfigError(f"overload.{key}", "must be positive")
    if not 0 < overload.max_queue_fill <= 1:
        raise ConfigError("overload.max_queue_fill", "must be above 0 and at most 1")
    if overload.retry_after < 0:
        raise ConfigError("overload.retry_after", "must not be negative")
    if overload.hold < 0:
        raise ConfigError("overload.hold", "must not be negative")
    if overload.sample_interval > overload.max_queue_delay:
        raise ConfigError("overload.sample_interval",
                          "must not exceed overload.max_queue_delay (it would see too late)")


def _validate_retention(retention: RetentionConfig) -> None:
    for key in ("decisions_days", "consents_days", "lists_days"):
        # the upper bound keeps `now - days` a representable date
        if not 1 <= getattr(retention, key) <= MAX_RETENTION_DAYS:
            raise ConfigError(f"retention.{key}",
                              f"must be between 1 and {MAX_RETENTION_DAYS} (days)")
    if retention.purge_every <= 0:
        raise ConfigError("retention.purge_every", "must be positive")


def _validate_audit(audit: AuditConfig) -> None:
    if audit.checkpoint_every <= 0:
        raise ConfigError("audit.checkpoint_every", "must be positive")


def _validate_caps(key: str, caps: tuple[CapConfig, ...]) -> None:
    for i, cap in enumerate(caps):
        if cap.max_calls < 0:
            raise ConfigError(f"{key}[{i}].max_calls", "must not be negative")
        try:
            configured_cap(cap.max_calls, cap.period, cap.scope)
        except PolicyError as exc:
            raise ConfigError(f"{key}[{i}].period", str(exc)) from None


def _validate_tag_reasons(key: str, reasons: tuple[str, ...]) -> None:
    """Only what a rule blocks can be put in tag mode."""
    for i, text in enumerate(reasons):
        where = f"{key}[{i}]"
        if text not in Reason._value2member_map_:
            raise ConfigError(where, f"{text!r} is not a reason code (block reasons: "
                                     f"{', '.join(sorted(TAGGABLE))})")
        reason = Reason(text)
        if reason in ALLOW_REASONS:
            raise ConfigError(where, f"{text!r} is an allow reason; only block reasons can "
                                     "be tagged")
        if reason in UNTAGGABLE:
            raise ConfigError(where, f"{text!r} cannot be tagged: {UNTAGGABLE[reason]}")


def _validate_campaign(key: str, campaign: CampaignConfig, region: str) -> None:
    _validate_caps(f"{key}.caps", campaign.caps)
    _validate_tag_reasons(f"{key}.tag_reasons", campaign.tag_reasons)
    for i, number in enumerate(campaign.allowed_caller_ids):
        try:
            normalise_caller_ids((number,), region)
        except ValueError as exc:
            raise ConfigError(f"{key}.allowed_caller_ids[{i}]", str(exc)) from None
    if campaign.window:
        try:
            WeekHours.parse(campaign.window, f"{key}.window")
        except PolicyError as exc:
            where, _, problem = str(exc).partition(": ")
            raise ConfigError(where, problem or str(exc)) from None


def reference(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, documentation) for every setting, for the generated reference."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        if is_dataclass(hint) and isinstance(hint, type):
            rows.extend(reference(hint, key + "."))
            continue
        entry = get_args(hint)[-1] if get_origin(hint) is dict else None
        if is_dataclass(entry) and isinstance(entry, type):  # campaigns.NAME.purpose, ...
            names = f.default_factory() if f.default_factory is not MISSING else {}
            shown = "{" + ", ".join(f"{name!r}: {{...}}" for name in names) + "}"
            rows.append((key, shown, f.metadata.get("doc", "")))
            rows.extend(reference(entry, key + ".NAME."))
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else ""
        )
        rows.append((key, repr(default), f.metadata.get("doc", "")))
    return rows
