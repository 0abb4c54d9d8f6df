"""Issue 3 end to end: the policy decision on real SIPp traffic, a real SQLite store and the
real CLI (subprocesses) while sipguard serves.

* 1,000 CSV-driven calls against internal, national, state (US-FL) and litigator lists and
  consent records: the trunk receives exactly the allowed numbers, the dialer gets 603 with
  the right Reason for every blocked one, the decision log has one line per call with the
  right reason and the callee's keyed pseudonym.
* `dnc import --mode replace` while calls flow: no call fails, decisions switch from the old
  list to the new one (every call decided after the command returned uses the new list),
  and an import killed (SIGKILL) while it writes leaves the old list answering.
* `consent revoke` / `consent grant` while serving decide the very next call.

Calling windows (issue 5) apply to US numbers in enforce mode, so every sipguard process
(the gateway and each CLI command) runs under libfaketime at one shared clock: real time
shifted to start at a Wednesday 18:00 UTC (14:00 New York, 11:00 Los Angeles). The shift is
a relative offset (`FAKETIME="-Ns"`) rather than an absolute start (`"@..."`, which restarts
at the same instant in every process), so a grant, a revocation and a call made one after
the other by different processes keep their order, and a decision's logged time minus the
offset is the real time the test measured its CLI commands with.
"""

from __future__ import annotations

import concurrent.futures
import glob
import hmac
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

from e2e.checks import show
from e2e.harness import Gateway, SipMessage, Sipp, SippResult, Trunk

pytestmark = pytest.mark.e2e

# A Wednesday, no US holiday: 14:00 in New York, 13:00 Chicago, 11:00 Los Angeles.
FAKE_START = datetime(2026, 6, 3, 18, 0, tzinfo=UTC)
PSEUDONYM_KEY = "h8-policy-e2e-key-not-a-secret"
CAMPAIGN = "renewals"
ALL_LISTS = ["internal", "national", "state", "litigator"]

# Area codes by state. No Florida, Oklahoma or Maryland outside FL_NPAS: their shipped
# frequency caps are not what these tests are about (each number is called once anyway).
OTHER_NPAS = ("212", "312", "415", "617", "713", "206", "404", "303", "602", "615")
FL_NPAS = ("305", "407", "813", "904", "561", "954")


def _libfaketime() -> str | None:
    for pattern in ("/usr/lib/*/faketime/libfaketimeMT.so.1",
                    "/usr/lib/faketime/libfaketimeMT.so.1", "/usr/lib/*/faketime/libfaketime.so.1"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@dataclass(frozen=True)
class Clock:
    """The shared fake clock: `env` for every sipguard process, `real()` to map back."""

    offset: int  # fake = real + offset (seconds)
    env: dict[str, str]

    def real(self, fake_iso: str) -> float:
        """The real time.time() of a timestamp sipguard logged."""
        when = datetime.fromisoformat(fake_iso.replace("Z", "+00:00"))
        return when.timestamp() - self.offset


@pytest.fixture
def clock() -> Clock:
    lib = _libfaketime()
    if lib is None:
        pytest.skip("libfaketime is not installed (Debian/Ubuntu: apt-get install faketime); "
                    "calling windows make US calls depend on the hour without it")
    offset = int(FAKE_START.timestamp() - time.time())
    # FAKETIME_DONT_FAKE_MONOTONIC=1 is not set: with libfaketime 0.9.10 it makes
    # clock_gettime(CLOCK_MONOTONIC) fail (Python's time.monotonic() raises EINVAL). The
    # relative offset shifts the monotonic clock by a constant, which timers do not mind.
    env = {
        "LD_PRELOAD": lib,
        "FAKETIME": f"{offset:+d}s",
        "SIPGUARD_PSEUDONYM_KEY": PSEUDONYM_KEY,
    }
    return Clock(offset, env)


# --------------------------------------------------------------------------- helpers


def pseudonym(number: str) -> str:
    return hmac.digest(PSEUDONYM_KEY.encode(), number.encode(), "sha256").hex()[:32]


def us_numbers(rng: random.Random, count: int, npas: Sequence[str],
               taken: set[str]) -> list[str]:
    """`count` distinct valid US numbers in E.164 from these area codes, none in `taken`."""
    out: list[str] = []
    while len(out) < count:
        npa = rng.choice(npas)
        nxx = rng.randrange(200, 1000)
        if nxx % 100 == 11 or nxx == 555:
            continue
        number = f"+1{npa}{nxx}{rng.randrange(10_000):04d}"
        if number in taken:
            continue
        parsed = phonenumbers.parse(number)
        if not phonenumbers.is_valid_number(parsed):
            continue
        taken.add(number)
        out.append(number)
    return out


def write_lines(path: Path, lines: Iterable[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def federal(numbers: Iterable[str]) -> list[str]:
    """E.164 US numbers as National DNC Registry lines (ten digits)."""
    return [n.removeprefix("+1") for n in numbers]


def cli(gw: Gateway, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    """Run `sipguard ARGS -c <the gateway's config>` under the gateway's clock; must succeed."""
    cmd = [sys.executable, "-m", "sipguard", *args, "-c", str(gw.config_path)]
    proc = subprocess.run(cmd, check=False, env=gw.env, cwd=gw.workdir, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (
        f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def cli_all(gw: Gateway, commands: Sequence[Sequence[str]], workers: int = 3) -> None:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(cli, gw, *c) for c in commands]:
            future.result()


def decisions(gw: Gateway) -> list[dict[str, Any]]:
    return [e for e in gw.events() if e.get("event") == "call.decision"]


@dataclass(frozen=True)
class Outcome:
    """One call as the dialer's scenario logged it."""

    dialled: str
    call_id: str
    status: int
    reason: str


@dataclass
class Dialled:
    result: SippResult
    outcomes: list[Outcome]

    def by_call(self) -> dict[str, Outcome]:
        return {o.call_id: o for o in self.outcomes}


def dial(
    sipp: Callable[..., Sipp], gw: Gateway, workdir: Path, name: str,
    rows: Sequence[tuple[str, str]], *, rate: int, limit: int = 50,
) -> Sipp:
    """Start the injection-file dialer: one call per (dialled number, campaign) row, in order."""
    workdir.mkdir(parents=True, exist_ok=True)
    inf = write_lines(workdir / f"{name}.csv", ["SEQUENTIAL", *(f"{n};{c};" for n, c in rows)])
    log = workdir / f"{name}.outcomes.log"
    return sipp(
        "uac_policy.xml", name, remote=gw.address,
        args=["-inf", str(inf), "-m", str(len(rows)), "-r", str(rate), "-l", str(limit),
              "-d", "0", "-trace_logs", "-log_file", str(log)],
    )


def outcomes_of(uac: Sipp, result: SippResult) -> Dialled:
    log = uac.workdir / f"{uac.name}.outcomes.log"
    out = []
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            parts = line.strip().split(";")
            if len(parts) == 4 and parts[2].isdigit():
                out.append(Outcome(parts[0], parts[1], int(parts[2]), parts[3]))
    return Dialled(result, out)


def call_through(sipp: Callable[..., Sipp], gw: Gateway, workdir: Path, name: str,
                 rows: Sequence[tuple[str, str]], timeout: float = 30.0) -> Dialled:
    uac = dial(sipp, gw, workdir, name, rows, rate=20, limit=1)
    return outcomes_of(uac, uac.wait(timeout))


def assert_no_failed_call(d: Dialled, calls: int | None = None) -> None:
    r = d.result
    assert not r.timed_out, f"hard deadline hit\n{r.summary()}"
    assert r.failed == 0, r.summary()
    ids = [o.call_id for o in d.outcomes]
    assert len(ids) == len(set(ids)), "a call logged two outcomes"
    if calls is not None:
        assert r.created == calls, r.summary()
    assert len(ids) == r.created, (
        f"{r.created} calls placed, {len(ids)} outcomes logged (neither 200 nor 603 for the "
        f"rest)\n{r.summary()}"
    )


def answered_numbers(trunk: SippResult) -> Counter[str]:
    """Initial INVITEs at the trunk, by dialled number (last ten digits, as +1...)."""
    got: Counter[str] = Counter()
    for m in trunk.received("INVITE"):
        if "tag=" in m.header("To"):
            continue
        user = m.start_line.split()[1].removeprefix("sip:").split("@", 1)[0]
        got["+1" + user[-10:]] += 1
    return got


def invites_by_call(trunk: SippResult) -> dict[str, SipMessage]:
    return {m.call_id: m for m in trunk.received("INVITE") if "tag=" not in m.header("To")}


def start_trunk_and_gateway(
    sipp: Callable[..., Sipp], start_gateway: Callable[..., Gateway], clock: Clock,
    overrides: dict[str, Any],
) -> tuple[Sipp, Gateway]:
    uas = sipp("uas_basic.xml", "uas")
    # One trunk, and a failover timeout well above a scheduling hiccup of a loaded machine:
    # these tests judge decisions; a stalled event loop must not turn into a trunk 408.
    gw = start_gateway([Trunk(uas.port)], sip={"failover_timeout": 8.0}, overrides=overrides,
                       env=clock.env)
    return uas, gw


# --------------------------------------------------------------------------- 1. 1,000 calls


def test_thousand_csv_calls_decided_by_lists_and_consent(
    start_gateway, sipp, clock, tmp_path
) -> None:
    rng = random.Random(20260603)
    taken: set[str] = set()
    expected: dict[str, str] = {}  # E.164 -> the reason its call must get

    def pick(count: int, reason: str, npas: Sequence[str] = OTHER_NPAS) -> list[str]:
        numbers = us_numbers(rng, count, npas, taken)
        expected.update(dict.fromkeys(numbers, reason))
        return numbers

    # On one list each.
    internal_only = pick(60, "dnc-internal")
    national_only = pick(140, "dnc-national")
    state_only = pick(60, "dnc-state", FL_NPAS)
    litigator_only = pick(40, "litigator")
    # On several lists: internal before litigator before national/state.
    internal_national = pick(20, "dnc-internal")
    internal_litigator = pick(5, "dnc-internal")
    litigator_national = pick(10, "litigator")
    national_state = pick(10, "dnc-national", FL_NPAS)
    # With consent (express-written for the campaign lets a call through national/state
    # lists, never through a litigator list nor an internal opt-out newer than it).
    consent_national = pick(3, "consent")
    consent_state = pick(2, "consent", FL_NPAS)
    consent_older_than_dated_optout = pick(2, "dnc-internal")
    consent_vs_undated_optout = pick(1, "dnc-internal")
    consent_newer_than_dated_optout = pick(1, "consent")
    express_not_written_national = pick(1, "dnc-national")
    other_campaign_national = pick(1, "dnc-national")
    consent_litigator = pick(1, "litigator")
    pick(1000 - len(expected), "no-restriction", OTHER_NPAS + FL_NPAS)
    assert len(expected) == 1000

    optout_date = "2026-05-01T12:00:00Z"
    internal_rows = (
        [(n, "") for n in internal_only + internal_national + internal_litigator
         + consent_vs_undated_optout]
        + [(n, optout_date) for n in consent_older_than_dated_optout
           + consent_newer_than_dated_optout]
    )
    national = (national_only + internal_national + litigator_national + national_state
                + consent_national + express_not_written_national + other_campaign_national)
    state = state_only + national_state + consent_state
    litigator = litigator_only + internal_litigator + litigator_national + consent_litigator

    data = tmp_path / "lists"
    data.mkdir()
    rng.shuffle(internal_rows)
    internal_csv = write_lines(data / "internal.csv",
                               ["phone,opted_out_at", *(f"{n},{d}" for n, d in internal_rows)])
    national_txt = write_lines(data / "national.txt", federal(national))
    state_txt = write_lines(data / "fl.txt", federal(state))
    litigator_txt = write_lines(data / "litigator.txt", litigator)  # E.164 lines

    campaigns = {
        "default": {"purpose": "telemarketing", "lists": ALL_LISTS, "require_consent": False},
        CAMPAIGN: {"purpose": "telemarketing", "lists": ALL_LISTS, "require_consent": False},
        "other": {"purpose": "telemarketing", "lists": ALL_LISTS, "require_consent": False},
    }
    uas, gw = start_trunk_and_gateway(sipp, start_gateway, clock, {
        "campaigns": campaigns, "log": {"pseudonymize": True},
    })

    def grant(number: str, kind: str = "express-written", campaign: str = CAMPAIGN,
              at: str = "2026-04-01T12:00:00Z") -> list[str]:
        return ["consent", "grant", number, "--campaign", campaign, "--type", kind,
                "--source", "web form e2e", "--granted-at", at]

    # Written while sipguard serves: each command returns once the server applied it.
    cli_all(gw, [
        ["dnc", "import", str(internal_csv), "--list", "internal", "--kind", "internal",
         "--format", "csv"],
        ["dnc", "import", str(national_txt), "--list", "national", "--kind", "national"],
        ["dnc", "import", str(state_txt), "--list", "fl-dnc", "--kind", "state",
         "--jurisdiction", "US-FL"],
        ["dnc", "import", str(litigator_txt), "--list", "litigator", "--kind", "litigator",
         "--format", "e164"],
        *(grant(n) for n in consent_national + consent_state + consent_litigator),
        *(grant(n) for n in consent_older_than_dated_optout),  # 2026-04-01 < opt-out
        *(grant(n, at="2026-05-20T12:00:00Z") for n in consent_vs_undated_optout),
        *(grant(n, kind="express", at="2026-05-20T12:00:00Z")
          for n in consent_newer_than_dated_optout),
        *(grant(n, kind="express") for n in express_not_written_national),
        *(grant(n, campaign="other") for n in other_campaign_national),
    ])

    # Dial them shuffled; every fifth in the national format a dialer may send.
    numbers = list(expected)
    rng.shuffle(numbers)
    rows = [(n[2:] if i % 5 == 0 else n, CAMPAIGN) for i, n in enumerate(numbers)]
    uac = dial(sipp, gw, tmp_path / "sipp", "uac", rows, rate=150, limit=150)
    dialer = outcomes_of(uac, uac.wait(90))
    time.sleep(0.5)  # the last BYEs' 200s
    trunk = uas.stop()
    gw.assert_alive()

    # The dialer: one outcome per call, 200 for the allowed, 603 + reason for the blocked.
    assert_no_failed_call(dialer, 1000)
    allowed = {n for n, r in expected.items() if r in ("consent", "no-restriction")}
    got = {("+1" + o.dialled[-10:]): o for o in dialer.outcomes}
    assert set(got) == set(expected)
    wrong = [(n, expected[n], o.status, o.reason) for n, o in got.items()
             if (o.status, o.reason) != ((200, "") if n in allowed else (603, expected[n]))]
    assert not wrong, f"{len(wrong)} calls got the wrong answer, e.g. {wrong[:10]}"
    for resp in dialer.result.received("INVITE", 603):
        reason = got["+1" + resp.header("To").split("@")[0].split(":")[-1][-10:]].reason
        assert resp.header("Reason") == f'SIP;cause=603;text="{reason}"', show(resp)
        warning = resp.header("Warning")
        assert warning.startswith("399 ") and warning.endswith(f'"{reason}"'), show(resp)

    # The trunk: exactly the allowed numbers, each once, tagged with the decision.
    at_trunk = answered_numbers(trunk)
    assert sum(at_trunk.values()) == len(allowed), (
        f"trunk got {sum(at_trunk.values())} INVITEs for {len(allowed)} allowed numbers"
    )
    assert set(at_trunk) == allowed, (
        f"missing at the trunk {sorted(allowed - set(at_trunk))[:5]}, "
        f"not allowed but there {sorted(set(at_trunk) - allowed)[:5]}"
    )

    # The decision log: one line per call (by Call-ID) with the right reason and pseudonym.
    lines = decisions(gw)
    by_call: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_call.setdefault(str(line["call_id"]), []).append(line)
    outcome_by_call = dialer.by_call()
    assert set(by_call) == set(outcome_by_call), (
        f"{len(by_call)} Call-IDs in the decision log, {len(outcome_by_call)} calls placed"
    )
    assert len(lines) == 1000, f"{len(lines)} decision lines for 1000 calls"
    forwarded = invites_by_call(trunk)
    for call_id, (line,) in by_call.items():
        number = "+1" + outcome_by_call[call_id].dialled[-10:]
        reason = expected[number]
        action = "allow" if number in allowed else "block"
        assert (line["decision"], line["reason"], line["campaign"]) == (
            action, reason, CAMPAIGN), line
        assert line["callee"] == pseudonym(number), line
        assert line["caller"] == pseudonym("+13125557000"), line
        if action == "allow":
            tag = forwarded[call_id].header("X-Sipguard-Decision")
            assert tag == f"allow;reason={reason};id={line['decision_id']}", tag
    assert Counter(line["reason"] for line in lines) == Counter(expected.values())
    text = "\n".join(map(repr, lines))
    clear = [n for n in expected if n[2:] in text]
    assert not clear, f"numbers in clear in the decision log: {clear[:5]}"


# --------------------------------------------------------------------------- 2. replace import


def _permuted(count: int, seed: int, exclude: set[int]) -> list[str]:
    """`count` distinct ten-digit NANP numbers (a multiplicative permutation of the range),
    none in `exclude` (as ints)."""
    span, mult = 8_000_000_000, 2_654_435_761  # prime, coprime with the span
    out = []
    i = seed
    while len(out) < count:
        n = 2_000_000_000 + (i * mult) % span
        i += 1
        if n not in exclude:
            out.append(str(n))
    return out


def _wchar(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _write_locked(db: Path) -> bool:
    """Whether some connection holds the store's write lock (an IMMEDIATE transaction)."""
    con = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc) or "busy" in str(exc)
    else:
        con.execute("ROLLBACK")
        return False
    finally:
        con.close()


def test_replace_import_under_traffic_and_a_killed_import(
    start_gateway, sipp, clock, tmp_path
) -> None:
    rng = random.Random(3)
    taken: set[str] = set()
    calls = 1500
    per = calls // 4
    old_only, new_only, both, neither = (us_numbers(rng, per, OTHER_NPAS, taken)
                                         for _ in range(4))
    category = {n: c for c, ns in (("old-only", old_only), ("new-only", new_only),
                                   ("both", both), ("neither", neither)) for n in ns}
    rows = [(n, "default") for group in zip(old_only, new_only, both, neither, strict=True)
            for n in group]

    data = tmp_path / "lists"
    data.mkdir()
    exclude = {int(n[2:]) for n in taken}
    old_file = write_lines(data / "old.txt", federal(old_only + both))
    new_file = write_lines(data / "new.txt",
                           federal(new_only + both) + _permuted(300_000, 1, exclude))
    # The import to be killed: it would make the "neither" numbers listed and free the rest.
    doomed = write_lines(data / "doomed.txt",
                         federal(neither) + _permuted(3_000_000, 7_000_000, exclude))

    uas, gw = start_trunk_and_gateway(sipp, start_gateway, clock, {
        "campaigns": {"default": {"purpose": "telemarketing", "lists": ["national"]}},
        "store": {"poll_interval": 0.25},
    })
    cli(gw, "dnc", "import", str(old_file), "--list", "national", "--kind", "national")

    uac = dial(sipp, gw, tmp_path / "sipp", "uac", rows, rate=40, limit=100)
    time.sleep(1.5)
    t_replace = time.time()
    cli(gw, "dnc", "import", str(new_file), "--list", "national", "--mode", "replace")
    t_replaced = time.time()
    time.sleep(1.5)

    t_doomed = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipguard", "dnc", "import", str(doomed), "--list", "national",
         "--mode", "replace", "-c", str(gw.config_path)],
        env=gw.env, cwd=gw.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    # Killed once it writes the new generation: SQLite spills its pages to the WAL while the
    # blob goes in, long before the commit (the numbers alone take ~7 MB).
    start_wchar = killed_at_wchar = -1
    in_write = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        written = _wchar(proc.pid)
        if start_wchar < 0:
            start_wchar = written
        elif written - start_wchar > 1_000_000:
            os.kill(proc.pid, signal.SIGSTOP)  # frozen mid-write: prove it holds the lock
            in_write = _write_locked(Path(gw.config["store"]["path"]))
            os.kill(proc.pid, signal.SIGKILL)
            killed_at_wchar = written - start_wchar
            break
        time.sleep(0.001)
    t_killed = time.time()
    try:
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert in_write, (
        f"the import was not in its write transaction when killed ({killed_at_wchar} bytes "
        "written): the kill proves nothing"
    )
    assert proc.returncode == -signal.SIGKILL, (
        f"the import was not killed while writing (exit {proc.returncode}, "
        f"{killed_at_wchar} bytes written):\n{out.decode(errors='replace')}"
    )
    # The store itself (not only the gateway's memory) still holds the old list whole.
    for number, answer in ((new_only[0], ("block", "dnc-national")),
                           (neither[0], ("allow", "no-restriction"))):
        decided = json.loads(cli(gw, "check", number).stdout)
        assert (decided["decision"], decided["reason"]) == answer, decided
    result = uac.stop(grace=10)
    time.sleep(0.3)
    trunk = uas.stop()
    gw.assert_alive()

    dialer = outcomes_of(uac, result)
    assert_no_failed_call(dialer)
    assert all(o.status == 200 or o.reason == "dnc-national" for o in dialer.outcomes), (
        Counter((o.status, o.reason) for o in dialer.outcomes)
    )

    # One decision per call; its action matches what the dialer got.
    outcome_by_call = dialer.by_call()
    lines = decisions(gw)
    assert sorted(str(line["call_id"]) for line in lines) == sorted(outcome_by_call)
    at_trunk = set(invites_by_call(trunk))
    timeline: list[tuple[float, str, str, str]] = []  # (real time, category, action, call)
    for line in lines:
        o = outcome_by_call[str(line["call_id"])]
        action = str(line["decision"])
        assert (action, o.status) in (("allow", 200), ("block", 603)), (line, o)
        assert (o.call_id in at_trunk) == (action == "allow"), (line, o)
        timeline.append((clock.real(str(line["ts"])), category[o.dialled], action, o.call_id))
    timeline.sort()

    def version(cat: str, action: str) -> str | None:
        """Which list a decision shows: 'old' or 'new' (None: the same on both)."""
        if cat == "old-only":
            return "old" if action == "block" else "new"
        if cat == "new-only":
            return "new" if action == "block" else "old"
        return None

    seen = []
    for when, cat, action, call_id in timeline:
        if cat == "both":
            assert action == "block", f"{call_id}: on both lists but allowed"
        elif cat == "neither":
            assert action == "allow", f"{call_id}: on no list (the killed import's) but blocked"
        else:
            v = version(cat, action)
            if when < t_replace:
                assert v == "old", f"{call_id} decided on the new list before the import began"
            if when > t_replaced:
                assert v == "new", (
                    f"{call_id} ({cat}) decided on the old list {when - t_replaced:.3f} s after "
                    "the import returned"
                )
            seen.append(v)
    switches = sum(1 for a, b in itertools.pairwise(seen) if a != b)
    assert switches == 1, f"decisions went back and forth between the lists ({switches})"

    # Traffic really flowed in each phase (otherwise the checks above prove nothing).
    def between(a: float, b: float) -> int:
        return sum(1 for t, *_ in timeline if a < t < b)

    phases = {
        "before the replace": between(0, t_replace),
        "during the replace": between(t_replace, t_replaced),
        "after it": between(t_replaced, t_doomed),
        "during the killed import": between(t_doomed, t_killed),
        "after the kill": between(t_killed, float("inf")),
    }
    assert all(v >= 10 for v in phases.values()), phases


# --------------------------------------------------------------------------- 3. consent


def test_consent_revoke_and_grant_decide_the_next_call(
    start_gateway, sipp, clock, tmp_path
) -> None:
    rng = random.Random(5)
    revoked, granted = us_numbers(rng, 2, OTHER_NPAS, set())
    uas, gw = start_trunk_and_gateway(sipp, start_gateway, clock, {
        "campaigns": {
            "default": {"purpose": "telemarketing", "lists": ALL_LISTS},
            "optin": {"purpose": "telemarketing", "lists": ALL_LISTS, "require_consent": True},
        },
        "store": {"poll_interval": 30.0},  # only the control socket can be this quick
    })
    sipp_dir = tmp_path / "sipp"
    cli(gw, "consent", "grant", revoked, "--campaign", "optin", "--type", "express-written",
        "--source", "web form 1")

    first = call_through(sipp, gw, sipp_dir, "uac1", [(revoked, "optin"), (granted, "optin")])
    cli(gw, "consent", "revoke", revoked, "--campaign", "optin", "--source", "IVR opt-out")
    second = call_through(sipp, gw, sipp_dir, "uac2", [(revoked, "optin")])
    cli(gw, "consent", "grant", granted, "--campaign", "optin", "--type", "express",
        "--source", "agent call 7")
    third = call_through(sipp, gw, sipp_dir, "uac3", [(granted, "optin")])
    time.sleep(0.3)
    trunk = uas.stop()

    got = []
    for d in (first, second, third):
        assert_no_failed_call(d)
        got += [(o.dialled, o.status, o.reason) for o in d.outcomes]
    assert got == [
        (revoked, 200, ""), (granted, 603, "no-consent"),
        (revoked, 603, "consent-revoked"),
        (granted, 200, ""),
    ]
    assert sorted(answered_numbers(trunk).elements()) == sorted([revoked, granted])
    reasons = [(line["decision"], line["reason"]) for line in decisions(gw)]
    assert reasons == [("allow", "consent"), ("block", "no-consent"),
                       ("block", "consent-revoked"), ("allow", "consent")]
