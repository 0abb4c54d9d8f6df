"""The decision event (CONTRACT §6) and pseudonymisation (sipguard.log)."""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import stat
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from sipguard.app import decision_sinks
from sipguard.config import Config, LogConfig, StoreConfig
from sipguard.errors import ConfigError
from sipguard.log import (
    DECISION_FIELDS,
    PSEUDONYM_ENV,
    DecisionLog,
    GuardedStream,
    Pseudonymizer,
    configure_logging,
    decision_event,
    decision_log,
    key_file_path,
    load_pseudonym_key,
)
from sipguard.policy.facts import MemoryFacts
from sipguard.policy.gate import Gate
from sipguard.policy.model import (
    Action,
    Decision,
    DecisionRecord,
    ListKind,
    Membership,
    Reason,
    Step,
)
from sipguard.sip.message import Request
from sipguard.sip.parser import parse_message
from sipguard.sip.peer import Peer
from sipguard.store.db import Store
from sipguard.store.writer import RecordWriter

CALLEE, CALLER = "+14155552671", "+12125550100"
KEY = {PSEUDONYM_ENV: "test-key-0123456789"}


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def config(tmp_path: Path, **log: object) -> Config:
    return Config(
        store=StoreConfig(path=str(tmp_path / "var" / "sipguard.db")),
        log=replace(LogConfig(), **log),  # type: ignore[arg-type]
        base_dir=str(tmp_path),
    )


def invite() -> Request:
    message = parse_message(
        b"INVITE sip:4155552671@gw SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.1.0.5;branch=z9hG4bK1\r\n"
        b"To: <sip:4155552671@gw>\r\n"
        b"From: <sip:+12125550100@10.1.0.5>;tag=x\r\n"
        b"Call-ID: log-1@10.1.0.5\r\nCSeq: 1 INVITE\r\nX-Campaign: spring\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(message, Request)
    return message


def decide_one(cfg: Config, emit: DecisionLog) -> DecisionRecord:
    records: list[DecisionRecord] = []

    def both(record: DecisionRecord) -> None:
        records.append(record)
        emit(record)

    member = Membership("national", ListKind.NATIONAL, None, None, None)
    gate = Gate(cfg, MemoryFacts([(CALLEE, member)]), both, lambda: 1_780_000_000.25)
    gate(invite(), Peer("udp", "10.1.0.5", 5060), 1.0)
    return records[0]


def test_decision_event_is_exactly_the_contract(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with capture_logs() as logs:
        record = decide_one(cfg, decision_log(cfg, KEY))
    (event,) = [e for e in logs if e["event"] == "call.decision"]
    assert set(event) == set(DECISION_FIELDS) | {"log_level"}
    pseudo = Pseudonymizer(KEY[PSEUDONYM_ENV].encode())
    assert event == {
        "ts": "2026-05-28T20:26:40.250000Z",
        "event": "call.decision",
        "node": "gw1",
        "decision": "block",
        "reason": "dnc-national",
        "rule": "national-state-dnc",
        "decision_id": record.decision_id,
        "call_id": "log-1@10.1.0.5",
        "campaign": "spring",
        "callee": pseudo(CALLEE),
        "caller": pseudo(CALLER),
        "latency_us": record.latency_us,
        "log_level": "info",
    }
    assert list(decision_event(record)) == list(DECISION_FIELDS)


def test_clear_numbers_when_pseudonymize_is_off(tmp_path: Path) -> None:
    cfg = config(tmp_path, pseudonymize=False)
    with capture_logs() as logs:
        decide_one(cfg, decision_log(cfg, {}))
    assert (logs[0]["callee"], logs[0]["caller"]) == (CALLEE, CALLER)
    assert not key_file_path(cfg).exists()


def test_json_line_holds_no_raw_number(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    out = io.StringIO()
    configure_logging(cfg, stream=out)
    decide_one(cfg, decision_log(cfg, KEY))
    (line,) = out.getvalue().splitlines()
    for form in (CALLEE, CALLEE[2:], CALLER, CALLER[2:], "415", "5552671"):
        assert form not in line
    data = json.loads(line)
    assert list(data) == list(DECISION_FIELDS)  # §6 order, no extra keys
    assert data["ts"].endswith("Z")


def test_log_file_output_and_console(tmp_path: Path) -> None:
    cfg = config(tmp_path, file="logs/decisions.jsonl")
    configure_logging(cfg)
    decide_one(cfg, decision_log(cfg, KEY))
    path = tmp_path / "logs" / "decisions.jsonl"
    assert json.loads(path.read_text().splitlines()[-1])["event"] == "call.decision"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = io.StringIO()
    configure_logging(config(tmp_path, format="console"), stream=out)
    structlog.get_logger().warning("something.odd", detail=1)
    assert "something.odd" in out.getvalue()


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize("level", ["warning", "error"])
def test_decision_lines_are_written_whatever_the_level(
    tmp_path: Path, fmt: str, level: str
) -> None:
    """CONTRACT §6: one line per decision. `level` filters the operational lines only."""
    cfg = config(tmp_path, file="logs/sipguard.log", format=fmt, level=level,
                 pseudonymize=False)
    configure_logging(cfg)
    structlog.get_logger().info("sipguard.ready")
    record = decide_one(cfg, decision_log(cfg, {}))
    structlog.get_logger().error("store.gone")
    lines = (tmp_path / "logs" / "sipguard.log").read_text().splitlines()
    assert len(lines) == 2, lines
    decision, error = lines
    assert "call.decision" in decision and record.decision_id in decision
    assert "store.gone" in error
    if fmt == "json":
        assert json.loads(decision)["decision_id"] == record.decision_id


def test_a_log_file_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("a file, not a directory\n")
    cfg = config(tmp_path, file="plain/sipguard.log")
    with pytest.raises(ConfigError) as refused:
        configure_logging(cfg)
    assert refused.value.key == "log.file"
    assert str(refused.value) == (
        f"log.file: cannot open {str(tmp_path / 'plain' / 'sipguard.log')!r}: "
        f"Not a directory: {tmp_path / 'plain'}"
    )


def test_other_events_carry_level_and_ts(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging(config(tmp_path), stream=out)
    structlog.get_logger().info("serve.started", listen=["udp:0.0.0.0:5060"])
    structlog.get_logger().debug("hidden")
    (line,) = out.getvalue().splitlines()
    data = json.loads(line)
    assert list(data)[:2] == ["ts", "event"]
    assert data["level"] == "info"


def test_generated_key_file_is_0600_and_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path)
    with capture_logs() as logs:
        first = load_pseudonym_key(cfg, {})
    path = tmp_path / "var" / "sipguard.db.pseudonym-key"
    assert key_file_path(cfg) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {e["event"] for e in logs} == {"pseudonym_key.not_set", "pseudonym_key.generated"}
    assert all(e["log_level"] == "warning" for e in logs)
    assert PSEUDONYM_ENV in capsys.readouterr().err
    assert len(first) == 64
    with capture_logs() as logs:
        assert load_pseudonym_key(cfg, {}) == first  # reused, still warned about
    assert [e["event"] for e in logs] == ["pseudonym_key.not_set"]


def test_key_file_with_loose_mode_is_tightened(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    path = key_file_path(cfg)
    path.parent.mkdir(parents=True)
    path.write_text("abc\n")
    path.chmod(0o644)
    with capture_logs() as logs:
        assert load_pseudonym_key(cfg, {}) == b"abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "pseudonym_key.mode_fixed" in [e["event"] for e in logs]


def test_environment_key_wins_and_writes_no_file(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with capture_logs() as logs:
        assert load_pseudonym_key(cfg, KEY) == KEY[PSEUDONYM_ENV].encode()
    assert logs == []
    assert not key_file_path(cfg).exists()


def test_pseudonyms_are_stable_per_key() -> None:
    a, b = Pseudonymizer(b"k1"), Pseudonymizer(b"k1")
    assert a(CALLEE) == b(CALLEE)
    assert a(CALLEE) != a(CALLER)
    assert a(CALLEE) != Pseudonymizer(b"k2")(CALLEE)
    assert len(a(CALLEE)) == 32 and CALLEE[1:] not in a(CALLEE)
    with pytest.raises(ValueError, match="empty"):
        Pseudonymizer(b"")


def test_file_key_and_same_env_key_give_the_same_pseudonyms(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    from_file = decision_log(cfg, {})
    text = key_file_path(cfg).read_text().strip()
    from_env = decision_log(cfg, {PSEUDONYM_ENV: text})
    assert from_file.pseudonymize is not None and from_env.pseudonymize is not None
    assert from_file.pseudonymize(CALLEE) == from_env.pseudonymize(CALLEE)


def test_invalid_callee_is_pseudonymised_too() -> None:
    record = DecisionRecord(
        "gw1-1", datetime(2026, 1, 1, tzinfo=UTC), "gw1", "c", "default", None, "555-12", None,
        "cli", Decision(Action.BLOCK, Reason.INVALID_NUMBER, "valid-number", ()), 3,
    )
    event = decision_event(record, Pseudonymizer(b"k"))
    assert event["callee"] == Pseudonymizer(b"k")("555-12")
    assert event["caller"] is None


def test_pseudonyms_are_hmac_sha256_for_any_key_length() -> None:
    for key in (b"k", b"x" * 64, b"long" * 40):
        expected = hmac.digest(key, CALLEE.encode(), "sha256").hex()[:32]
        assert Pseudonymizer(key)(CALLEE) == expected


def records_of_every_shape() -> list[DecisionRecord]:
    """Allowed, blocked with a calling-window opening, an invalid number, no caller, and
    text that JSON escapes."""
    ts = datetime(2026, 5, 28, 20, 26, 40, 250000, tzinfo=UTC)
    allow = Decision(Action.ALLOW, Reason.NO_RESTRICTION, "default", (Step("default", "allow"),))
    window = Decision(Action.BLOCK, Reason.OUTSIDE_CALLING_WINDOW, "calling-window", (),
                      opens_at=ts + timedelta(hours=12))
    invalid = Decision(Action.FLAG, Reason.INVALID_NUMBER, "valid-number", ())
    return [
        DecisionRecord("gw1-1", ts, "gw1", "a@b", "spring", CALLEE, CALLEE[2:], CALLER,
                       "udp:10.1.0.5:5060", allow, 17),
        DecisionRecord("gw1-2", ts.replace(microsecond=0), "gw1", "c", "default", CALLEE,
                       CALLEE, None, "cli", window, 0),
        DecisionRecord("gw1-3", ts, 'gw"1', 'q"\\u\x01é€', "camp\tañ", None, "555-12",
                       None, "udp:10.1.0.5:5060", invalid, 123456),
    ]


@pytest.mark.parametrize("pseudonymize", [True, False])
def test_json_lines_are_what_structlog_renders(tmp_path: Path, pseudonymize: bool) -> None:
    cfg = config(tmp_path, pseudonymize=pseudonymize)
    records = records_of_every_shape()
    expected, out = io.StringIO(), io.StringIO()
    configure_logging(cfg, stream=expected)
    logger = structlog.get_logger()
    decisions = decision_log(cfg, KEY)
    for record in records:  # the bound logger's way, as for any other event
        event = decision_event(record, decisions.pseudonymize)
        logger.info(event.pop("event"), **event)
    configure_logging(cfg, stream=out)
    decisions = decision_log(cfg, KEY)
    decisions(records[0])
    decisions.write(records[1:])
    assert out.getvalue() == expected.getvalue()
    assert len(out.getvalue().splitlines()) == len(records)


def test_decisions_written_together_reach_capture_logs_one_by_one(tmp_path: Path) -> None:
    cfg = config(tmp_path, pseudonymize=False)
    records = records_of_every_shape()
    with capture_logs() as logs:
        decision_log(cfg, {}).write(records)
    assert [e["decision_id"] for e in logs] == [r.decision_id for r in records]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
async def test_a_log_that_cannot_be_written_loses_no_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The decision log's disk is full: every decision is still stored, serving goes on,
    and stderr says so once (not once per line)."""
    cfg = config(tmp_path, file="/dev/full")
    configure_logging(cfg)
    store = await Store.open(tmp_path / "var" / "sipguard.db")
    try:
        writer = RecordWriter(store)
        emit = decision_sinks(decision_log(cfg), writer, asyncio.get_running_loop())
        for i in range(3):
            record = replace(decide_one(cfg, DecisionLog(None)), decision_id=f"gw-{i}")
            emit(record)
            await asyncio.sleep(0)  # each decision drained in a turn of its own
        structlog.get_logger().warning("something.odd")  # any other event: no raise either
        assert await writer.flush() == 3
        rows = await store.fetchall("SELECT decision_id FROM decisions ORDER BY decision_id")
        assert [r[0] for r in rows] == ["gw-0", "gw-1", "gw-2"]
    finally:
        await store.close()
    err = capsys.readouterr().err
    assert err.count("the log cannot be written (No space left on device)") == 1, err


def test_guarded_stream_counts_lost_lines_and_reports_at_most_every_ten_seconds() -> None:
    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    clock = iter([0.0, 5.0, 10.0])
    report = io.StringIO()
    stream = GuardedStream(Full(), report, clock=lambda: next(clock))
    for text in ("a\n", "b\nc\n", "d\n"):
        assert stream.write(text) == 0
    assert stream.lost_lines == 4
    assert report.getvalue().splitlines() == [
        "sipguard: the log cannot be written (No space left on device); 1 line(s) lost so "
        "far. Calls go on and their decisions are still stored.",
        "sipguard: the log cannot be written (No space left on device); 4 line(s) lost so "
        "far. Calls go on and their decisions are still stored.",
    ]
