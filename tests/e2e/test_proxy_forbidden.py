"""Issue 2, test 7: a dialer outside [dialers] allow gets 403 and nothing is forwarded.

The SIPp dialer is bound to 127.0.0.2 while only 127.0.0.1/32 is allowed; the trunk must
receive nothing at all."""

from __future__ import annotations

import socket
import time

import pytest

from e2e.checks import PROXY_ONLY, assert_all_succeeded, assert_each_call_got, show, uac_args
from e2e.harness import Trunk, free_port

pytestmark = pytest.mark.e2e

CALLS = 10


def _loopback_alias_usable() -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _loopback_alias_usable(), reason="cannot bind 127.0.0.2")
@pytest.mark.parametrize("leg", ["udp", "tcp"])
def test_dialer_outside_allow_list_gets_403(start_gateway, sipp, leg: str) -> None:
    mode = {"udp": "u1", "tcp": "t1"}[leg]
    uas = sipp("uas_basic.xml", "uas", transport=mode)
    gw = start_gateway([Trunk(uas.port, leg)], allow=["127.0.0.1/32"], overrides=PROXY_ONLY)
    uac = sipp("uac_expect_403.xml", "uac", remote=gw.address, transport=mode,
               local_ip="127.0.0.2", port=free_port("127.0.0.2"),
               args=uac_args(CALLS, rate=40))
    dialer = uac.wait(30)
    time.sleep(0.3)
    trunk = uas.stop()

    assert_all_succeeded(dialer, CALLS)
    assert_each_call_got(dialer, 403)
    for resp in dialer.received("INVITE", 403):
        assert len(resp.vias) == 1 and "127.0.0.2" in resp.vias[0], show(resp)
    assert trunk.messages == [], (
        f"the trunk received {len(trunk.messages)} messages from a forbidden dialer:\n"
        + show(trunk.messages[0])
    )
    assert trunk.created == 0
