"""`[mqtt]` settings: what cannot work is refused at load, naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipguard.app import mqtt_bus
from sipguard.config import parse_config
from sipguard.errors import ConfigError
from sipguard.store.index import Index


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"mqtt": {"enabled": True, "url": "http://broker"}}, "mqtt.url"),
        ({"mqtt": {"enabled": True, "url": "mqtt://broker:99999"}}, "mqtt.url"),
        ({"mqtt": {"enabled": True, "url": "mqtt://"}}, "mqtt.url"),
        ({"mqtt": {"enabled": True, "topic_prefix": "acme/#"}}, "mqtt.topic_prefix"),
        ({"mqtt": {"enabled": True, "topic_prefix": "acme//sg"}}, "mqtt.topic_prefix"),
        ({"mqtt": {"enabled": True}, "node": {"name": "gw/1"}}, "node.name"),
        ({"mqtt": {"enabled": True, "queue_size": 0}}, "mqtt.queue_size"),
        ({"mqtt": {"enabled": True, "keepalive": 1}}, "mqtt.keepalive"),
        ({"mqtt": {"enabled": True, "decisions_qos": 2}}, "mqtt.decisions_qos"),
        ({"mqtt": {"enabled": True, "tls_ca_file": "ca.pem"}}, "mqtt.tls_ca_file"),
        ({"mqtt": {"enabled": True, "tls_cert_file": "gw.pem"}}, "mqtt.tls_cert_file"),
        ({"mqtt": {"enabled": True, "url": "mqtts://b", "tls_key_file": "gw.key"}},
         "mqtt.tls_key_file"),
        ({"mqtt": {"enabled": True, "url": "mqtts://b", "tls_cert_file": "missing.pem"}},
         "mqtt.tls_cert_file"),
    ],
)
def test_mqtt_settings_that_cannot_work_name_their_key(
    table: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(table)
    assert caught.value.key == key


def test_the_broker_is_read_off_the_url_with_the_scheme_s_port() -> None:
    def broker(url: str) -> tuple[bool, str, int]:
        return parse_config({"mqtt": {"enabled": True, "url": url}}).mqtt.broker()

    assert broker("mqtt://10.0.0.5") == (False, "10.0.0.5", 1883)
    assert broker("mqtts://broker.example") == (True, "broker.example", 8883)
    assert broker("mqtt://[::1]:1884/") == (False, "::1", 1884)


def test_a_ca_file_that_is_missing_or_no_certificate_names_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"mqtt": {"enabled": True, "url": "mqtts://b", "tls_ca_file": "no.pem"}},
                     str(tmp_path))
    assert caught.value.key == "mqtt.tls_ca_file" and "is not a file" in str(caught.value)
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    config = parse_config({"mqtt": {"enabled": True, "url": "mqtts://broker.example",
                                    "tls_ca_file": "ca.pem"}}, str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        mqtt_bus(config, None, Index(), None)  # type: ignore[arg-type]
    assert caught.value.key == "mqtt.tls_ca_file"
