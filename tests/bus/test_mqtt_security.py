"""How the bus proves who it talks to and who it is, against a real Mosquitto.

`mqtts://`: with the CA of `tls_ca_file` it connects to a broker that speaks only TLS; with
the system's CAs, which did not sign the broker's certificate, it does not (and says why).
A broker that requires a client certificate takes `tls_cert_file`/`tls_key_file` (an
encrypted key's passphrase from the environment). A broker with a password file takes
`username` and the password from SIPGUARD_MQTT_PASSWORD, and refuses a wrong one."""

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
from sipguard.bus.mqtt import PASSWORD_ENV
from sipguard.bus.tls import TLS_KEY_PASSWORD_ENV
from sipguard.config import parse_config
from sipguard.errors import ConfigError
from sipguard.store.index import Index


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(params=["server-only"])
def tls_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
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
    client_ca = pki / "ca.pem" if request.param == "client-certificate" else None
    broker = Mosquitto(tmp_path / "mosquitto", tls=(pki / "broker.pem", pki / "broker.key"),
                       client_ca=client_ca)
    broker.start()
    yield broker, pki
    broker.stop()
    outside.cleanup()


def client_certificate(pki: Path, passphrase: str | None = None) -> tuple[Path, Path]:
    """A certificate for this gateway, signed by the test CA, and its key (encrypted with
    `passphrase` when one is given)."""
    key = ["-passout", f"pass:{passphrase}"] if passphrase else ["-nodes"]
    openssl("req", "-newkey", "rsa:2048", *key, "-subj", "/CN=gw1", "-keyout", "client.key",
            "-out", "client.csr", cwd=pki)
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", "client.pem", cwd=pki)
    return pki / "client.pem", pki / "client.key"


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    warning = error = info


async def _run_until(bus: Any, log: _Log, event: str, seconds: float = 5) -> dict[str, Any]:
    bus._log = log
    task = asyncio.create_task(bus.run())
    try:
        for _ in range(int(seconds / 0.02)):
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
    broker, pki = tls_broker
    assert broker.url.startswith("mqtts://")
    config = parse_config({"mqtt": {"enabled": True, "url": broker.url,
                                    "tls_ca_file": str(pki / "ca.pem")}}, str(tmp_path))
    connected = await _run_until(mqtt_bus(config, None, Index(), None),  # type: ignore[arg-type]
                                 _Log(), "mqtt.connected")
    assert connected["broker"] == broker.url


async def test_a_broker_the_system_s_cas_did_not_sign_is_refused(tls_broker: Any,
                                                                 tmp_path: Path) -> None:
    broker, _pki = tls_broker
    config = parse_config({"mqtt": {"enabled": True, "url": broker.url}}, str(tmp_path))
    refused = await _run_until(mqtt_bus(config, None, Index(), None),  # type: ignore[arg-type]
                               _Log(), "mqtt.unreachable")
    assert "certificate verify failed" in refused["detail"], refused


CLIENT_CERTIFICATE = pytest.mark.parametrize("tls_broker", ["client-certificate"],
                                             indirect=True)


@CLIENT_CERTIFICATE
@pytest.mark.parametrize("passphrase", [None, "pass phrase 7"])
async def test_a_broker_that_requires_a_client_certificate_gets_ours(
    tls_broker: Any, tmp_path: Path, passphrase: str | None
) -> None:
    broker, pki = tls_broker
    cert, key = client_certificate(pki, passphrase)
    config = parse_config({"mqtt": {"enabled": True, "url": broker.url,
                                    "tls_ca_file": str(pki / "ca.pem"),
                                    "tls_cert_file": str(cert), "tls_key_file": str(key)}},
                          str(tmp_path))
    environ = {TLS_KEY_PASSWORD_ENV: passphrase} if passphrase else {}
    connected = await _run_until(
        mqtt_bus(config, None, Index(), None, environ),  # type: ignore[arg-type]
        _Log(), "mqtt.connected")
    assert connected["broker"] == broker.url


@CLIENT_CERTIFICATE
async def test_without_a_client_certificate_that_broker_refuses_us(tls_broker: Any,
                                                                    tmp_path: Path) -> None:
    broker, pki = tls_broker
    config = parse_config({"mqtt": {"enabled": True, "url": broker.url,
                                    "tls_ca_file": str(pki / "ca.pem")}}, str(tmp_path))
    # TLS 1.3: our side of the handshake ends before the broker's alert that it wanted a
    # certificate; the connection then fails while waiting for the CONNACK
    refused = await _run_until(mqtt_bus(config, None, Index(), None),  # type: ignore[arg-type]
                               _Log(), "mqtt.unreachable", seconds=20)
    assert "certificate required" in refused["detail"], refused


@CLIENT_CERTIFICATE
async def test_an_encrypted_key_without_its_passphrase_is_a_config_error(
    tls_broker: Any, tmp_path: Path
) -> None:
    broker, pki = tls_broker
    cert, key = client_certificate(pki, "the right one")
    config = parse_config({"mqtt": {"enabled": True, "url": broker.url,
                                    "tls_cert_file": str(cert), "tls_key_file": str(key)}},
                          str(tmp_path))
    for environ in ({}, {TLS_KEY_PASSWORD_ENV: "a wrong one"}):
        with pytest.raises(ConfigError) as caught:
            mqtt_bus(config, None, Index(), None, environ)  # type: ignore[arg-type]
        assert caught.value.key == "mqtt.tls_cert_file"


@pytest.fixture
def password_broker(tmp_path: Path) -> Any:
    broker = Mosquitto(tmp_path / "mosquitto", users={"gw1": "correct horse"})
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.parametrize(("password", "event"), [
    ("correct horse", "mqtt.connected"),
    ("wrong horse", "mqtt.unreachable"),
    (None, "mqtt.unreachable"),
])
async def test_the_password_comes_from_the_environment(
    password_broker: Any, tmp_path: Path, password: str | None, event: str
) -> None:
    config = parse_config({"mqtt": {"enabled": True, "url": password_broker.url,
                                    "username": "gw1"}}, str(tmp_path))
    environ = {} if password is None else {PASSWORD_ENV: password}
    found = await _run_until(
        mqtt_bus(config, None, Index(), None, environ),  # type: ignore[arg-type]
        _Log(), event)
    if event == "mqtt.unreachable":
        assert "authori" in found["detail"].lower() or "password" in found["detail"].lower(), found
