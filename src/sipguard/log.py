"""Logging: structlog configuration, the decision event (CONTRACT §6), pseudonyms.

The decision event is data first (`decision_event`, the same dict goes to MQTT) and a log
line second (`DecisionLog`). With `[log] pseudonymize = true` the callee and caller are
replaced by keyed pseudonyms: HMAC-SHA256 (RFC 2104, FIPS 180-4) of the number under a
secret key, so the same number gets the same pseudonym (calls stay countable per person)
while nobody without the key can test a guess (GDPR Art. 4(5), Recital 26). The key comes
from $SIPGUARD_PSEUDONYM_KEY; without it, sipguard warns loudly and generates one into a
file beside the database (mode 0600), reused on later starts.

Setup order in `serve`: `configure_logging(config)`, then `decision_log(config)`.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import stat
import sys
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import structlog

from sipguard.config import Config
from sipguard.policy.model import DecisionRecord

PSEUDONYM_ENV = "SIPGUARD_PSEUDONYM_KEY"
KEY_FILE_SUFFIX = ".pseudonym-key"
DECISION_EVENT = "call.decision"
PSEUDONYM_CHARS = 32  # hex characters kept of the HMAC: 128 bits
PSEUDONYM_CACHE = 4096

# Field order of the decision event (CONTRACT §6).
DECISION_FIELDS = (
    "ts", "event", "node", "decision", "reason", "rule", "decision_id", "call_id",
    "campaign", "callee", "caller", "latency_us",
)



def _logger() -> Any:
    """A fresh proxy each time: a cached one would outlive `structlog.configure` calls."""
    return structlog.get_logger("sipguard")


# -- pseudonyms ---------------------------------------------------------------------------


class Pseudonymizer:
    """number -> first 128 bits of HMAC-SHA256(key, number), as hex.

    Results are kept for a while (a dialer's few caller IDs recur on every call).
    """

    __slots__ = ("_cache", "_key")

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("an empty pseudonymisation key")
        self._key = key
        self._cache: dict[str, str] = {}

    def __call__(self, number: str) -> str:
        cache = self._cache
        value = cache.get(number)
        if value is None:
            value = hmac.digest(self._key, number.encode(), "sha256").hex()[:PSEUDONYM_CHARS]
            if len(cache) >= PSEUDONYM_CACHE:
                cache.clear()
            cache[number] = value
        return value


def key_file_path(config: Config) -> Path:
    """Where a generated key lives: beside the database, '<store.path>.pseudonym-key'."""
    db = config.resolve(config.store.path)
    return db.with_name(db.name + KEY_FILE_SUFFIX)


def load_pseudonym_key(config: Config, environ: Mapping[str, str] = os.environ) -> bytes:
    """The key from the environment, else from (or generated into) the key file."""
    value = environ.get(PSEUDONYM_ENV, "")
    if value:
        return value.encode()
    path = key_file_path(config)
    _warn(
        f"{PSEUDONYM_ENV} is not set: pseudonyms use the key in {path} (generated on first "
        "use). Set the variable to keep pseudonyms stable across machines and reinstalls.",
        path,
    )
    return _read_or_create_key(path).encode()


def _warn(message: str, path: Path) -> None:
    print(f"WARNING: {message}", file=sys.stderr)
    _logger().warning("pseudonym_key.not_set", message=message, key_file=str(path))


def _read_or_create_key(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            _logger().warning("pseudonym_key.mode_fixed", key_file=str(path), was=oct(mode))
        key = path.read_text().strip()
        if not key:
            raise OSError(f"the pseudonymisation key file {path} is empty") from None
        return key
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    _logger().warning("pseudonym_key.generated", key_file=str(path))
    return key


# -- the decision event ---------------------------------------------------------------------


def _iso(record: DecisionRecord) -> str:
    return record.ts.isoformat(timespec="microseconds").replace("+00:00", "Z")


def decision_event(
    record: DecisionRecord, pseudonymize: Pseudonymizer | None = None
) -> dict[str, Any]:
    """The CONTRACT §6 object for one decision (log line and MQTT payload)."""
    callee = record.callee or record.callee_raw
    caller = record.caller
    if pseudonymize is not None:
        callee = pseudonymize(callee)
        caller = pseudonymize(caller) if caller is not None else None
    event: dict[str, Any] = {
        "ts": _iso(record),
        "event": DECISION_EVENT,
        "node": record.node,
        "decision": record.decision.action.value,
        "reason": record.decision.reason.value,
        "rule": record.decision.rule,
        "decision_id": record.decision_id,
        "call_id": record.call_id,
        "campaign": record.campaign,
        "callee": callee,
        "caller": caller,
        "latency_us": record.latency_us,
    }
    opens = record.decision.opens_at
    if opens is not None:  # outside-calling-window: when the dialer may try again
        event["opens_at"] = opens.isoformat().replace("+00:00", "Z")
    return event


class DecisionLog:
    """The gate's `emit` target for the log: one `call.decision` line per decision.

    While the JSON configuration `configure_logging` made is in force, the event goes
    straight through its processors to its writer: the same line, without a bound
    logger's per-call work (about a third of a logged call's cost). Any other
    configuration (console format, a level above info, `structlog.testing.capture_logs`,
    an injected logger) gets the event through structlog as usual.
    """

    __slots__ = ("_injected", "_log", "pseudonymize")

    def __init__(self, pseudonymize: Pseudonymizer | None, logger: Any = None) -> None:
        self.pseudonymize = pseudonymize
        self._injected = logger is not None
        self._log = logger if logger is not None else structlog.get_logger("sipguard.decision")

    def __call__(self, record: DecisionRecord) -> None:
        event = decision_event(record, self.pseudonymize)
        direct = _direct
        if direct is not None and not self._injected and direct.in_force():
            direct.write(event)
            return
        del event["event"]
        self._log.info(DECISION_EVENT, **event)


def decision_log(config: Config, environ: Mapping[str, str] = os.environ) -> DecisionLog:
    """The decision log as `[log]` says, loading (or generating) the key when needed."""
    if not config.log.pseudonymize:
        return DecisionLog(None)
    return DecisionLog(Pseudonymizer(load_pseudonym_key(config, environ)))


# -- structlog configuration ------------------------------------------------------------------

EventDict = MutableMapping[str, Any]


def _shape(_logger: Any, method: str, event: EventDict) -> EventDict:
    """ts and event first. The decision event keeps exactly its CONTRACT §6 fields, in
    order; every other event gets a level and a timestamp."""
    if event.get("event") == DECISION_EVENT and len(event) == len(DECISION_FIELDS):
        return {key: event[key] for key in DECISION_FIELDS}
    out: dict[str, Any] = {
        "ts": event.pop("ts", None) or _now_iso(),
        "event": event.pop("event", ""),
        "level": "warning" if method == "warn" else method,
    }
    out.update(event)
    return out


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _dumps(obj: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """`json.dumps(obj, default=default)`, same text, with the C encoder made once per
    `default` instead of once per line (json.dumps builds a JSONEncoder when given one)."""
    encode = _ENCODERS.get(default)
    if encode is None:
        encode = _ENCODERS[default] = json.JSONEncoder(default=default).encode
    return encode(obj)


_ENCODERS: dict[Callable[[Any], Any] | None, Callable[[Any], str]] = {}


class _DirectWrite:
    """The configured JSON pipeline, run without a bound logger (see `DecisionLog`)."""

    __slots__ = ("_processors", "_write")

    def __init__(self, processors: list[Any], write: Callable[[str], None]) -> None:
        self._processors = processors
        self._write = write

    def in_force(self) -> bool:
        return structlog.get_config()["processors"] is self._processors

    def write(self, event: dict[str, Any]) -> None:
        # What structlog does for `info(**event)`: each processor in turn, then the
        # logger's write (under its lock, flushed); the event dict is ours to consume.
        out: Any = event
        for processor in self._processors:
            out = processor(None, "info", out)
        self._write(out)


_direct: _DirectWrite | None = None


def open_log_file(path: Path) -> TextIO:
    """Append to the log file (created 0600: it holds decision records), line-buffered."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a", buffering=1, encoding="utf-8")


def configure_logging(config: Config, stream: TextIO | None = None) -> None:
    """structlog for `serve`: JSON or console lines to stdout or `[log] file`."""
    if stream is None:
        stream = open_log_file(config.resolve(config.log.file)) if config.log.file else sys.stdout
    global _direct  # noqa: PLW0603 (structlog's configuration is process state too)
    renderer: Any
    json_lines = config.log.format != "console"
    if json_lines:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    processors: list[Any] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _shape,
        renderer,
    ]
    level = logging.getLevelNamesMapping()[config.log.level.upper()]
    writer = structlog.WriteLogger(stream)  # one writer (and lock) for every logger
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *args: writer,
        cache_logger_on_first_use=True,
    )
    _direct = _DirectWrite(processors, writer.msg) if json_lines and level <= logging.INFO else None
