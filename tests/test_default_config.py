"""The shipped `config/sipguard.toml` is the embedded default the README runs: it must load,
pass `config check`, and be what it says (one machine, SQLite only, no broker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sipguard.config import ListenAddress, load_config, parse_config
from sipguard.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "sipguard.toml"


def test_the_shipped_config_passes_config_check() -> None:
    done = subprocess.run([sys.executable, "-m", "sipguard", "config", "check", "-c",
                           str(SHIPPED)], check=False, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_the_shipped_config_is_the_embedded_default() -> None:
    config = load_config(SHIPPED)
    assert not config.mqtt.enabled  # no broker
    assert config.policy.mode == "enforce" and config.policy.on_store_error == "reject"
    assert config.log.pseudonymize  # personal data minimised by default
    # loopback only until an engineer says otherwise: never an open relay
    assert all(ListenAddress.parse("sip.listen", a).host.startswith("127.")
               for a in config.sip.listen)
    assert config.dialers.allow == ("127.0.0.0/8",)
    assert config.campaign("default").lists == ("internal", "national", "state", "litigator")


def test_a_misspelt_campaign_purpose_is_refused() -> None:
    """A purpose the rules do not know would escape the ones keyed on it (TCPA written
    consent for telemarketing): refused, naming the key."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"campaigns": {"spring": {"purpose": "telemarketting"}}})
    assert caught.value.key == "campaigns.spring.purpose"
    assert "telemarketing" in str(caught.value)
