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

import contextlib
import errno
import hashlib
import json
import logging
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, TextIO

import structlog

from sipguard.config import Config
from sipguard.errors import ConfigError
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

    The HMAC is RFC 2104 written out with the keyed inner and outer SHA-256 states made
    once: each number then costs two state copies instead of a full HMAC set-up (a third
    of `hmac.digest`'s time; pseudonyms are made for every logged call). Results are kept
    for a while (a dialer's few caller IDs recur on every call).
    """

    __slots__ = ("_cache", "_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("an empty pseudonymisation key")
        block = hashlib.sha256().block_size
        if len(key) > block:  # RFC 2104 §2: a key longer than a block is hashed first
            key = hashlib.sha256(key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))
        self._cache: dict[str, str] = {}

    def __call__(self, number: str) -> str:
        cache = self._cache
        value = cache.get(number)
        if value is None:
            inner = self._inner.copy()
            inner.update(number.encode())
            outer = self._outer.copy()
            outer.update(inner.digest())
            value = outer.hexdigest()[:PSEUDONYM_CHARS]
            if len(cache) >= PSEUDONYM_CACHE:
                cache.clear()
            cache[number] = value
        return value


_IPAD = bytes(b ^ 0x36 for b in range(256))  # RFC 2104 §2: key XOR ipad, as a table
_OPAD = bytes(b ^ 0x5C for b in range(256))


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


def _numbers(
    record: DecisionRecord, pseudonymize: Pseudonymizer | None
) -> tuple[str, str | None]:
    """The callee (as dialled when invalid) and the caller, pseudonymised when asked."""
    callee = record.callee or record.callee_raw
    caller = record.caller
    if pseudonymize is None:
        return callee, caller
    return pseudonymize(callee), pseudonymize(caller) if caller is not None else None


def decision_event(
    record: DecisionRecord, pseudonymize: Pseudonymizer | None = None
) -> dict[str, Any]:
    """The CONTRACT §6 object for one decision (log line and MQTT payload)."""
    callee, caller = _numbers(record, pseudonymize)
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
        event["opens_at"] = _opens_text(opens)
    return event


def _opens_text(opens: datetime) -> str:
    return opens.isoformat().replace("+00:00", "Z")


# json's own string encoder: the one `json.dumps` uses (ensure_ascii, its default)
_q = encode_basestring_ascii


def decision_line(record: DecisionRecord, pseudonymize: Pseudonymizer | None = None) -> str:
    """The JSON line `configure_logging`'s pipeline renders for `decision_event(record)`,
    written out as one string (about a fifth of the time of building the dict and running
    the processors). An event with `opens_at` is not one `_shape` knows by its fields: it
    gets a level after `event`, and `opens_at` last. A test
    (`test_json_lines_are_what_structlog_renders`) holds the two to the same bytes."""
    callee, caller = _numbers(record, pseudonymize)
    decision = record.decision
    opens = decision.opens_at
    level, tail = ("", "") if opens is None else (
        ', "level": "info"', f', "opens_at": "{_opens_text(opens)}"'
    )
    return (  # the enums are StrEnums: each is its value (`.value` is a slow property)
        f'{{"ts": "{_iso(record)}", "event": "{DECISION_EVENT}"{level}, '
        f'"node": {_q(record.node)}, '
        f'"decision": {_q(decision.action)}, "reason": {_q(decision.reason)}, '
        f'"rule": {_q(decision.rule)}, "decision_id": {_q(record.decision_id)}, '
        f'"call_id": {_q(record.call_id)}, "campaign": {_q(record.campaign)}, '
        f'"callee": {_q(callee)}, "caller": {"null" if caller is None else _q(caller)}, '
        f'"latency_us": {record.latency_us}{tail}}}'
    )


class DecisionLog:
    """The gate's `emit` target for the log: one `call.decision` line per decision.

    While the JSON configuration `configure_logging` made is in force, the lines go
    straight to its writer as `decision_line` renders them, the lines of one `write` in
    one write and flush: the same text, without a bound logger's per-call work. Any other
    configuration (console format, `structlog.testing.capture_logs`, an injected logger)
    gets each event through structlog as usual.

    Either way `[log] level` does not filter them: they are compliance records (CONTRACT
    §6, one line per decision); the level is for the operational lines.
    """

    __slots__ = ("_injected", "_log", "pseudonymize")

    def __init__(self, pseudonymize: Pseudonymizer | None, logger: Any = None) -> None:
        self.pseudonymize = pseudonymize
        self._injected = logger is not None
        self._log = logger if logger is not None else record_logger("sipguard.decision")

    def __call__(self, record: DecisionRecord) -> None:
        self.write((record,))

    def write(self, records: Sequence[DecisionRecord]) -> None:
        """Log the decisions in order."""
        pseudonymize = self.pseudonymize
        direct = _direct
        if direct is not None and not self._injected and direct.in_force():
            direct.write([decision_line(r, pseudonymize) for r in records])
            return
        for record in records:
            event = decision_event(record, pseudonymize)
            del event["event"]
            self._log.info(DECISION_EVENT, **event)


def record_logger(name: str) -> Any:
    """A logger for records (decision lines, audit checkpoints): the configured pipeline
    with a level filter of its own that lets info through, whatever `configure_logging`
    set for the operational lines."""
    return structlog.wrap_logger(
        None,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory_args=(name,),
    )


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
    """The configured JSON pipeline's writer, used without a bound logger (see
    `DecisionLog`), and how to tell that its configuration is still in force."""

    __slots__ = ("_processors", "_write")

    def __init__(self, processors: list[Any], write: Callable[[str], None]) -> None:
        self._processors = processors
        self._write = write

    def in_force(self) -> bool:
        return structlog.get_config()["processors"] is self._processors

    def write(self, lines: list[str]) -> None:
        # the logger's write (under its lock, flushed) adds the last newline
        if lines:
            self._write("\n".join(lines))


_direct: _DirectWrite | None = None


def open_log_file(path: Path) -> TextIO:
    """Append to the log file (created 0600: it holds decision records), line-buffered."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file where its directory should be: say that
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR),
                                 exc.filename) from None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a", buffering=1, encoding="utf-8")


def _configured_stream(config: Config) -> TextIO:
    """stdout, or `[log] file` opened; a file that cannot be opened is a ConfigError
    naming the key (serve refuses to start rather than log nowhere)."""
    if not config.log.file:
        return sys.stdout
    path = config.resolve(config.log.file)
    try:
        return open_log_file(path)
    except OSError as exc:
        problem = exc.strerror or str(exc)
        if exc.filename and exc.filename != str(path):  # a directory on the way to it
            problem = f"{problem}: {exc.filename}"
        raise ConfigError("log.file", f"cannot open {str(path)!r}: {problem}") from None


class GuardedStream:
    """The log's stream, made so that a full disk or a closed pipe never stops a call: a
    write or flush that fails drops its text, counts its lines and says so on stderr (at
    most every `REPORT_EVERY` seconds). The decisions are still stored (the store is the
    system of record, written apart)."""

    REPORT_EVERY = 10.0

    def __init__(
        self,
        stream: TextIO,
        report: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._report = report
        self._clock = clock
        self._reported_at: float | None = None
        self.lost_lines = 0

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._lost(text.count("\n"), exc)
            return 0

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self._lost(0, exc)

    def isatty(self) -> bool:
        return self._stream.isatty()

    def swap(self, stream: TextIO) -> TextIO:
        """Write to `stream` from now on; returns the previous one (for the caller to close)."""
        old, self._stream = self._stream, stream
        return old

    def _lost(self, lines: int, exc: OSError) -> None:
        self.lost_lines += lines
        now = self._clock()
        if self._reported_at is not None and now - self._reported_at < self.REPORT_EVERY:
            return
        self._reported_at = now
        report = self._report or sys.stderr
        with contextlib.suppress(OSError, ValueError):  # stderr gone too: nothing left to say
            report.write(
                f"sipguard: the log cannot be written ({exc.strerror or exc}); "
                f"{self.lost_lines} line(s) lost so far. Calls go on and their decisions "
                "are still stored.\n"
            )
            report.flush()


_guarded: GuardedStream | None = None


def log_lines_lost() -> int:
    """Lines the configured log could not write since start (for metrics)."""
    return 0 if _guarded is None else _guarded.lost_lines


def reopen_log_file(config: Config) -> bool:
    """Start writing `[log] file` anew, at its path (SIGHUP, after logrotate moved it away);
    False when the log goes to stdout or the file cannot be opened (the old one stays)."""
    if _guarded is None or not config.log.file:
        return False
    try:
        fresh = open_log_file(config.resolve(config.log.file))
    except OSError:
        return False
    old = _guarded.swap(fresh)
    with contextlib.suppress(OSError):
        old.close()
    return True


def configure_logging(config: Config, stream: TextIO | None = None) -> None:
    """structlog for `serve`: JSON or console lines to stdout or `[log] file` (a
    ConfigError naming log.file when it cannot be opened)."""
    if stream is None:
        stream = _configured_stream(config)
    global _direct, _guarded  # noqa: PLW0603 (structlog's configuration is process state too)
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
    # one writer (and lock) for every logger
    _guarded = GuardedStream(stream)
    writer = structlog.WriteLogger(_guarded)  # type: ignore[arg-type]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *args: writer,
        cache_logger_on_first_use=True,
    )
    # at any level: the level does not filter decision lines (see DecisionLog)
    _direct = _DirectWrite(processors, writer.msg) if json_lines else None
