"""The harness itself: message-log parsing, config writing, ports and the MQTT broker."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest

from e2e.harness import Gateway, Trunk, free_port, parse_message_log, to_toml
from sipguard.config import parse_config

TRACE = (
    "----------------------------------------------- 2026-11-29 02:29:06.459331\n"
    "UDP message received [300] bytes :\n\n"
    "INVITE sip:+1@127.0.0.1:5080 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa;rport, "
    "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKb\r\n"
    "Call-ID: c1\r\nCSeq: 1 INVITE\r\n"
    'Proxy-Authorization: Digest username="u", realm="r", nonce="n", uri="sip:x", response="y"\r\n'
    "Content-Length: 4\r\n\r\nv=0\n\n"
    "UDP message lost (recv).-----------------------------------------------"
    " 2026-11-29 02:29:06.5\n"
    "TCP message sent (100 bytes):\n\n"
    "SIP/2.0 180 Ringing\r\nv: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKa\r\ni: c1\r\n"
    "CSeq: 1 INVITE\r\nl: 0\r\n\r\n"
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKa\r\nCall-ID: c1\r\n"
    "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n\n"
    "UDP message voluntary lost (while sending).----------------------------------------------- "
    "2026-11-29 02:29:07.0\n"
    "UDP message received [10] bytes :\n\n"
    "BYE sip:a@b SIP/2.0\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n\n"
    "-----------------------------------------------\n"
    "Unexpected UDP message received:\n\n"
    "BYE sip:a@b SIP/2.0\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n\n"
)


def test_message_log_parsing(tmp_path: Path) -> None:
    path = tmp_path / "msg.log"
    path.write_text(TRACE)
    msgs = parse_message_log(path)
    assert [(m.direction, m.start_line.split()[0], m.lost) for m in msgs] == [
        ("received", "INVITE", True),
        ("sent", "SIP/2.0", False),
        ("sent", "SIP/2.0", False),
        ("received", "BYE", False),
    ]
    invite, ringing, ok, bye = msgs
    assert invite.vias == ["SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa;rport",
                           "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKb"]
    assert invite.header("Proxy-Authorization").endswith('response="y"')
    assert invite.body.strip() == "v=0"
    assert ringing.status == 180 and ringing.method == "INVITE" and ringing.call_id == "c1"
    assert ringing.transport == "TCP" and ok.status == 200
    assert bye.method == "BYE"


def test_config_written_is_valid_for_sipguard(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, [Trunk(5080), Trunk(5090, "tcp", priority=2)],
                 allow=["127.0.0.1/32"], sip={"failover_timeout": 0.5},
                 overrides={"policy": {"block_response": {"code": 608, "reason": "Rejected"}},
                            "campaigns": {"default": {"require_consent": False}}})
    config = parse_config(tomllib.loads(to_toml(gw.config)), str(tmp_path))
    assert config.sip.failover_timeout == 0.5
    assert [t.uri for t in config.trunks] == ["sip:127.0.0.1:5080;transport=udp",
                                             "sip:127.0.0.1:5090;transport=tcp"]
    assert config.dialers.allow == ("127.0.0.1/32",)
    assert config.policy.block_response.code == 608
    assert config.sip.listen == (f"udp:127.0.0.1:{gw.port}", f"tcp:127.0.0.1:{gw.port}")


def test_free_ports_are_distinct() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20


@pytest.mark.e2e
async def test_mosquitto_fixture(mosquitto) -> None:
    aiomqtt = pytest.importorskip("aiomqtt")
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.subscribe("e2e/#", qos=1)
        await client.publish("e2e/ping", b"pong", qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert message.payload == b"pong"
                break
