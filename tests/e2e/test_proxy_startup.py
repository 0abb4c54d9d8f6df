"""sipguard starting: datagrams that arrive while it is still opening its sockets must not
crash their handler (no traceback) nor kill the gateway; and a start it cannot complete (a
port in use, a log file it cannot open, a trunk name that does not resolve) is one clear
line on stderr naming the config key, a non-zero exit, and nothing left open."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from e2e.checks import PROXY_ONLY
from e2e.harness import HOST, Gateway, Trunk, free_port
from sipguard.app import Gateway as InProcessGateway
from sipguard.config import Config, SipConfig
from sipguard.errors import ConfigError

pytestmark = pytest.mark.e2e


def test_datagrams_during_startup_are_handled(tmp_path: Path) -> None:
    extra_tcp = [f"tcp:{HOST}:{free_port()}" for _ in range(6)]  # more awaits while starting
    gw = Gateway(tmp_path / "gw", [Trunk(free_port())], overrides=PROXY_ONLY)
    gw.config["sip"]["listen"] = [*gw.config["sip"]["listen"], *extra_tcp]
    stop = threading.Event()
    answered = []

    def blast() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST, 0))
            sock.setblocking(False)
            lport = sock.getsockname()[1]
            n = 0
            while not stop.is_set():
                n += 1
                msg = (
                    f"OPTIONS sip:{HOST}:{gw.port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {HOST}:{lport};branch=z9hG4bKstart{n}\r\n"
                    f"Max-Forwards: 70\r\nFrom: <sip:probe@{HOST}>;tag=s{n}\r\n"
                    f"To: <sip:{HOST}:{gw.port}>\r\nCall-ID: start-{n}@{HOST}\r\n"
                    f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ).encode()
                try:
                    sock.sendto(msg, (HOST, gw.port))
                    while True:
                        answered.append(sock.recv(65535))
                except (BlockingIOError, ConnectionRefusedError):
                    pass
                time.sleep(0.0005)

    thread = threading.Thread(target=blast, daemon=True)
    thread.start()
    try:
        gw.spawn().wait_ready(15)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join(5)
        gw.stop()
    assert answered, "sipguard never answered"
    assert "Traceback" not in gw.output(), gw.output()[-3000:]
    assert gw.exit_code == 0, gw.output()[-3000:]


def refusal(gw: Gateway) -> str:
    """Run `gw` to its exit; the one line it wrote on stderr (checked: exit code 2, the
    code of a config error, and no traceback anywhere)."""
    gw.spawn()
    assert gw.proc is not None
    try:
        code = gw.proc.wait(timeout=30)
    finally:
        gw.stop()
    err = gw.stderr_path.read_text()
    assert "Traceback" not in gw.output(), gw.output()[-3000:]
    assert code == 2, gw.output()[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(("kind", "index"), [(socket.SOCK_DGRAM, 0), (socket.SOCK_STREAM, 1)])
def test_a_listen_port_in_use_is_one_clear_line(tmp_path: Path, kind: int, index: int) -> None:
    gw = Gateway(tmp_path / "gw", [Trunk(free_port())], overrides=PROXY_ONLY)
    transport = "udp" if kind == socket.SOCK_DGRAM else "tcp"
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind((HOST, gw.port))  # what sip.listen[index] names
        if kind == socket.SOCK_STREAM:
            taken.listen()
        line = refusal(gw)
    assert gw.config["sip"]["listen"][index] == f"{transport}:{HOST}:{gw.port}"
    assert line == (f"config error: sip.listen[{index}]: cannot listen on "
                    f"'{transport}:{HOST}:{gw.port}': Address already in use")


def test_a_log_file_that_cannot_be_opened_is_one_clear_line(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("a file where a directory should be\n")
    gw = Gateway(tmp_path / "gw", [Trunk(free_port())],
                 overrides={"log": {"file": str(plain / "sipguard.log")}})
    assert refusal(gw) == (f"config error: log.file: cannot open "
                           f"'{plain / 'sipguard.log'}': Not a directory: {plain}")


def test_a_trunk_name_that_does_not_resolve_is_one_clear_line(tmp_path: Path) -> None:
    # RFC 6761 §6.4: a name under .invalid never resolves, wherever this runs
    gw = Gateway(tmp_path / "gw", [Trunk(5060, host="trunk.invalid")], overrides=PROXY_ONLY)
    line = refusal(gw)
    assert line.startswith("config error: trunks[0].uri: cannot resolve 'trunk.invalid': "), line


def test_a_second_server_on_the_same_store_is_one_clear_line(tmp_path: Path) -> None:
    """Two servers on one store would fork its decisions chain: the second is refused
    before it opens a SIP socket, even with a control socket of its own (which alone let
    it through), and the first serves on. Once the first is killed, a server starts."""
    first = Gateway(tmp_path / "gw1", [Trunk(free_port())], overrides=PROXY_ONLY).start()
    store = first.config["store"]["path"]
    try:
        second = Gateway(tmp_path / "gw2", [Trunk(free_port())], overrides={
            **PROXY_ONLY, "store": {"path": store,
                                    "control_socket": str(tmp_path / "gw2" / "own.sock")}})
        assert first.proc is not None
        assert refusal(second) == (
            f"config error: store.path: another sipguard serve (pid {first.proc.pid}) uses "
            f"the store '{store}'; two servers on one store would fork its decisions chain")
        assert not [e for e in second.events() if e["event"] == "sipguard.listening"]
        first.wait_ready(5)  # still answering OPTIONS
        os.killpg(first.proc.pid, signal.SIGKILL)  # no cleanup: the kernel drops the lock
        first.proc.wait(10)
        third = Gateway(tmp_path / "gw3", [Trunk(free_port())],
                        overrides={**PROXY_ONLY, "store": {"path": store}}).start()
        third.stop()
        assert third.exit_code == 0, third.output()[-3000:]
    finally:
        first.stop()


Runner = Callable[[Coroutine[Any, Any, None]], None]


def test_the_start_line_says_which_build_serves(tmp_path: Path) -> None:
    # scripts/test.sh runs the suite on the plain package, then again on the mypyc build
    # with SIPGUARD_TEST_CORE=compiled: an operator must be able to tell them apart.
    expected = os.environ.get("SIPGUARD_TEST_CORE", "interpreted")
    gw = Gateway(tmp_path / "gw", [Trunk(free_port())], overrides=PROXY_ONLY).start()
    try:
        listening = [e for e in gw.events() if e["event"] == "sipguard.listening"]
    finally:
        gw.stop()
    assert [e["core"] for e in listening] == [expected]


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_a_start_that_fails_leaves_no_socket_open(run: Runner) -> None:
    """sip.listen[1] (TCP) is taken, so sip.listen[0] (UDP, opened first) must be closed
    again: the port can be bound once the gateway has given up."""
    port = free_port()
    config = Config(sip=SipConfig(listen=(f"udp:{HOST}:{port}", f"tcp:{HOST}:{port}")))

    async def start() -> None:
        gateway = InProcessGateway(config)
        with pytest.raises(ConfigError) as refused:
            await gateway.start()
        assert refused.value.key == "sip.listen[1]"
        for _ in range(3):  # a transport closes its socket on the next loop iteration
            await asyncio.sleep(0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind((HOST, port))

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, port))
        taken.listen()
        run(start())
