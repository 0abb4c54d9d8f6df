"""sipguard benchmark driver: direct, Kamailio and sipguard paths in one run (issue 4).

Run through `make bench` / `bench/run.sh`; `--quick` for a smoke run. See bench/README.md.
Only 127.0.0.1 traffic; every SIPp run is bounded in calls and in wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = ROOT / ".venv" / "bin"
KAM_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def children_of(root: int) -> list[int]:
    """root and all its descendants (from /proc/*/stat)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def memory_mb(pids: Sequence[int]) -> tuple[float, float]:
    """(sum of VmRSS, sum of Pss) in MB over pids. PSS splits shared pages fairly."""
    rss = pss = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss / 1024, pss / 1024


def system_cpu() -> tuple[int, int, int]:
    """(total jiffies, idle+iowait, steal) from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(parts[:8]), parts[3] + parts[4], parts[7]


class Proc:
    """A child process in its own session, stopped by signalling its group."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self.fh = log_path.open("wb")
        self.popen = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=self.fh, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd=cwd,
        )
        self.pid = self.popen.pid
        self.cpu_s = 0.0  # user+sys of the process once reaped

    def alive(self) -> bool:
        if self.popen.returncode is not None:
            return False
        self.wait(0)
        return self.popen.returncode is None

    def wait(self, timeout: float) -> int | None:
        """Reap with wait4 so that the child's CPU time is known."""
        end = time.monotonic() + max(0.0, timeout)
        while self.popen.returncode is None:
            try:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.popen.returncode = self.popen.poll()
                break
            if pid:
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                self.cpu_s = usage.ru_utime + usage.ru_stime
                break
            if time.monotonic() >= end:
                return None
            time.sleep(0.02)
        return self.popen.returncode

    def send(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float = 5.0, sig: int = signal.SIGTERM) -> int:
        if self.alive():
            self.send(sig)
            if self.wait(grace) is None:
                self.send(signal.SIGKILL)
                self.wait(5)
        # leftovers of the group (workers) die with the leader's group
        self.send(signal.SIGKILL)
        self.fh.close()
        return self.popen.returncode if self.popen.returncode is not None else -9


def run_cmd(argv: Sequence[str], timeout: float = 60, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=False, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- SIP probe


def probe_decline(port: int, number: str, timeout: float, proc: Proc) -> float | None:
    """Send an INVITE for a listed number until a 603 comes back; monotonic time or None."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while time.monotonic() < deadline and proc.alive():
        attempt += 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            lport = s.getsockname()[1]
            s.connect((HOST, port))
            s.settimeout(0.25)
            branch = f"z9hG4bK-probe-{os.getpid()}-{attempt}"
            call_id = f"probe-{os.getpid()}-{attempt}@{HOST}"
            via = f"SIP/2.0/UDP {HOST}:{lport};branch={branch}"
            invite = (
                f"INVITE sip:{number}@{HOST}:{port} SIP/2.0\r\nVia: {via}\r\n"
                f"From: <sip:probe@{HOST}:{lport}>;tag=p{attempt}\r\n"
                f"To: <sip:{number}@{HOST}:{port}>\r\nCall-ID: {call_id}\r\n"
                f"CSeq: 1 INVITE\r\nContact: <sip:probe@{HOST}:{lport}>\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            try:
                s.send(invite.encode())
                end = time.monotonic() + 0.5
                while time.monotonic() < end:
                    data = s.recv(65535)
                    code = int(data[8:11]) if data.startswith(b"SIP/2.0 ") else 0
                    if code >= 200:
                        to = re.search(rb"\r\n(?:To|t):([^\r\n]*)", data, re.I)
                        ack = (
                            f"ACK sip:{number}@{HOST}:{port} SIP/2.0\r\nVia: {via}\r\n"
                            f"From: <sip:probe@{HOST}:{lport}>;tag=p{attempt}\r\n"
                            f"To:{to.group(1).decode() if to else ''}\r\nCall-ID: {call_id}\r\n"
                            "CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                        )
                        s.send(ack.encode())
                        if code == 603:
                            return time.monotonic()
                        break
            except (TimeoutError, ConnectionRefusedError, OSError):
                pass
        time.sleep(0.1)
    return None


# --------------------------------------------------------------------------- SIPp


@dataclass
class StepResult:
    rate: int
    calls: int
    seconds: float
    passed: bool = False
    success: int = 0
    failed: int = 0
    declined: int = 0
    answered: int = 0
    expected_declined: int = 0
    invite_retrans: int = 0
    retrans: int = 0
    uas_failed: int = 0
    elapsed: float = 0.0
    proxy_cpu_s: float = 0.0
    sipp_cpu_s: float = 0.0
    others_cores: float = 0.0
    rc: int | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    note: str = ""
    capture: Path | None = None

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{self.rate}/s x {self.calls}: {verdict} ok={self.success}"
                f" failed={self.failed} 603={self.declined}/{self.expected_declined}"
                f" 200={self.answered} inv-retrans={self.invite_retrans} uas-failed="
                f"{self.uas_failed} rc={self.rc} {self.elapsed:.1f}s"
                f" proxy-cpu={self.proxy_cpu_s:.2f}s"
                f" sipp-cpu={self.sipp_cpu_s:.2f}s other-procs={self.others_cores:.2f} cores"
                f" {self.note}")


def last_csv_row(path: Path) -> dict[str, str]:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))


def as_int(row: dict[str, str], key: str) -> int:
    try:
        return int(row.get(key, "0") or 0)
    except ValueError:
        return 0


def hms_seconds(text: str) -> float:
    parts = text.split(":")  # HH:MM:SS:uuuuuu or HH:MM:SS
    try:
        h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
        frac = int(parts[3]) / 1e6 if len(parts) > 3 else 0.0
    except (ValueError, IndexError):
        return 0.0
    return h * 3600 + m * 60 + s + frac


@dataclass
class Env:
    out: Path
    call_lines: list[str]  # "number;listed" lines of calls.csv
    ports: dict[str, int]
    sipp_buf: int
    cursor: int = 0  # next unused line: no number is dialled twice in a run (frequency caps)
    wrapped: bool = False
    decision_log: Path | None = None

    def take(self, calls: int, path: Path) -> int:
        """Write the next `calls` numbers as a SIPp -inf file; return how many are listed."""
        n = len(self.call_lines)
        picked: list[str] = []
        while len(picked) < calls:
            if self.cursor >= n:
                self.cursor, self.wrapped = 0, True
            chunk = self.call_lines[self.cursor : self.cursor + calls - len(picked)]
            picked.extend(chunk)
            self.cursor += len(chunk)
        path.write_text("SEQUENTIAL\n" + "\n".join(picked) + "\n")
        return sum(1 for line in picked if line.endswith(";1"))


def reasons_since(log_path: Path | None, offset: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    if log_path is None or not log_path.exists():
        return counts
    with log_path.open("rb") as fh:
        fh.seek(offset)
        for m in re.finditer(rb'"reason": ?"([^"]*)"', fh.read()):
            key = m.group(1).decode()
            counts[key] = counts.get(key, 0) + 1
    return counts


def sipp_step(  # noqa: PLR0912, PLR0915 (one linear recipe; splitting it hides the order)
    env: Env, target_port: int, rate: int, seconds: float, tag: str,
    proxy_pids: Sequence[int], blocks: bool, capture: bool = False,
) -> StepResult:
    calls = max(1, int(rate * seconds))
    res = StepResult(rate=rate, calls=calls, seconds=seconds)
    d = env.out / "sipp" / tag
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    listed = env.take(calls, d / "calls.csv")
    res.expected_declined = listed if blocks else 0
    log_offset = env.decision_log.stat().st_size if env.decision_log and \
        env.decision_log.exists() else 0
    uas = Proc("uas", [
        "sipp", "-sf", str(BENCH / "uas.xml"), "-i", HOST, "-p", str(env.ports["uas"]),
        "-nostdin", "-buff_size", str(env.sipp_buf), "-trace_stat", "-stf", str(d / "uas.csv"),
        "-fd", "1",
    ], d / "uas.out", cwd=d)
    tcpdump: Proc | None = None
    if capture:
        res.capture = d / "dialer.pcap"
        tcpdump = Proc("tcpdump", [
            "tcpdump", "-i", "lo", "-nn", "-s", "1600", "-B", "65536", "-U",
            "--time-stamp-precision=nano", "-w", str(res.capture),
            f"udp port {env.ports['uac']}",
        ], d / "tcpdump.out")
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end and b"listening" not in d.joinpath(
                "tcpdump.out").read_bytes():
            time.sleep(0.05)
    time.sleep(0.3)
    cpu0 = cpu_seconds(proxy_pids)
    sys0 = system_cpu()
    t0 = time.monotonic()
    uac = Proc("uac", [
        "sipp", f"{HOST}:{target_port}", "-sf", str(BENCH / "uac.xml"),
        "-inf", str(d / "calls.csv"),
        "-i", HOST, "-p", str(env.ports["uac"]), "-r", str(rate), "-rp", "1000",
        "-m", str(calls), "-l", str(max(100, rate * 5)), "-recv_timeout", "8000",
        "-nostdin", "-buff_size", str(env.sipp_buf), "-trace_stat", "-stf", str(d / "uac.csv"),
        "-fd", "1", "-trace_counts",
    ], d / "uac.out", cwd=d)
    deadline = seconds * 1.5 + (8 if seconds < 5 else 15)
    rc = uac.wait(deadline)
    res.elapsed = time.monotonic() - t0
    res.proxy_cpu_s = cpu_seconds(proxy_pids) - cpu0
    sys1 = system_cpu()
    if rc is None:
        res.note += f"killed after {deadline:.0f}s deadline (stuck calls); "
        uac.stop(grace=2, sig=signal.SIGUSR1)
        rc = -9
    else:
        uac.stop()
    uas.send(signal.SIGUSR1)  # SIPp: finish the calls in progress, then quit
    uas.wait(4)
    uas.stop(grace=1)
    if tcpdump is not None:
        time.sleep(0.2)
        tcpdump.stop(grace=3, sig=signal.SIGINT)
    res.rc = rc
    res.sipp_cpu_s = uac.cpu_s + uas.cpu_s
    busy = ((sys1[0] - sys0[0]) - (sys1[1] - sys0[1])) / CLK_TCK
    res.others_cores = max(0.0, busy - res.proxy_cpu_s - res.sipp_cpu_s) / max(res.elapsed, 0.1)
    row = last_csv_row(d / "uac.csv")
    res.success = as_int(row, "SuccessfulCall(C)")
    res.failed = as_int(row, "FailedCall(C)")
    res.retrans = as_int(row, "Retransmissions(C)")
    res.uas_failed = as_int(last_csv_row(d / "uas.csv"), "FailedCall(C)")
    counts = sorted(d.glob("uac_*_counts.csv"))
    if counts:
        crow = last_csv_row(counts[-1])
        res.invite_retrans = as_int(crow, "0_INVITE_Retrans")
        for key in crow:
            if key.endswith("_603_Recv"):
                res.declined = as_int(crow, key)
        ok200 = sorted((int(k.split("_")[0]), k) for k in crow if k.endswith("_200_Recv"))
        if ok200:
            res.answered = as_int(crow, ok200[0][1])
    if not row:
        res.note += f"no SIPp statistics (rc={rc}); "
    if env.decision_log is not None:
        time.sleep(0.3)  # the decision log is written off the hot path
        res.reasons = reasons_since(env.decision_log, log_offset)
        if res.reasons:
            res.note += "decisions " + ", ".join(f"{k}={v}" for k, v in
                                                 sorted(res.reasons.items())) + "; "
    res.passed = (
        rc == 0 and res.failed == 0 and res.success == calls
        and res.declined == res.expected_declined and res.elapsed <= seconds * 1.3 + 3
    )
    if rc == 0 and res.declined != res.expected_declined:
        res.note += "wrong outcomes (603 count differs from the list); "
    if rc == 0 and res.elapsed > seconds * 1.3 + 3:
        res.note += "fell behind the offered rate; "
    log(f"  {tag}: {res.summary()}")
    return res


# --------------------------------------------------------------------------- pcap


def pcap_packets(path: Path) -> Iterator[tuple[float, bytes]]:
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<",
              b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
    if endian is None:
        raise ValueError(f"{path}: not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_len = {1: 14, 113: 16, 276: 20, 0: 4}.get(linktype)
    if link_len is None:
        raise ValueError(f"{path}: unsupported link type {linktype}")
    rec = struct.Struct(endian + "IIII")
    pos = 24
    div = 1e9 if nano else 1e6
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, pos)
        pos += 16
        frame = data[pos : pos + incl]
        pos += incl
        ip = frame[link_len:]
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        yield sec + frac / div, ip[ihl + 8 :]


HDR = re.compile(rb"\r\n(call-id|i|cseq):[ \t]*([^\r\n]*)", re.I)


@dataclass
class Latency:
    by_code: dict[int, list[float]] = field(default_factory=dict)
    unmatched: int = 0

    def values(self, code: int | None = None) -> list[float]:
        if code is None:
            return [v for vs in self.by_code.values() for v in vs]
        return self.by_code.get(code, [])


def latencies(path: Path) -> Latency:
    invites: dict[tuple[bytes, bytes], float] = {}
    finals: dict[tuple[bytes, bytes], tuple[float, int]] = {}
    for ts, payload in pcap_packets(path):
        call_id = cseq = b""
        for name, value in HDR.findall(payload[:1500]):
            if name.lower() in (b"call-id", b"i"):
                call_id = value.strip()
            else:
                cseq = value.strip()
        if not call_id or not cseq.endswith(b"INVITE"):
            continue
        key = (call_id, cseq.split()[0])
        if payload.startswith(b"INVITE "):
            invites.setdefault(key, ts)
        elif payload.startswith(b"SIP/2.0 "):
            code = int(payload[8:11])
            if code >= 200 and key not in finals:
                finals[key] = (ts, code)
    lat = Latency()
    for key, t_inv in invites.items():
        if key not in finals:
            lat.unmatched += 1
            continue
        t_fin, code = finals[key]
        lat.by_code.setdefault(code, []).append((t_fin - t_inv) * 1000.0)
    return lat


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


# --------------------------------------------------------------------------- the paths


@dataclass
class PathResult:
    name: str
    ok: bool = True
    error: str = ""
    load_s: float | None = None
    rss_mb: float | None = None
    pss_mb: float | None = None
    pss_after_mb: float | None = None
    extra: dict[str, float | str] = field(default_factory=dict)
    cpu_us_fixed: float | None = None
    cpu_rate: int = 0
    lat: Latency | None = None
    lat_step: StepResult | None = None
    steps: list[StepResult] = field(default_factory=list)
    max_rate: int | None = None
    cpu_us_max: float | None = None
    # Left running for the proxies' turns at the fixed rate: the process, its SIP port and
    # its decision log (None: it writes none).
    server: tuple[Proc, int, Path | None] | None = None
    turns: list[StepResult] = field(default_factory=list)

    def turn_cpu_us(self) -> list[float]:
        """CPU per call of each turn that passed."""
        return [st.proxy_cpu_s / st.success * 1e6 for st in self.turns
                if st.passed and st.success]

    def turn_cpu_median(self) -> float | None:
        per_call = self.turn_cpu_us()
        return round(statistics.median(per_call)) if per_call else None

    def turn_cpu_range(self) -> str | None:
        per_call = self.turn_cpu_us()
        if not per_call:
            return None
        return (f"{min(per_call):,.0f}–{max(per_call):,.0f} ({len(per_call)} of "
                f"{len(self.turns)} passed)")


@dataclass
class Plan:
    steps: list[int]
    step_seconds: float
    fixed_rate: int
    fixed_seconds: float
    retries: int
    down_tries: int = 3
    refine_tries: int = 2  # halvings of the gap between the last passed and the failed step
    turns: int = 3  # rounds of the proxies taking turns at the fixed rate (0: none)


def refine(low: int, high: int, tries: int, attempt: Callable[[int], bool]) -> None:
    """The steps are coarse (1,000 calls/s apart): look between the last rate passed and
    the one that failed, halving the gap (rounded down to 100 calls/s), each rate once."""
    for _ in range(tries):
        rate = (low + high) // 200 * 100
        if rate <= low:
            return
        if attempt(rate):
            low = rate
        else:
            high = rate


def measure_path(env: Env, plan: Plan, res: PathResult, port: int, pids_of: Proc | None,
                 blocks: bool) -> None:
    def pids() -> list[int]:
        return children_of(pids_of.pid) if pids_of is not None else []

    if pids_of is not None:
        res.rss_mb, res.pss_mb = memory_mb(pids())
    tag = res.name
    res.cpu_rate = plan.fixed_rate
    if plan.fixed_rate not in plan.steps:
        log(f"{tag}: CPU at a fixed {plan.fixed_rate}/s")
        step = sipp_step(env, port, plan.fixed_rate, plan.fixed_seconds, f"{tag}-cpu", pids(),
                         blocks)
        if pids_of is not None and step.success:
            res.cpu_us_fixed = step.proxy_cpu_s / step.success * 1e6
    log(f"{tag}: latency at {plan.fixed_rate}/s (tcpdump on lo)")
    step = sipp_step(env, port, plan.fixed_rate, plan.fixed_seconds, f"{tag}-lat", pids(),
                     blocks, capture=True)
    res.lat_step = step
    if not step.passed:
        settle(pids())
    if step.capture is not None and step.capture.exists():
        res.lat = latencies(step.capture)
        with contextlib.suppress(OSError):
            step.capture.unlink()  # large; the figures are in the report
    log(f"{tag}: stepped rates {plan.steps}")

    def attempt(rate: int, name: str) -> bool:
        step = sipp_step(env, port, rate, plan.step_seconds, name, pids(), blocks)
        res.steps.append(step)
        per_call = step.proxy_cpu_s / step.success * 1e6 if pids_of and step.success else None
        if rate == plan.fixed_rate and res.cpu_us_fixed is None:
            res.cpu_us_fixed = per_call
        if step.passed:
            res.max_rate, res.cpu_us_max = rate, per_call
            return True
        settle(pids())
        return False

    def proxy_dead() -> bool:
        return pids_of is not None and not pids_of.alive()

    failed: int | None = None
    for rate in plan.steps:
        tries = (attempt(rate, f"{tag}-{rate}-{i}") for i in range(1 + plan.retries)
                 if not proxy_dead())
        if not any(tries):
            failed = rate
            break
    if res.max_rate is not None and failed is not None:
        refine(res.max_rate, failed, plan.refine_tries,
               lambda rate: not proxy_dead() and attempt(rate, f"{tag}-{rate}-refine"))
    if res.max_rate is None and plan.steps:
        # Not even the first step: look below it (halving, three tries at most).
        rate = plan.steps[0]
        for _ in range(plan.down_tries):
            rate //= 2
            if rate < 50 or proxy_dead() or attempt(rate, f"{tag}-{rate}-down"):
                break
    if pids_of is not None and pids_of.alive():
        res.pss_after_mb = memory_mb(pids())[1]


def wait_deciding(name: str, port: int, probe_number: str, size: int, proc: Proc, t0: float,
                  res: PathResult) -> bool:
    """Wait until the proxy answers a listed number with 603; record the load time."""
    ready = probe_decline(port, probe_number, timeout=max(60, size / 1e5), proc=proc)
    if ready is None or not proc.alive():
        res.ok = False
        res.error = f"{name} did not answer 603: {why_not(proc)}"
        return False
    res.load_s = ready - t0
    log(f"{name}: deciding after {res.load_s:.1f} s")
    time.sleep(1)
    return True


def why_not(proc: Proc) -> str:
    state = "still running" if proc.alive() else f"exited with {proc.popen.returncode}"
    with contextlib.suppress(OSError):
        tail = proc.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        if tail:
            state += "; log ends: " + " | ".join(line.strip()[:200] for line in tail)
    return f"{state} ({proc.log_path})"


def settle(pids: Sequence[int], limit: float = 20.0) -> None:
    """After a failed step, wait until the proxy is idle (its retransmissions have died out)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        c0 = cpu_seconds(pids)
        time.sleep(1.0)
        if cpu_seconds(pids) - c0 < 0.05:
            return


def kamailio_shm_used(ctl: str) -> float | None:
    try:
        out = run_cmd(["kamcmd", "-s", ctl, "core.shmmem"], timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"real_used:\s*(\d+)", out)
    return int(m.group(1)) / 1024 / 1024 if m else None


def run_kamailio(env: Env, plan: Plan, db: Path, size: int, probe_number: str,
                 servers: contextlib.ExitStack, keep: bool) -> PathResult:
    """Kamailio's figures; with `keep`, it is left running (stopped when `servers` closes)."""
    res = PathResult("kamailio")
    ht_bits = min(24, max(10, math.ceil(math.log2(max(size, 1024)))))
    # db_sqlite has no incremental fetch: the whole result set sits in private (pkg) memory
    # while htable loads, about 560 bytes per row; the table itself lives in shm.
    pkg_mb = max(256, int(size / 1e6 * 600) + 256)
    shm_mb = max(512, int(size / 1e6 * 300) + 512)
    ctl = f"unix:{env.out / 'kamailio.ctl'}"
    argv = [
        "kamailio", "-f", str(BENCH / "kamailio.cfg"), "-DD", "-E", "-x", "tlsf",
        "-m", str(shm_mb), "-M", str(pkg_mb),
        "-A", f"LISTEN=udp:{HOST}:{env.ports['kamailio']}",
        "-A", f'TRUNK="sip:{HOST}:{env.ports["uas"]}"',
        "-A", f'DNC_DB="sqlite://{db}"',
        "-A", f'HT_SPEC="dnc=>size={ht_bits};dbtable=dnc;"',
        "-A", f'CTL_SOCK="{ctl}"',
    ]
    res.extra["kamailio options"] = f"-x tlsf -m {shm_mb} -M {pkg_mb}, htable size 2^{ht_bits}"
    log(f"kamailio: starting with {size:,} numbers ({' '.join(argv[5:9])})")
    t0 = time.monotonic()
    proc = Proc("kamailio", argv, env.out / "kamailio.log")
    with contextlib.ExitStack() as own:
        own.callback(proc.stop)
        if not wait_deciding("kamailio", env.ports["kamailio"], probe_number, size, proc, t0, res):
            return res
        shm = kamailio_shm_used(ctl)
        if shm is not None:
            res.extra["shm used after load (MB)"] = round(shm, 1)
        measure_path(env, plan, res, env.ports["kamailio"], proc, blocks=True)
        if keep and proc.alive():
            res.server = (proc, env.ports["kamailio"], None)
            servers.push(own.pop_all())
    return res


def sipguard_available() -> str:
    """'' when `sipguard serve` and `sipguard dnc import` exist, else why not."""
    exe = VENV / "sipguard"
    if not exe.exists():
        return f"{exe} is missing"
    for args in (["serve", "--help"], ["dnc", "import", "--help"]):
        try:
            p = run_cmd([str(exe), *args], timeout=30,
                               cwd=ROOT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"sipguard {' '.join(args)}: {exc}"
        if p.returncode != 0:
            err = (p.stderr or p.stdout).strip().splitlines()
            return f"`sipguard {' '.join(args)}` exits {p.returncode}: {err[-1] if err else ''}"
    return ""


def sipguard_config(env: Env, store: Path) -> Path:
    text = (BENCH / "sipguard.toml").read_text()
    text = re.sub(r'(?m)^path = .*$', f'path = "{store}"', text, count=1)
    text = text.replace("udp:127.0.0.1:25090", f"udp:{HOST}:{env.ports['sipguard']}")
    text = text.replace("sip:127.0.0.1:25080", f"sip:{HOST}:{env.ports['uas']}")
    text = re.sub(r'(?m)^file = .*$', f'file = "{env.out / "sipguard-decisions.log"}"', text)
    cfg = env.out / "sipguard.toml"
    cfg.write_text(text)
    return cfg


# Calling windows are read in the called party's local time: pin sipguard's wall clock to a
# Wednesday 23:00 UTC (Guam 09:00 Thursday, Hawaii 13:00, New York 19:00) so that only
# the DNC list decides.
FAKE_NOW = "2026-06-03 23:00:00"


WATCH_SIGNALS: Path | None = None  # --watch-signals: strace writes signals received here
COMPILED = ROOT / "build" / "compiled"  # `make compiled`: the call path built with mypyc
CORE = "compiled"  # --core: which build of sipguard the run measures


def sipguard_argv(*args: str) -> list[str]:
    exe = [str(VENV / "sipguard"), *args]
    if shutil.which("faketime"):
        exe = ["faketime", FAKE_NOW, *exe]
    if WATCH_SIGNALS is not None and shutil.which("strace"):
        # No syscall is traced (seccomp filter): only signal deliveries, with the sender's pid.
        exe = ["strace", "--seccomp-bpf", "-f", "-qq", "-e", "trace=none", "-e",
               "signal=!SIGCHLD", "-o", str(WATCH_SIGNALS), *exe]
    return exe


def sipguard_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("SIPGUARD_PSEUDONYM_KEY", "bench-only-not-a-secret-0123456789abcdef")
    if CORE == "compiled":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(COMPILED), env.get("PYTHONPATH")]))
    return env


def build_core() -> str:
    """'' when the build --core asks for is ready (`make compiled` for the compiled one)."""
    if CORE != "compiled":
        return ""
    log("building the compiled call path (make compiled)")
    p = run_cmd(["make", "-s", "compiled"], timeout=900, cwd=ROOT)
    return "" if p.returncode == 0 else f"make compiled failed: {(p.stderr or p.stdout)[-300:]}"


def served_core(log_file: Path, start: int) -> str:
    """The build `serve` says it runs (its sipguard.listening line, written after `start`),
    so the table cannot claim a build that did not serve."""
    with log_file.open("rb") as fh:
        fh.seek(start)
        for line in fh:
            if b'"sipguard.listening"' in line:
                with contextlib.suppress(ValueError):
                    return str(json.loads(line).get("core", "?"))
    return "?"


def sipguard_import(env: Env, res: PathResult, dnc: Path, size: int, cfg: Path,
                    store_dir: Path, reuse_store: bool) -> float | None:
    """Import the list with the CLI (timed); None when it failed (res.error says why)."""
    stamp = store_dir / "imported.json"
    if not (reuse_store and stamp.exists()):
        if store_dir.exists():
            shutil.rmtree(store_dir)
        store_dir.mkdir(parents=True)
        log(f"sipguard: importing {size:,} numbers")
        t0 = time.monotonic()
        try:
            p = run_cmd(
                [str(VENV / "sipguard"), "dnc", "import", str(dnc), "--list", "national",
                 "--kind", "national", "--format", "federal", "-c", str(cfg)],
                timeout=max(120, size / 2e4), cwd=ROOT, env=sipguard_env(),
            )
        except subprocess.TimeoutExpired:
            res.ok, res.error = False, "import timed out"
            return None
        took = time.monotonic() - t0
        (env.out / "sipguard-import.log").write_text(p.stdout + p.stderr)
        if p.returncode != 0:
            res.ok = False
            res.error = f"import failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}"
            return None
        stamp.write_text(json.dumps({"seconds": took, "size": size}))
    took = float(json.loads(stamp.read_text())["seconds"])
    res.extra["CLI import time (s)"] = round(took, 2)
    res.extra["CLI import rate (numbers/s)"] = round(size / took)
    store_bytes = sum(f.stat().st_size for f in store_dir.glob("*"))
    res.extra["store file (MB)"] = round(store_bytes / 2**20, 1)
    return took


def run_sipguard(env: Env, plan: Plan, dnc: Path, size: int, probe_number: str,
                 reuse_store: bool, servers: contextlib.ExitStack, keep: bool) -> PathResult:
    """sipguard's figures; with `keep`, it is left running (stopped when `servers` closes)."""
    res = PathResult("sipguard")
    why = sipguard_available()
    if why:
        res.ok, res.error = False, f"not run: {why}"
        log(f"sipguard: {res.error}")
        return res
    store_dir = env.out / f"sipguard-store-{size}"
    cfg = sipguard_config(env, store_dir / "sipguard.db")
    took = sipguard_import(env, res, dnc, size, cfg, store_dir, reuse_store)
    if took is None:
        return res
    log(f"sipguard: imported in {took:.1f} s; starting serve")
    rev = run_cmd(["git", "log", "-1", "--format=%h"], cwd=ROOT).stdout.strip()
    dirty = run_cmd(["git", "status", "--porcelain", "--", "src"], cwd=ROOT).stdout.strip()
    res.extra["sipguard tree when serve started"] = rev + (" (+ uncommitted src)" if dirty else "")
    log_file = env.out / "sipguard-decisions.log"  # [log] file: every line, appended
    log_start = log_file.stat().st_size if log_file.exists() else 0
    t0 = time.monotonic()
    proc = Proc("sipguard", sipguard_argv("serve", "-c", str(cfg)), env.out / "sipguard.log",
                env=sipguard_env(), cwd=ROOT)
    if not shutil.which("faketime"):
        res.extra["clock"] = "real (install faketime: calling windows depend on the hour)"
    else:
        res.extra["clock"] = f"faketime '{FAKE_NOW}' (UTC)"
    env.decision_log = log_file
    with contextlib.ExitStack() as own:
        own.callback(proc.stop)
        if not wait_deciding("sipguard", env.ports["sipguard"], probe_number, size, proc, t0, res):
            return res
        res.extra["core"] = served_core(log_file, log_start)
        measure_path(env, plan, res, env.ports["sipguard"], proc, blocks=True)
        if not proc.alive():
            res.error = f"sipguard exited with {proc.popen.returncode} during the run"
        elif keep:
            res.server = (proc, env.ports["sipguard"], log_file)
            servers.push(own.pop_all())
    return res


def take_turns(env: Env, plan: Plan, paths: Sequence[PathResult]) -> None:
    """The proxies' CPU per call at the fixed rate again, in turns (K S, S K, K S ...), both
    kept running: one step per proxy per round, so that a noisy moment of this shared VM
    weighs on both alike; the report gives each proxy's median."""
    for i in range(plan.turns):
        for res in paths if i % 2 == 0 else paths[::-1]:
            if res.server is None or not res.server[0].alive():
                continue
            proc, port, decisions = res.server
            env.decision_log = decisions
            step = sipp_step(env, port, plan.fixed_rate, plan.fixed_seconds,
                             f"{res.name}-turn-{i}", children_of(proc.pid), blocks=True)
            res.turns.append(step)
            if not step.passed:
                settle(children_of(proc.pid))


def run_direct(env: Env, plan: Plan) -> PathResult:
    res = PathResult("direct")
    measure_path(env, plan, res, env.ports["uas"], None, blocks=False)
    return res


def empty_store_pss(env: Env) -> float | None:
    """PSS of `sipguard serve` on an empty store, for 'RSS above an empty store'."""
    store_dir = env.out / "sipguard-store-empty"
    if store_dir.exists():
        shutil.rmtree(store_dir)
    store_dir.mkdir(parents=True)
    cfg = sipguard_config(env, store_dir / "sipguard.db")
    proc = Proc("sipguard-empty", sipguard_argv("serve", "-c", str(cfg)),
                env.out / "sipguard-empty.log", env=sipguard_env(), cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.alive():
            if not udp_port_free(env.ports["sipguard"]):
                time.sleep(1.0)
                return memory_mb(children_of(proc.pid))[1]
            time.sleep(0.2)
        return None
    finally:
        proc.stop()


# --------------------------------------------------------------------------- colleagues' benches


FIGURE = re.compile(r"^\s*(?P<label>\S.{2,80}?)(?::\s+|\s{2,})"
                    r"(?P<value>[0-9][0-9,]*(?:\.[0-9]+)?)\s*(?P<unit>[^\s(]*)")


def parse_figures(stdout: str) -> dict[str, float | str]:
    """Figures from a colleague's script: JSON object lines if any, else 'label: value unit'."""
    figures: dict[str, float | str] = {}
    for raw in stdout.splitlines():
        line = raw.strip()
        if line.startswith("{") and line.endswith("}"):
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    for k, v in obj.items():
                        if isinstance(v, (int, float, str)) and not isinstance(v, bool):
                            figures[str(k)] = v
    if figures:
        return figures
    for raw in stdout.splitlines():
        m = FIGURE.match(raw)
        if m:
            label = " ".join(m["label"].split())
            unit = f" ({m['unit']})" if m["unit"] else ""
            figures[f"{label}{unit}"] = float(m["value"].replace(",", ""))
    return figures


def run_script(name: str, quick: bool, timeout: float) -> tuple[dict[str, float | str], str]:
    script = BENCH / name
    if not script.exists():
        return {}, "absent"
    argv = [str(VENV / "python"), str(script)]
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        helptext = run_cmd([*argv, "--help"], timeout=30, cwd=ROOT).stdout
        if quick and "--quick" in helptext:
            argv.append("--quick")
        elif quick and "--calls" in helptext:
            argv += ["--calls", "20000"]
        elif quick and "--numbers" in helptext:
            argv += ["--numbers", "100000"]
        if "--json" in helptext:
            argv.append("--json")
    log(f"running {' '.join(argv[1:])} (at most {timeout:.0f} s)")
    try:
        p = run_cmd(argv, timeout=timeout, cwd=ROOT, env=sipguard_env())
    except subprocess.TimeoutExpired:
        return {}, f"timed out after {timeout:.0f} s"
    figures = parse_figures(p.stdout)
    status = f"`{' '.join(argv[2:]) or '(no options)'}` exit {p.returncode}" + (
        "" if figures else "; no figures found in its output")
    if p.returncode != 0 or not figures:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        status += ": " + " | ".join(tail)
    return figures, status


# --------------------------------------------------------------------------- report


def fmt(v: float | str | None, digits: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a: float | str | None, b: float | str | None) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}×"
    return "—"


def conditions(start: tuple[int, int, int], end: tuple[int, int, int], load0: str,
               wall: float) -> list[str]:
    total = end[0] - start[0] or 1
    busy = 100 * (1 - (end[1] - start[1]) / total)
    steal = 100 * (end[2] - start[2]) / total
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    sipp_v = run_cmd(["sipp", "-v"]).stdout
    kam_v = run_cmd(["kamailio", "-v"]).stdout
    rev = run_cmd(["git", "log", "-1", "--format=%h %s"], cwd=ROOT).stdout.strip()
    return [
        f"- machine: {os.cpu_count()} vCPU ({model}), {int(mem) // 1024} MB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"- SIPp: {next((ln.strip() for ln in sipp_v.splitlines() if 'SIPp' in ln), '?')}; "
        f"Kamailio: {kam_v.splitlines()[0] if kam_v else '?'}",
        f"- tree when the report was written: {rev}",
        f"- run took {wall / 60:.1f} min; whole-machine CPU busy {busy:.0f}% on average, "
        f"steal {steal:.1f}%; load average at start {load0}, at end "
        f"{Path('/proc/loadavg').read_text().split()[:3]}",
        f"- net.core.rmem_max = {Path('/proc/sys/net/core/rmem_max').read_text().strip()}; "
        "nothing pinned; SIPp dialer, SIPp trunk and the proxy share both cores",
    ]


def report(  # noqa: PLR0912
    paths: dict[str, PathResult], size: int, plan: Plan,
           extra_rows: list[tuple[str, str]], cond: list[str], quick: bool,
           scripts: dict[str, tuple[dict[str, float | str], str]]) -> str:
    d, k, s = (paths.get(n, PathResult(n, ok=False, error="not run")) for n in
               ("direct", "kamailio", "sipguard"))

    def lat(p: PathResult, code: int | None, q: float) -> float | str | None:
        value = pct(p.lat.values(code), q) if p.lat else None
        if value is not None and p.lat_step is not None and not p.lat_step.passed:
            return f"{fmt(value)}†"
        return value

    def flag(p: PathResult, value: float) -> float | str:
        if p.lat_step is not None and not p.lat_step.passed:
            return f"{fmt(value)}†"
        return value

    def cpu_fixed(p: PathResult) -> float | str | None:
        fixed = [st for st in p.steps if st.rate == plan.fixed_rate]
        if p.cpu_us_fixed is not None and fixed and not fixed[0].passed:
            return f"{fmt(p.cpu_us_fixed)}†"
        return p.cpu_us_fixed

    rows: list[tuple[str, float | str | None, float | str | None, float | str | None, bool]] = []

    def row(label: str, fd: float | str | None, fk: float | str | None,
            fs: float | str | None, with_ratio: bool = True) -> None:
        rows.append((label, fd, fk, fs, with_ratio))

    row("DNC list size (numbers)", None, size if k.load_s else None,
        size if s.load_s else None, False)
    refined = f", then the gap halved {plan.refine_tries}×" if plan.refine_tries else ""
    row(f"highest rate, 0 failures (calls/s; steps {plan.steps[0]}..{plan.steps[-1]}{refined}, "
        f"{plan.step_seconds:g} s each)", d.max_rate, k.max_rate, s.max_rate)
    for code, name in ((200, "INVITE→200"), (603, "INVITE→603"), (None, "INVITE→final, all")):
        for q in (50, 99):
            row(f"{name} p{q} at {plan.fixed_rate}/s (ms)", lat(d, code, q), lat(k, code, q),
                lat(s, code, q))
    for q in (50, 99):
        dv = pct(d.lat.values(200), q) if d.lat else None
        kv = pct(k.lat.values(200), q) if k.lat else None
        sv = pct(s.lat.values(200), q) if s.lat else None
        row(f"added INVITE→200 p{q} vs direct (ms)", None,
            flag(k, kv - dv) if dv is not None and kv is not None else None,
            flag(s, sv - dv) if dv is not None and sv is not None else None)
    row(f"proxy CPU per call at {plan.fixed_rate}/s (µs, user+sys)", None, cpu_fixed(k),
        cpu_fixed(s))
    if plan.turns:
        row(f"proxy CPU per call at {plan.fixed_rate}/s, the two proxies taking turns "
            f"(µs; median of {plan.turns} rounds)", None, k.turn_cpu_median(),
            s.turn_cpu_median())
        row("the turns' range (µs)", None, k.turn_cpu_range(), s.turn_cpu_range(), False)
    row("proxy CPU per call at its highest rate (µs)", None, k.cpu_us_max, s.cpu_us_max)
    row("memory with the list loaded: sum of PSS (MB)", None, k.pss_mb, s.pss_mb)
    row("memory with the list loaded: sum of VmRSS (MB)", None, k.rss_mb, s.rss_mb)
    row("memory after the load steps: sum of PSS (MB)", None, k.pss_after_mb, s.pss_after_mb)
    row("list load time: start → first 603 (s)", None, k.load_s, s.load_s)

    def noise(p: PathResult) -> float | None:
        runs = [st.others_cores for st in p.steps]
        return round(sum(runs) / len(runs), 2) if runs else None

    row("CPU used by other processes during the steps (cores, mean)", noise(d), noise(k),
        noise(s), False)
    keys = sorted({key for p in (k, s) for key in p.extra})
    for key in keys:
        row(key, None, k.extra.get(key), s.extra.get(key), False)
    for label, value in extra_rows:
        row(label, None, None, value, False)
    for script, (figures, _status) in scripts.items():
        for key, fig in figures.items():
            row(f"{script}: {key}", None, None, fig, False)

    lines: list[str] = [
        "# sipguard benchmark: direct vs Kamailio vs sipguard" + (" (QUICK smoke run)" if quick
                                                                 else ""),
        "",
        f"Generated by `bench/run.sh{' --quick' if quick else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| figure | direct | Kamailio | sipguard | sipguard/Kamailio |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, fd, fk, fs, with_ratio in rows:
        lines.append(f"| {label} | {fmt(fd)} | {fmt(fk)} | {fmt(fs)} | "
                     f"{ratio(fs, fk) if with_ratio else '—'} |")
    lines += ["", "† measured in a run that had failures (the path cannot sustain that rate): "
              "queueing, not the proxy's own latency.", ""]
    lines += ["## Conditions", "", *cond, ""]
    lines += ["## Paths", ""]
    for p in (d, k, s):
        lines.append(f"- **{p.name}**: " + ("ok" if p.ok and not p.error else p.error or "failed"))
        if p.lat is not None:
            counts = {c: len(v) for c, v in sorted(p.lat.by_code.items())}
            lines.append(f"  - latency run: final responses by code {counts}, INVITEs without a "
                         f"final response in the capture: {p.lat.unmatched}")
        if p.lat_step is not None:
            lines.append(f"  - latency run SIPp: {p.lat_step.summary()}")
        lines += [f"  - step {st.summary()}" for st in p.steps] + [
            f"  - turn {st.summary()}" for st in p.turns]
    lines += ["", "## Scripts", ""]
    for script, (_figures, status) in scripts.items():
        lines.append(f"- `bench/{script}`: {status}")
    return "\n".join(lines) + "\n"


def print_table(md: str) -> None:
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set(cells[0]) <= {"-"}:
                continue
            print(f"{cells[0][:62]:62} {cells[1]:>9} {cells[2]:>10} {cells[3]:>12} {cells[4]:>8}")


# --------------------------------------------------------------------------- main


def pick_ports(base: int) -> dict[str, int]:
    for b in range(base, base + 1000, 100):
        ports = {"uac": b + 61, "kamailio": b + 70, "uas": b + 80, "sipguard": b + 90}
        if all(udp_port_free(p) for p in ports.values()):
            return ports
    raise SystemExit("no free UDP ports for the bench")


def raise_rmem(want: int) -> str:
    path = Path("/proc/sys/net/core/rmem_max")
    try:
        current = int(path.read_text())
        if current < want:
            path.write_text(str(want))
            Path("/proc/sys/net/core/wmem_max").write_text(str(want))
            return f"raised net.core.rmem_max/wmem_max {current} → {want}"
        return f"net.core.rmem_max already {current}"
    except OSError as exc:
        return f"could not raise net.core.rmem_max ({exc}); UDP buffers stay small"


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0912, PLR0915
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small list, few short steps (< 2 min)")
    ap.add_argument("--size", type=int, help="DNC list size (default 10M; 100k with --quick)")
    ap.add_argument("--paths", default="direct,kamailio,sipguard")
    ap.add_argument("--steps", help="comma-separated rates (calls/s) for the stepped search")
    ap.add_argument("--step-seconds", type=float)
    ap.add_argument("--fixed-rate", type=int, default=1000)
    ap.add_argument("--retries", type=int, help="re-runs of a failed step before stopping")
    ap.add_argument("--port-base", type=int, default=25000)
    ap.add_argument("--out", type=Path, default=BENCH / "results")
    ap.add_argument("--reuse-store", action="store_true",
                    help="keep a sipguard store imported by an earlier run (import time reused)")
    ap.add_argument("--watch-signals", action="store_true",
                    help="run sipguard under strace (signals only) to log who signals it")
    ap.add_argument("--core", choices=("compiled", "interpreted"), default="compiled",
                    help="sipguard's build: mypyc-compiled call path (default) or plain Python")
    ap.add_argument("--turns", type=int,
                    help="rounds of Kamailio and sipguard taking turns at the fixed rate "
                         "(default 3, 1 with --quick; 0: none)")
    ap.add_argument("--no-scripts", action="store_true",
                    help="skip decide_bench.py and import_bench.py")
    args = ap.parse_args(argv)

    quick: bool = args.quick
    global WATCH_SIGNALS, CORE  # noqa: PLW0603 (run-wide switches)
    CORE = args.core
    if args.watch_signals:
        WATCH_SIGNALS = args.out / "sipguard-signals.txt"
    size = args.size or (100_000 if quick else 10_000_000)
    plan = Plan(
        steps=[int(x) for x in args.steps.split(",")] if args.steps else (
            [1000, 2000, 4000] if quick else
            [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 12000, 14000]),
        step_seconds=args.step_seconds or (3.0 if quick else 10.0),
        fixed_rate=args.fixed_rate,
        fixed_seconds=3.0 if quick else 10.0,
        retries=args.retries if args.retries is not None else (0 if quick else 1),
        down_tries=1 if quick else 3,
        refine_tries=0 if quick else 2,
        turns=args.turns if args.turns is not None else (1 if quick else 3),
    )
    for tool in ("sipp", "tcpdump", "kamailio"):
        if shutil.which(tool) is None:
            log(f"{tool} is not installed (apt-get install sip-tester tcpdump kamailio "
                "kamailio-sqlite-modules)")
            return 2
    why = build_core()
    if why:
        log(why)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "sipp").mkdir(exist_ok=True)
    log(raise_rmem(32 * 1024 * 1024))
    wall0 = time.monotonic()
    cpu0 = system_cpu()
    load0 = str(Path("/proc/loadavg").read_text().split()[:3])

    paths_wanted = [p.strip() for p in args.paths.split(",") if p.strip()]
    data = out / "data" / f"n{size}"
    need_sqlite = "kamailio" in paths_wanted and (KAM_MODULES / "db_sqlite.so").exists()
    log(f"data: {size:,}-number list into {data}")
    gen = run_cmd(
        [str(VENV / "python"), str(BENCH / "gen_data.py"), "--out", str(data), "--size",
         str(size), "--calls", str(60_000 if quick else 1_500_000)]
        + (["--sqlite"] if need_sqlite else []),
        timeout=1800,
    )
    if gen.returncode != 0:
        log(f"gen_data failed: {gen.stderr.strip()}")
        return 2
    meta = json.loads(gen.stdout.strip().splitlines()[-1])
    call_lines = (data / "calls.csv").read_text().splitlines()[1:]
    with (data / "dnc-federal.txt").open() as fh:
        probe_number = fh.readline().strip()
    env = Env(out=out, call_lines=call_lines, ports=pick_ports(args.port_base),
              sipp_buf=8 * 1024 * 1024)
    log(f"ports {env.ports}")

    results: dict[str, PathResult] = {}
    extra_rows: list[tuple[str, str]] = []
    turns = plan.turns > 0 and {"kamailio", "sipguard"} <= set(paths_wanted)
    with contextlib.ExitStack() as servers:  # the proxies kept running for their turns
        if "direct" in paths_wanted:
            log("== direct (dialer → trunk)")
            results["direct"] = run_direct(env, plan)
        if "kamailio" in paths_wanted:
            log("== Kamailio")
            if not (KAM_MODULES / "db_sqlite.so").exists():
                results["kamailio"] = PathResult("kamailio", ok=False,
                                                 error="db_sqlite missing: apt-get install "
                                                       "kamailio-sqlite-modules")
            else:
                kam = run_kamailio(env, plan, data / "kamailio-dnc.db", size, probe_number,
                                   servers, turns)
                if "sqlite_s" in meta:
                    kam.extra["SQLite table build for htable (s)"] = meta["sqlite_s"]
                results["kamailio"] = kam
        if "sipguard" in paths_wanted:
            log("== sipguard")
            results["sipguard"] = run_sipguard(env, plan, data / "dnc-federal.txt", size,
                                               probe_number, args.reuse_store, servers, turns)
        kept = [results[n] for n in ("kamailio", "sipguard") if n in results]
        if len(kept) == 2 and all(p.server is not None for p in kept):
            log(f"== turns: Kamailio and sipguard at {plan.fixed_rate}/s, {plan.turns} rounds")
            take_turns(env, plan, kept)
    sg = results.get("sipguard")
    if sg is not None and sg.ok and sg.pss_mb is not None:  # its port is free again
        empty = empty_store_pss(env)
        if empty is not None:
            extra_rows.append(("sipguard PSS on an empty store (MB)", fmt(empty)))
            extra_rows.append(("sipguard PSS above an empty store (MB)", fmt(sg.pss_mb - empty)))
    scripts: dict[str, tuple[dict[str, float | str], str]] = {}
    if not args.no_scripts:
        for name in ("decide_bench.py", "import_bench.py"):
            scripts[name] = run_script(name, quick, 30 if quick else 900)
    cond = conditions(cpu0, system_cpu(), load0, time.monotonic() - wall0)
    md = report(results, size, plan, extra_rows, cond, quick, scripts)
    partial = bool(args.steps or args.size or args.step_seconds) or \
        set(paths_wanted) != {"direct", "kamailio", "sipguard"}
    name = "quick.md" if quick else ("partial.md" if partial else "latest.md")
    (out / name).write_text(md)
    (out / (name[:-3] + ".json")).write_text(json.dumps({
        n: {"max_rate": p.max_rate, "cpu_us_fixed": p.cpu_us_fixed, "cpu_us_max": p.cpu_us_max,
            "pss_mb": p.pss_mb, "rss_mb": p.rss_mb, "load_s": p.load_s, "error": p.error,
            "p50_200": pct(p.lat.values(200), 50) if p.lat else None,
            "p99_200": pct(p.lat.values(200), 99) if p.lat else None,
            "p50_603": pct(p.lat.values(603), 50) if p.lat else None,
            "p99_603": pct(p.lat.values(603), 99) if p.lat else None,
            "cpu_us_turns": p.turn_cpu_us(),
            "extra": p.extra, "steps": [st.summary() for st in p.steps],
            "turns": [st.summary() for st in p.turns]}
        for n, p in results.items()}, indent=1, default=str))
    print_table(md)
    log(f"report written to {out / name}")
    failed = [p.name for p in results.values() if not p.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
