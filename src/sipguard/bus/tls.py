"""The TLS context of an `mqtts://` broker: its CA, and this gateway's client certificate.

Built by `serve` for the bus and by `config check` (which runs where `serve` will: a CA or
key that does not load there is found before a restart refuses it), one rule in one place.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

from sipguard.config import Config
from sipguard.errors import ConfigError

TLS_KEY_PASSWORD_ENV = "SIPGUARD_MQTT_TLS_KEY_PASSWORD"


def tls_context(config: Config, environ: Mapping[str, str] = os.environ) -> ssl.SSLContext | None:
    """None for `mqtt://`; else the context, or a ConfigError naming the file's key. An
    encrypted key's passphrase comes from SIPGUARD_MQTT_TLS_KEY_PASSWORD, never the file."""
    mqtt = config.mqtt
    tls, _host, _port = mqtt.broker()
    if not tls:
        return None
    cafile = str(config.resolve(mqtt.tls_ca_file)) if mqtt.tls_ca_file else None
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("mqtt.tls_ca_file", f"cannot load {cafile!r}: {exc}") from None
    if mqtt.tls_cert_file:
        certfile = str(config.resolve(mqtt.tls_cert_file))
        keyfile = str(config.resolve(mqtt.tls_key_file)) if mqtt.tls_key_file else None
        try:
            # a callable: an encrypted key with no passphrase set fails here, not at a
            # prompt on a terminal serve may not have
            context.load_cert_chain(certfile, keyfile,
                                    password=lambda: environ.get(TLS_KEY_PASSWORD_ENV, ""))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("mqtt.tls_cert_file",
                              f"cannot load the client certificate and key: {exc}") from None
    return context
