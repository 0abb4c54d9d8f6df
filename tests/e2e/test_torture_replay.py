"""The SIP torture corpus replayed at a running gateway over real UDP, inside a network
namespace (H6).

The corpus names public addresses and hosts (192.0.2.x, *.example.com, 2001:db8::), so
the gateway runs in a private network namespace with only `lo`: whatever it sends there
cannot leave the machine. Inside it a small client (this file, run as a script) plays the
dialers on 127.0.0.1 (the ports the corpus Vias name, where `received` sends the answers)
and a trunk that answers what is forwarded (486 to INVITE, 200 otherwise).

For each message: a valid request gets an answer other than 400 or is forwarded; an
invalid one gets 400 (or the status its error carries) or is dropped, and is never
forwarded (RFC 4475 §3.1.2.15: a proxy "must not propagate the error"), except where the
RFC lets a proxy go on; after each message an OPTIONS to the gateway itself is answered
200. Needs root and iproute2; skipped otherwise.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

try:  # the harness of tests/e2e (H5); absent when this file runs as the in-namespace client
    from e2e.harness import Gateway, Trunk
except ImportError:  # pragma: no cover
    Gateway = Trunk = None  # type: ignore[assignment,misc]

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "sip-torture"
GATEWAY_PORT = 15060
TRUNK_PORT = 15080
# Ports the corpus Vias name (5060 by default): the gateway answers to received=127.0.0.1
# at the sent-by port (RFC 3261 §18.2.2), or to the source port with rport (RFC 3581).
DIALER_PORTS = (5060, 5050, 5070, 6050, 19823)
WAIT = 1.2  # seconds to wait for a final answer to one message

# Statuses other than 400 an invalid message may get (RFC 4475 text).
STATUS = {
    "badvers": {505},  # §3.1.2.16
    "mismatch02": {400, 501},  # §3.1.2.18: 501 preferred, 400 acceptable
}
# Invalid messages a proxy may forward, with the RFC's reason.
MAY_FORWARD = {
    "baddate": "RFC 4475 §3.1.2.12: an element that does not use Date may ignore it",
}

pytestmark = pytest.mark.e2e

CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
CSEQ_METHOD = re.compile(rb"^cseq[ \t]*:[ \t]*\d+[ \t]+(\S+)", re.IGNORECASE | re.MULTILINE)


def call_id(data: bytes) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0]
    match = CALL_ID.search(head)
    return match.group(1).decode("utf-8", "replace") if match else None


# --------------------------------------------------------------------------- the client


def options(port: int, source_port: int, cid: str) -> bytes:
    tag = uuid.uuid4().hex[:8]
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{source_port};branch=z9hG4bK{tag};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@127.0.0.1>;tag={tag}\r\n"
        f"To: <sip:127.0.0.1:{port}>\r\n"
        f"Call-ID: {cid}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def ping(gateway: tuple[str, int], timeout: float) -> int | None:
    """OPTIONS to the gateway itself; the final status, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        cid = f"ping-{uuid.uuid4().hex}"
        sock.sendto(options(gateway[1], sock.getsockname()[1], cid), gateway)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            if call_id(data) == cid and data.startswith(b"SIP/2.0 "):
                status = int(data[8:11])
                if status >= 200:
                    return status
    return None


def trunk_answer(data: bytes) -> bytes | None:
    """The fake trunk's answer to a forwarded request (built with sipguard's own parser)."""
    from sipguard.errors import ProtocolError  # noqa: PLC0415  (client side only)
    from sipguard.sip.message import Request, make_response  # noqa: PLC0415
    from sipguard.sip.parser import parse_message  # noqa: PLC0415

    try:
        msg = parse_message(data)
    except ProtocolError:
        return None
    if not isinstance(msg, Request) or msg.method == "ACK":
        return None
    status = 486 if msg.method == "INVITE" else 200
    return make_response(msg, status, to_tag="trunk1").serialize()


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    gateway = ("127.0.0.1", spec["gateway_port"])
    deadline = time.monotonic() + 20.0
    while (ready := ping(gateway, 0.3)) != 200:
        if time.monotonic() > deadline:
            return {"error": f"gateway never answered OPTIONS with 200 (last: {ready})"}
        time.sleep(0.2)
    dialers = {}
    for port in spec["dialer_ports"]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        dialers[sock] = port
    trunk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trunk.bind(("127.0.0.1", spec["trunk_port"]))
    sender = next(s for s, p in dialers.items() if p == 5060)
    results = []
    for item in spec["messages"]:
        data = base64.b64decode(item["data"])
        cid = call_id(data)
        answers: list[int] = []
        forwarded: list[str] = []
        sender.sendto(data, gateway)
        end = time.monotonic() + spec["wait"]
        while (left := end - time.monotonic()) > 0:
            ready_socks, _, _ = select.select([*dialers, trunk], [], [], left)
            for sock in ready_socks:
                got, addr = sock.recvfrom(65535)
                if call_id(got) != cid:
                    continue  # a late retransmission for an earlier message
                if sock is trunk:
                    forwarded.append(got.split(b" ", 1)[0].decode("utf-8", "replace"))
                    answer = trunk_answer(got)
                    if answer is not None:
                        trunk.sendto(answer, addr)
                elif got.startswith(b"SIP/2.0 "):
                    answers.append(int(got[8:11]))
            if any(a >= 200 for a in answers):
                end = min(end, time.monotonic() + 0.05)
        results.append({
            "name": item["name"], "answers": answers, "forwarded": forwarded,
            "ping": ping(gateway, 2.0),
        })
    return {"results": results}


# --------------------------------------------------------------------------- the test


def rows() -> list[dict[str, str]]:
    with (CORPUS / "manifest.tsv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)


@pytest.fixture(scope="module")
def netns() -> Any:
    if not (CORPUS / "manifest.tsv").is_file():
        pytest.skip(f"torture corpus not found at {CORPUS}")
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` to create a network namespace")
    name = f"sipguard-h6-{os.getpid()}"
    made = sh("ip", "netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        up = sh("ip", "-n", name, "link", "set", "lo", "up")
        assert up.returncode == 0, up.stderr
        yield name
    finally:
        sh("ip", "netns", "del", name)


def start_gateway(ns: str, workdir: Path) -> Any:
    if Gateway is None:
        pytest.skip("tests/e2e/harness.py (Gateway) is not importable")
    gw = Gateway(
        workdir, [Trunk(TRUNK_PORT)],
        sip={"listen": [f"udp:127.0.0.1:{GATEWAY_PORT}", f"tcp:127.0.0.1:{GATEWAY_PORT}"]},
    )
    gw.port = GATEWAY_PORT
    gw.config_path.write_text(_toml(gw))
    with gw.stdout_path.open("wb") as out, gw.stderr_path.open("wb") as err:
        gw.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "sipguard", "serve",
             "-c", str(gw.config_path)],
            cwd=workdir, env=gw.env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True,
        )
    return gw


def _toml(gw: Any) -> str:
    from e2e.harness import to_toml  # noqa: PLC0415  (only reached when the harness is there)

    return to_toml(gw.config)


def judge(row: dict[str, str], result: dict[str, Any]) -> str | None:
    """None if the gateway's behaviour is acceptable for this message, else why not."""
    name, verdict = row["short_name"], row["verdict"]
    answers, forwarded = result["answers"], result["forwarded"]
    finals = [a for a in answers if a >= 200]
    if result["ping"] != 200:
        return f"gateway stopped answering OPTIONS after it (got {result['ping']})"
    if row["method_or_response"].startswith("response"):
        # A response from a source that is no trunk is dropped (issue 2), never answered.
        return f"a response was answered with {answers}" if answers else None
    if verdict == "valid":
        if 400 in finals:
            return f"valid request answered 400 ({answers})"
        if not finals and not forwarded:
            return "valid request neither answered nor forwarded"
        return None
    if forwarded and name not in MAY_FORWARD:
        return f"invalid request forwarded to the trunk ({forwarded})"
    allowed = STATUS.get(name, {400})
    if name in MAY_FORWARD:
        return None
    wrong = [a for a in finals if a not in allowed]
    return f"invalid request answered {wrong}, expected {sorted(allowed)} or nothing" if wrong \
        else None


def transaction_key(data: bytes) -> tuple[bytes | None, ...]:
    """RFC 3261 §17.2.3 server-transaction key of a raw message: top Via branch and sent-by,
    and the CSeq method. Read with regexes: invalid messages have one too."""
    head = re.sub(rb"\r\n[ \t]+", b" ", data.split(b"\r\n\r\n", 1)[0])
    via = re.search(rb"^(?:via|v)[ \t]*:([^\r\n]*)", head, re.IGNORECASE | re.MULTILINE)
    text = via.group(1) if via else b""
    branch = re.search(rb"branch[ \t]*=[ \t]*([^;, \t]+)", text, re.IGNORECASE)
    sent_by = re.search(rb"/[ \t]*[A-Za-z]+[ \t]+([^;, \t]+)", text)
    method = CSEQ_METHOD.search(head)
    return (branch and branch.group(1), sent_by and sent_by.group(1).lower(),
            method and method.group(1))


def rounds(manifest: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """Split the corpus so that no round holds two messages of one transaction key.

    The RFC 4475 / 5118 authors reused branches: cparam01 and cparam02 (or escnull and
    regescrt, unkscm and novelsc, the four RFC 5118 REGISTERs) share branch, sent-by and
    method, so a conformant gateway takes the second for a retransmission of the first
    (RFC 3261 §17.2.3) and re-sends the first one's answer. Each round gets a fresh gateway.
    """
    seen: dict[tuple[bytes | None, ...], int] = {}
    out: list[list[dict[str, str]]] = []
    for row in manifest:
        key = transaction_key((CORPUS / row["file"]).read_bytes())
        index = seen[key] = seen.get(key, -1) + 1
        while len(out) <= index:
            out.append([])
        out[index].append(row)
    return out


def replay(ns: str, workdir: Path, batch: list[dict[str, str]]) -> dict[str, Any]:
    gw = start_gateway(ns, workdir)
    try:
        spec = {
            "gateway_port": GATEWAY_PORT, "trunk_port": TRUNK_PORT,
            "dialer_ports": list(DIALER_PORTS), "wait": WAIT,
            "messages": [
                {"name": r["short_name"],
                 "data": base64.b64encode((CORPUS / r["file"]).read_bytes()).decode()}
                for r in batch
            ],
        }
        client = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).resolve())],
            input=json.dumps(spec), capture_output=True, text=True, check=False, timeout=300,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert client.returncode == 0, client.stderr[-3000:]
        report = json.loads(client.stdout)
        assert "error" not in report, report.get("error", "") + "\n" + gw.output()[-3000:]
        assert gw.alive(), "the gateway died:\n" + gw.output()[-3000:]
        assert "Traceback" not in gw.output(), gw.output()[-5000:]
        return {r["name"]: r for r in report["results"]}
    finally:
        gw.stop()


def test_rounds_separate_reused_transaction_keys() -> None:
    if not (CORPUS / "manifest.tsv").is_file():
        pytest.skip(f"torture corpus not found at {CORPUS}")
    batches = rounds(rows())
    names = [[r["short_name"] for r in b] for b in batches]
    assert sum(map(len, names)) == 61
    for pair in (("cparam01", "cparam02"), ("escnull", "regescrt"), ("unkscm", "novelsc")):
        assert not any(set(pair) <= set(batch) for batch in names), pair


@pytest.fixture(scope="module")
def replayed(netns: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every corpus message through a gateway in the namespace: name -> what came of it."""
    tmp = tmp_path_factory.mktemp("torture-replay")
    results: dict[str, Any] = {}
    for number, batch in enumerate(rounds(rows())):
        results.update(replay(netns, tmp / f"gateway{number}", batch))
    return results


def test_torture_replay_over_udp(replayed: dict[str, Any]) -> None:
    manifest = rows()
    assert len(replayed) == len(manifest)
    problems = {}
    for row in manifest:
        r = replayed[row["short_name"]]
        why = judge(row, r)
        if why:
            problems[row["short_name"]] = f"{why}; saw {r}"
        # the table, for -s runs
        print(f"{row['short_name']:30} {row['verdict']:8} answers={r['answers']} "
              f"forwarded={r['forwarded']} ping={r['ping']}")
    assert problems == {}


# What RFC 3261 §16.3 (request validation by a proxy) and RFC 4475 ask of these messages.
PROXY_ANSWERS = {
    "zeromf": ({483}, "§16.3 step 3 / RFC 4475 §3.3.11: Max-Forwards 0 -> 483"),
    "bext01": ({420}, "§16.3 step 5 / RFC 4475 §3.3.5: unknown Proxy-Require -> 420"),
    "unkscm": ({416}, "§16.3 step 2 / RFC 4475 §3.3.2: unknown URI scheme -> 416"),
    "novelsc": ({416, 404}, "§16.3 step 2 / RFC 4475 §3.3.3: soap.beep: -> 416 (or 404)"),
}


@pytest.mark.parametrize("name", sorted(PROXY_ANSWERS))
def test_proxy_validation_answers(replayed: dict[str, Any], name: str) -> None:
    expected, why = PROXY_ANSWERS[name]
    r = replayed[name]
    finals = [a for a in r["answers"] if a >= 200]
    ok = bool(finals) and finals[0] in expected and r["forwarded"] == []
    assert ok, f"{why}; saw {r}"


if __name__ == "__main__":  # the client half, run inside the namespace by the test above
    print(json.dumps(run_client(json.load(sys.stdin))))
