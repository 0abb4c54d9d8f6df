"""`mqtts://`: the bus reaches a Mosquitto that speaks only TLS, and verifies it: with the CA
of `tls_ca_file` it connects; with the system's CAs, which did not sign the broker's
certificate, it does not (and says why)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from e2e.harness import Mosquitto
from sipguard.app import mqtt_bus
from sipguard.config import parse_config
from sipguard.store.index import Index


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Any:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed (Debian/Ubuntu: apt-get install openssl)")
    # Not under tmp_path: pytest makes it 0700, and mosquitto started as root reads its
    # certificate as the `mosquitto` user.
    outside = tempfile.TemporaryDirectory(prefix="sipguard-pki-")
    pki = Path(outside.name)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=pki)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "broker.key", "-out", "broker.csr", cwd=pki)
    (pki / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "broker.pem",
            cwd=pki)
    for readable in (pki, pki / "broker.pem", pki / "broker.key"):
        readable.chmod(0o755 if readable.is_dir() else 0o644)
    broker = Mosquitto(tmp_path / "mosquitto", tls=(pki / "broker.pem", pki / "broker.key"))
    broker.start()
    yield broker, pki / "ca.pem"
    broker.stop()
    outside.cleanup()


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    warning = error = info


async def _run_until(bus: Any, log: _Log, event: str) -> dict[str, Any]:
    bus._log = log
    task = asyncio.create_task(bus.run())
    try:
        for _ in range(250):
            found = [fields for name, fields in log.events if name == event]
            if found:
                return found[0]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {event}: {log.events}")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_bus_connects_over_tls_with_the_broker_s_ca(tls_broker: Any,
                                                              tmp_path: Path) -> None:
    broker, ca = tls_broker
    assert broker.url.startswith("mqtts://")
    config = parse_config({"mqtt": {"enabled": True, "url": broker.url,
                                    "tls_ca_file": str(ca)}}, str(tmp_path))
    connected = await _run_until(mqtt_bus(config, None, Index(), None),  # type: ignore[arg-type]
                                 _Log(), "mqtt.connected")
    assert connected["broker"] == broker.url


async def test_a_broker_the_system_s_cas_did_not_sign_is_refused(tls_broker: Any,
                                                                 tmp_path: Path) -> None:
    broker, _ca = tls_broker
    config = parse_config({"mqtt": {"enabled": True, "url": broker.url}}, str(tmp_path))
    refused = await _run_until(mqtt_bus(config, None, Index(), None),  # type: ignore[arg-type]
                               _Log(), "mqtt.unreachable")
    assert "certificate verify failed" in refused["detail"], refused
