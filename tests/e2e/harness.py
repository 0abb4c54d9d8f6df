"""End-to-end harness: free ports, a sipguard subprocess, SIPp runs and a Mosquitto broker.

Everything binds to 127.0.0.0/8 only. Every wait has a hard deadline: a stuck peer is killed
and reported, never waited on forever. The fixtures in tests/conftest.py wrap these:

    def test_x(start_gateway, sipp):
        uas = sipp("uas_basic.xml", "uas", args=["-m", "10"])           # trunk, bound on return
        gw = start_gateway([Trunk(uas.port, "udp")], overrides={"policy": {"mode": "monitor"}})
        uac = sipp("uac_basic.xml", "uac", remote=gw.address,
                   args=["-s", "+12125551234", "-m", "10", "-r", "10"])  # or -inf numbers.csv
        dialer, trunk = uac.wait(30), uas.wait(10)                       # SippResult
        assert dialer.successful == 10 and len(trunk.received("INVITE")) == 10
        gw.events()                                                      # JSON log lines

A scenario name is looked up in tests/sipp/; an absolute path (e.g. from scenario_variant or a
file written into tmp_path) is used as is. SIPp logs stay under tmp_path/sipp/<name>.*, the
gateway's config, store and logs under tmp_path/gatewayN/.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "tests" / "sipp"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
HOST = "127.0.0.1"


def scenario_variant(name: str, workdir: Path, replacements: dict[str, str]) -> str:
    """A copy of a scenario with text replaced (SIPp checks status codes at load, so a
    response code cannot come from -key). Returns the copy's path for `Sipp(scenario=...)`."""
    text = (SCENARIOS / name).read_text()
    for old, new in replacements.items():
        if old not in text:
            raise ValueError(f"{old!r} is not in {name}")
        text = text.replace(old, new)
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"variant-{len(list(workdir.glob('variant-*')))}-{name}"
    out.write_text(text)
    return str(out)


# --------------------------------------------------------------------------- ports

_handed_out: set[int] = set()


def free_port(host: str = HOST, span: int = 1) -> int:
    """A port P such that P .. P+span-1 are free on both UDP and TCP at `host`.

    The OS picks P (so parallel runs rarely collide); ports handed out before in this
    process are never handed out again.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            base = int(probe.getsockname()[1])
        ports = range(base, base + span)
        if base + span > 65535 or _handed_out.intersection(ports):
            continue
        if all(_bindable(host, p) for p in ports):
            _handed_out.update(ports)
            return base
    raise RuntimeError(f"no free UDP+TCP port span of {span} on {host}")


def _bindable(host: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


# --------------------------------------------------------------------------- SIP bits


@dataclass(frozen=True, slots=True)
class SipMessage:
    """One message from a SIPp `-trace_msg` log, headers parsed loosely for assertions."""

    direction: str  # "received" | "sent"
    transport: str  # "UDP" | "TCP"
    start_line: str
    headers: tuple[tuple[str, str], ...]
    body: str
    lost: bool = False  # dropped by SIPp's -lost right after it arrived

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        """The request method, or the CSeq method of a response."""
        if self.is_request:
            return self.start_line.split(" ", 1)[0]
        return self.header("CSeq").split()[-1]

    @property
    def status(self) -> int:
        return 0 if self.is_request else int(self.start_line.split()[1])

    @property
    def call_id(self) -> str:
        return self.header("Call-ID")

    def header(self, name: str) -> str:
        values = self.header_all(name)
        return values[0] if values else ""

    def header_all(self, name: str) -> list[str]:
        """Every value of a header; list headers (Via, Route, ...) split at their commas."""
        wanted = {name.lower(), _COMPACT.get(name.lower(), name.lower())}
        split = name.lower() in _LIST_HEADERS
        out: list[str] = []
        for hname, value in self.headers:
            if hname.lower() in wanted:
                out.extend(split_header_values(value) if split else [value])
        return out

    @property
    def vias(self) -> list[str]:
        return self.header_all("Via")


_COMPACT = {
    "via": "v", "call-id": "i", "from": "f", "to": "t", "contact": "m",
    "content-length": "l", "content-type": "c",
}


_LIST_HEADERS = {"via", "route", "record-route", "contact", "allow", "supported", "require"}


def split_header_values(value: str) -> list[str]:
    parts: list[str] = []
    depth, quoted = 0, False
    current: list[str] = []
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        if ch == "," and not quoted and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def parse_sip(text: str, direction: str = "received", transport: str = "UDP") -> SipMessage:
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return SipMessage(direction, transport, lines[0].strip(), tuple(headers), body)


# SIPp -trace_msg: each entry starts with a dashed separator and a timestamp; a simulated
# loss (-lost) appends "UDP message lost (recv)." to the entry it drops (or, for a send,
# "voluntary lost (while sending)." for a message never logged) just before the next separator.
# SIPp also dumps a message it did not expect again, after a bare dashed line, as
# "Unexpected UDP message received:": that entry repeats one already logged and is skipped.
_TRACE_SEP = re.compile(r"-{20,}(?: \d{4}-\d\d-\d\d [\d:.]+)?[ \t]*\n")
_TRACE_HEAD = re.compile(r"^(UDP|TCP) message (received|sent)\b.*?:\s*$")
_LOST_RECV = re.compile(r"\n?(UDP|TCP) message lost \(recv\)\.\s*$")
_LOST_SEND = re.compile(r"\n?(UDP|TCP) message voluntary lost \(while sending\)\.\s*$")


_START_LINE = re.compile(r"^(SIP/2\.0 \d{3}( |$)|[A-Za-z]+ \S+ SIP/2\.0$)")


def parse_message_log(path: Path) -> list[SipMessage]:
    """Parse a SIPp `-trace_msg` file into messages. A received message that SIPp then
    dropped to simulate loss is kept, with `lost=True` (it did arrive on the socket)."""
    if not path.exists():
        return []
    text = path.read_text(errors="replace")
    messages = []
    for raw_chunk in _TRACE_SEP.split(text):
        chunk = _LOST_SEND.sub("", raw_chunk.rstrip())
        lost = bool(_LOST_RECV.search(chunk))
        chunk = _LOST_RECV.sub("", chunk).strip("\n")
        if not chunk:
            continue
        first, _, rest = chunk.partition("\n")
        m = _TRACE_HEAD.match(first.strip())
        if not m:
            continue
        # TCP segments may carry several messages; split on start lines after a blank line.
        for raw in _split_stream(rest.strip("\n")):
            msg = parse_sip(raw, m.group(2), m.group(1))
            if _START_LINE.match(msg.start_line):  # SIPp interleaves socket diagnostics
                messages.append(replace(msg, lost=lost) if lost else msg)
    return messages



def _split_stream(text: str) -> Iterator[str]:
    """Split text that may hold several SIP messages, using Content-Length."""
    text = text.replace("\r\n", "\n")
    while text.strip():
        text = text.lstrip("\n")
        head, sep, rest = text.partition("\n\n")
        m = re.search(r"^(?:Content-Length|l)\s*:\s*(\d+)", head, re.IGNORECASE | re.MULTILINE)
        length = int(m.group(1)) if m else 0
        body = rest[:length]
        yield head + sep + body
        text = rest[length:]


def param(value: str, name: str) -> str | None:
    """A `;name=value` parameter of a header value (None when absent)."""
    for part in value.split(";")[1:]:
        key, _, val = part.partition("=")
        if key.strip().lower() == name.lower():
            return val.strip()
    return None


def via_sent_by(via: str) -> str:
    """'SIP/2.0/UDP 127.0.0.1:5060;branch=...' -> '127.0.0.1:5060'."""
    return via.split(";", 1)[0].split(None, 1)[1].strip()


def digest_params(header: str) -> dict[str, str]:
    """The parameters of a 'Digest k="v", k=v' credential."""
    _, _, rest = header.partition(" ")
    return {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in re.finditer(r'([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|([^,\s]+))', rest)
    }


def digest_ok(request: SipMessage, username: str, password: str) -> bool:
    """RFC 2617 / 3261 §22.4 MD5 digest (no qop) of `request`'s Proxy-Authorization."""
    creds = request.header("Proxy-Authorization")
    if not creds.startswith("Digest "):
        return False
    p = digest_params(creds)
    if p.get("username") != username:
        return False

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{username}:{p.get('realm', '')}:{password}")
    ha2 = md5(f"{request.method}:{p.get('uri', '')}")
    return p.get("response") == md5(f"{ha1}:{p.get('nonce', '')}:{ha2}")


def options_ping(host: str, port: int, timeout: float = 0.5, source: str = HOST) -> int | None:
    """Send OPTIONS over UDP to sipguard itself; the status code of the answer, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        lport = sock.getsockname()[1]
        tag = uuid.uuid4().hex[:10]
        call_id = f"{uuid.uuid4().hex}@{source}"
        msg = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:{lport};branch=z9hG4bK{tag};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:probe@{source}>;tag={tag}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: 1 OPTIONS\r\n"
            f"Accept: application/sdp\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()
        sock.settimeout(timeout)
        sock.sendto(msg, (host, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = sock.recvfrom(65535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            reply = parse_sip(data.decode(errors="replace"))
            if not reply.is_request and reply.call_id == call_id and reply.status >= 200:
                return reply.status
    return None


class UdpPeer:
    """A bare SIP endpoint on a UDP socket, for hand-made (and malformed) requests."""

    def __init__(self, host: str = HOST) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host = host
        self.port = int(self.sock.getsockname()[1])

    def __enter__(self) -> UdpPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, text: str, to: tuple[str, int]) -> None:
        """Send `text` with its line ends made CRLF (a trailing blank line ends the head)."""
        data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        self.sock.sendto(data, to)

    def recv(self, timeout: float) -> SipMessage | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, _ = self.sock.recvfrom(65535)
        except (TimeoutError, ConnectionRefusedError):
            return None
        return parse_sip(data.decode(errors="replace"))

    def collect(self, seconds: float) -> list[SipMessage]:
        """Everything that arrives within `seconds`."""
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            m = self.recv(left)
            if m is not None:
                out.append(m)
        return out

    def wait_final(self, timeout: float) -> tuple[SipMessage | None, list[SipMessage]]:
        """(the first final response, everything received up to it) within `timeout`."""
        seen: list[SipMessage] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            m = self.recv(left)
            if m is None:
                continue
            seen.append(m)
            if not m.is_request and m.status >= 200:
                return m, seen
        return None, seen

    def invite(self, gw: tuple[str, int], *, call_id: str, branch: str, user: str = "+12125551234",
               max_forwards: int | None = 70, extra: str = "", ruri: str = "") -> str:
        """A minimal initial INVITE to `user` at sipguard (or to `ruri`), sent to sipguard;
        returns its text (for the ACK)."""
        mf = f"Max-Forwards: {max_forwards}\n" if max_forwards is not None else ""
        text = (
            f"INVITE {ruri or f'sip:{user}@{gw[0]}:{gw[1]}'} SIP/2.0\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport\n"
            f"{mf}"
            f"From: <sip:+13125557000@{self.host}:{self.port}>;tag=raw{branch[-6:]}\n"
            f"To: <sip:{user}@{gw[0]}:{gw[1]}>\n"
            f"Call-ID: {call_id}\n"
            f"CSeq: 1 INVITE\n"
            f"Contact: <sip:dialer@{self.host}:{self.port}>\n"
            f"{extra}"
            f"Content-Length: 0\n\n"
        )
        self.send(text, gw)
        return text

    def ack_for(self, invite: str, final: SipMessage, gw: tuple[str, int]) -> None:
        """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3)."""
        req = parse_sip(invite)
        uri = req.start_line.split()[1]
        self.send(
            f"ACK {uri} SIP/2.0\n"
            f"Via: {req.vias[0]}\n"
            f"Max-Forwards: 70\n"
            f"From: {req.header('From')}\n"
            f"To: {final.header('To')}\n"
            f"Call-ID: {req.call_id}\n"
            f"CSeq: {req.header('CSeq').split()[0]} ACK\n"
            f"Content-Length: 0\n\n",
            gw,
        )


# --------------------------------------------------------------------------- processes


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 5.0) -> int:
    """Signal `proc`, wait `grace` seconds, then kill it. Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)
    return int(proc.returncode)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(config: dict[str, Any]) -> str:
    """A small TOML writer for the config shapes sipguard uses (tables, arrays of tables)."""
    lines: list[str] = []
    for section, body in config.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{section}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
                lines.append("")
            continue
        nested = {k: v for k, v in body.items() if isinstance(v, dict) and section == "campaigns"}
        plain = {k: v for k, v in body.items() if k not in nested}
        if plain:
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in plain.items())
            lines.append("")
        for name, sub in nested.items():
            lines.append(f"[{section}.{name}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in sub.items())
            lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Trunk:
    """A trunk for the gateway config: where a SIPp UAS (or nothing) listens."""

    port: int
    transport: str = "udp"
    priority: int = 1
    host: str = HOST
    # More [[trunks]] keys, e.g. (("request_uri", "trunk"),).
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port};transport={self.transport}"


class Gateway:
    """sipguard `serve` in a subprocess on a free UDP+TCP port, with a temp config and store."""

    def __init__(
        self,
        workdir: Path,
        trunks: Sequence[Trunk],
        *,
        allow: Sequence[str] = ("127.0.0.0/8",),
        sip: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = free_port()
        self.config_path = workdir / "sipguard.toml"
        self.stdout_path = workdir / "sipguard.stdout.log"
        self.stderr_path = workdir / "sipguard.stderr.log"
        sip_section: dict[str, Any] = {
            "listen": [f"udp:{HOST}:{self.port}", f"tcp:{HOST}:{self.port}"],
            "advertised_host": HOST,
            "record_route": True,
            "failover_timeout": 2.0,
        }
        sip_section.update(sip or {})
        self.config: dict[str, Any] = {
            "node": {"name": "e2e"},
            "sip": sip_section,
            "dialers": {"allow": list(allow)},
            "trunks": [{"uri": t.uri, "priority": t.priority, **dict(t.options)} for t in trunks],
            "store": {"path": str(workdir / "sipguard.db")},
            "log": {"format": "json", "pseudonymize": False, "level": "debug"},
        }
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(self.config.get(key), dict):
                self.config[key] = {**self.config[key], **value}
            else:
                self.config[key] = value
        self.env = {
            **os.environ,
            "SIPGUARD_PSEUDONYM_KEY": "e2e-test-key-0123456789abcdef",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.env.pop("SIPGUARD_CONFIG", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> Gateway:
        """Spawn sipguard and wait until it answers OPTIONS over UDP with 200."""
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> Gateway:
        """Write the config and start the process, without waiting for it."""
        self.config_path.write_text(to_toml(self.config))
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sipguard", "serve", "-c", str(self.config_path)],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 15.0) -> Gateway:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"sipguard exited with {self.proc.returncode} before answering OPTIONS:\n"
                    + self.output()[-4000:]
                )
            if options_ping(self.host, self.port, timeout=0.3) == 200:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"sipguard did not answer OPTIONS with 200 within {timeout}s:\n" + self.output()[-4000:]
        )

    def stop(self, grace: float = 5.0) -> int | None:
        if self.proc is not None and self.exit_code is None:
            self.exit_code = stop_process(self.proc, signal.SIGTERM, grace)
        return self.exit_code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self) -> None:
        """Fail with the exit code and the log tail if sipguard is no longer running."""
        if not self.alive():
            code = self.proc.returncode if self.proc is not None else None
            raise AssertionError(
                f"sipguard is not running (exit code {code}):\n{self.output()[-3000:]}"
            )

    def output(self) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def log_lines(self) -> list[str]:
        return self.output().splitlines()

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines (stdout and stderr) as dicts; other lines are skipped."""
        out = []
        for line in self.log_lines():
            if line.lstrip().startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def problems(self) -> list[str]:
        """Log lines at warning level or above, and any Python traceback; but the warning
        that the store holds no national list, which every gateway here whose test
        imported none rightly logs (the default campaign names "national")."""
        bad = []
        for line in self.log_lines():
            low = line.lower().replace('": "', '":"')
            if '"event":"dnc.list_missing"' in low and '"list":"national"' in low:
                continue
            if '"level":"warning"' in low or '"level":"error"' in low or "traceback" in low:
                bad.append(line)
        return bad


# --------------------------------------------------------------------------- SIPp


@dataclass
class SippResult:
    name: str
    returncode: int | None
    timed_out: bool
    stats: dict[str, str]
    messages: list[SipMessage]
    errors: str
    screen: str
    elapsed: float

    def stat(self, name: str) -> int:
        """A cumulative counter from -trace_stat, e.g. 'SuccessfulCall', 'FailedCall'."""
        value = self.stats.get(f"{name}(C)", self.stats.get(name, "0"))
        try:
            return int(float(value))
        except ValueError:
            return 0

    @property
    def successful(self) -> int:
        return self.stat("SuccessfulCall")

    @property
    def failed(self) -> int:
        return self.stat("FailedCall")

    @property
    def created(self) -> int:
        return self.stat("TotalCallCreated")

    def received(
        self, method: str | None = None, status: int | None = None, *, lost: bool = False
    ) -> list[SipMessage]:
        """Messages that arrived (and, unless `lost`, were not dropped by -lost)."""
        return _select(
            (m for m in self.messages if lost or not m.lost), "received", method, status
        )

    def sent(self, method: str | None = None, status: int | None = None) -> list[SipMessage]:
        return _select(self.messages, "sent", method, status)

    def summary(self) -> str:
        keys = ("TotalCallCreated", "SuccessfulCall", "FailedCall", "Retransmissions",
                "FailedUnexpectedMessage", "FailedMaxUDPRetrans", "FailedTimeoutOnRecv",
                "DeadCallMsgs", "OutOfCallMsgs")
        counts = ", ".join(f"{k}={self.stat(k)}" for k in keys)
        running = self.stat("CurrentCall")
        note = ""
        if running and not self.timed_out:
            note = (f"\nSIPp ended with {running} call(s) still running before its deadline: "
                    "a signal from outside (a name-based kill on this machine?) or a SIPp quirk")
        return (f"{self.name}: rc={self.returncode} timed_out={self.timed_out} {counts}{note}\n"
                f"errors:\n{self.errors[-3000:]}")


def _select(
    messages: Iterable[SipMessage], direction: str, method: str | None, status: int | None
) -> list[SipMessage]:
    out = []
    for m in messages:
        if m.direction != direction:
            continue
        if method is not None and m.method != method:
            continue
        if status is not None and m.status != status:
            continue
        if status is None and method is not None and not m.is_request:
            continue
        out.append(m)
    return out


@dataclass
class Sipp:
    """One SIPp process. `start()` then `wait()` (a UAC) or `stop()` (a UAS)."""

    scenario: str
    workdir: Path
    name: str
    remote: str | None = None
    transport: str = "u1"
    local_ip: str = HOST
    port: int = 0
    args: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    _paths: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port(self.local_ip)
        base = self.workdir / self.name
        self._paths = {k: Path(f"{base}.{k}") for k in ("msg", "stat", "err", "screen")}

    @property
    def scenario_path(self) -> Path:
        path = Path(self.scenario)
        return path if path.is_absolute() else SCENARIOS / path

    def command(self) -> list[str]:
        media = free_port(self.local_ip, span=4)
        cmd = [SIPP]
        if self.remote:
            cmd.append(self.remote)
        cmd += [
            "-sf", str(self.scenario_path),
            "-i", self.local_ip, "-p", str(self.port), "-mi", self.local_ip, "-mp", str(media),
            "-t", self.transport, "-nostdin",
            "-trace_msg", "-message_file", str(self._paths["msg"]),
            "-trace_stat", "-stf", str(self._paths["stat"]), "-fd", "1",
            "-trace_err", "-error_file", str(self._paths["err"]),
        ]
        if self.transport in ("tn", "un"):
            cmd += ["-max_socket", "2000"]  # SIPp's default (50000) exceeds common ulimits
        cmd += self.args
        return cmd

    def start(self) -> Sipp:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self._paths["screen"].open("wb") as screen:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=screen,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started = time.monotonic()
        return self

    def wait_listening(self, timeout: float = 5.0) -> Sipp:
        """Wait until SIPp has bound its port (a UAS must be ready before calls start)."""
        kind = socket.SOCK_STREAM if self.transport.startswith("t") else socket.SOCK_DGRAM
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sipp {self.name} exited early:\n{self.screen()[-3000:]}")
            with socket.socket(socket.AF_INET, kind) as probe:
                try:
                    probe.bind((self.local_ip, self.port))
                except OSError:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"sipp {self.name} did not bind {self.local_ip}:{self.port}")

    def wait(self, timeout: float) -> SippResult:
        """Wait up to `timeout` more seconds for a natural exit (a hard deadline: past it, SIPp
        is asked to quit, then killed, and the result says `timed_out`)."""
        assert self.proc is not None
        timed_out = False
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_process(self.proc, signal.SIGUSR1, grace=2.0)
        return self._result(timed_out)

    def stop(self, grace: float = 3.0) -> SippResult:
        """Ask SIPp to quit (SIGUSR1: no new calls, dump stats, exit), else kill it."""
        assert self.proc is not None
        if self.proc.poll() is None:
            stop_process(self.proc, signal.SIGUSR1, grace)
        return self._result(False)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, signal.SIGKILL, 2.0)

    def screen(self) -> str:
        path = self._paths["screen"]
        return path.read_text(errors="replace") if path.exists() else ""

    def _result(self, timed_out: bool) -> SippResult:
        assert self.proc is not None
        err = self._paths["err"]
        errors = err.read_text(errors="replace") if err.exists() else ""
        return SippResult(
            name=self.name,
            returncode=self.proc.returncode,
            timed_out=timed_out,
            stats=_last_stat_row(self._paths["stat"]),
            messages=parse_message_log(self._paths["msg"]),
            errors=errors,
            screen=self.screen(),
            elapsed=time.monotonic() - self.started,
        )


def _last_stat_row(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open(newline="", errors="replace") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


# --------------------------------------------------------------------------- Mosquitto


class Mosquitto:
    """A private Mosquitto broker on a free 127.0.0.1 port, no persistence; anonymous
    unless `users` (name -> password) are given. With `tls=(certificate, key)` (PEM files)
    it speaks MQTT over TLS only, and with `client_ca` too it requires a client
    certificate signed by that CA."""

    def __init__(self, workdir: Path, tls: tuple[Path, Path] | None = None, *,
                 client_ca: Path | None = None, users: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.tls = tls
        self.client_ca = client_ca
        self.users = users
        self._outside: tempfile.TemporaryDirectory[str] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = free_port()
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def start(self, timeout: float = 5.0) -> Mosquitto:
        tls = "" if self.tls is None else f"certfile {self.tls[0]}\nkeyfile {self.tls[1]}\n"
        if self.client_ca is not None:
            tls += f"cafile {self.client_ca}\nrequire_certificate true\n"
        access = "allow_anonymous true\n"
        if self.users is not None:
            # Not under a pytest tmp_path (0700): mosquitto started as root reads the file
            # as the `mosquitto` user.
            self._outside = tempfile.TemporaryDirectory(prefix="sipguard-mosquitto-")
            Path(self._outside.name).chmod(0o755)
            passwords = Path(self._outside.name) / "passwords"
            passwords.touch(mode=0o644)
            for name, password in self.users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwords), name, password],
                               check=True, capture_output=True, timeout=30)
            passwords.chmod(0o644)
            access = f"allow_anonymous false\npassword_file {passwords}\n"
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n{tls}"
            f"{access}"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(
                (self.host, self.port), timeout=0.2
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 3.0)
        if self._outside is not None:
            self._outside.cleanup()
            self._outside = None
