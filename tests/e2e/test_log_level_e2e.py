"""`[log] level` filters the operational lines only: through a real `serve` at level "error",
every call still gets its call.decision line (CONTRACT §6: one line per decision; they are
compliance records), in either format, and the audit chain's head still gets its
audit.checkpoint line (logged at the clean stop: what an operator ships off the machine)."""

from __future__ import annotations

import uuid

import pytest

from e2e.harness import Trunk, UdpPeer

pytestmark = pytest.mark.e2e

CALLS = 3


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_every_decision_is_logged_at_level_error(start_gateway, unused_port, fmt: str) -> None:
    gw = start_gateway([Trunk(unused_port)],
                       overrides={"log": {"format": fmt, "level": "error", "pseudonymize": False}})
    call_ids = []
    with UdpPeer() as dialer:
        for _ in range(CALLS):
            tag = uuid.uuid4().hex[:12]
            call_id = f"{tag}@level"
            # "12" is no phone number: blocked invalid-number, whatever the hour or lists
            invite = dialer.invite((gw.host, gw.port), call_id=call_id, branch=f"z9hG4bK{tag}",
                                   user="12")
            final, seen = dialer.wait_final(5.0)
            assert final is not None and final.status == 603, [m.start_line for m in seen]
            dialer.ack_for(invite, final, (gw.host, gw.port))
            call_ids.append(call_id)
    assert gw.stop() == 0, gw.output()[-3000:]
    lines = gw.stdout_path.read_text().splitlines()
    decisions = [line for line in lines if "call.decision" in line]
    assert len(decisions) == CALLS, lines
    for call_id, line in zip(call_ids, decisions, strict=True):
        assert call_id in line and "invalid-number" in line, line
    assert [line for line in lines if "audit.checkpoint" in line], lines
    # the level is in force: the info lines of a start are not written
    assert not [line for line in lines if "sipguard.ready" in line], lines
    if fmt == "json":
        events = [e for e in gw.events() if e["event"] == "call.decision"]
        assert [e["call_id"] for e in events] == call_ids
