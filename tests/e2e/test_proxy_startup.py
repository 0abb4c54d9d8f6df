"""sipguard restarted under traffic: datagrams that arrive while it is still opening its
sockets must not crash their handler (no traceback) and must not kill the gateway."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from e2e.checks import PROXY_ONLY
from e2e.harness import HOST, Gateway, Trunk, free_port

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
