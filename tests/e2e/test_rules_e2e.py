"""The rules end to end through SIPp: the calling window, the frequency cap, a custom list
imported with the real CLI while serving, and a rule in tag mode.

The called numbers are in London (+44): no statutory window is shipped for GB, so only the
campaign's own hours apply and the tests do not depend on the hour they run at.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from e2e.checks import assert_all_succeeded, assert_each_call_got, show
from e2e.harness import Gateway, Trunk, scenario_variant

pytestmark = pytest.mark.e2e

LONDON = "+442079460123"
LONDON_LISTED = "+442079460456"  # on the custom list in the tests that import one
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _expect_603(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return scenario_variant("uac_expect_403.xml", tmp_path / "scenarios",
                            {'<recv response="403"/>': '<recv response="603"/>'})


def _args(calls: int, number: str = LONDON) -> list[str]:
    return ["-s", number, "-m", str(calls), "-r", "1", "-l", "1", "-d", "50"]


def _closed_today() -> tuple[date, dict[str, str]]:
    """Tomorrow (in London), and a campaign window in which only tomorrow has hours."""
    tomorrow = datetime.now(ZoneInfo("Europe/London")).date() + timedelta(days=1)
    return tomorrow, {DAYS[tomorrow.weekday()]: "10:00-11:00"}


def _decisions(gw) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return [e for e in gw.events() if e.get("event") == "call.decision"]


def test_outside_the_campaign_window_is_declined_with_when_it_opens(
    start_gateway, sipp, tmp_path
) -> None:
    tomorrow, window = _closed_today()
    uas = sipp("uas_basic.xml", "uas")
    gw = start_gateway([Trunk(uas.port)], overrides={"campaigns": {"default": {"window": window}}})
    uac = sipp(_expect_603(tmp_path), "uac", remote=gw.address, args=_args(3))
    dialer = uac.wait(30)
    time.sleep(0.3)
    trunk = uas.stop()

    assert_all_succeeded(dialer, 3)
    assert_each_call_got(dialer, 603)
    opens = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 10,
                     tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)
    for resp in dialer.received("INVITE", 603):
        assert resp.header("Reason") == 'SIP;cause=603;text="outside-calling-window"', show(resp)
        assert '"outside-calling-window"' in resp.header("Warning"), show(resp)
        seconds, _, comment = resp.header("Retry-After").partition(" ")
        sent = datetime.now(UTC)
        assert abs((sent + timedelta(seconds=int(seconds)) - opens).total_seconds()) < 120
        assert opens.strftime("%Y-%m-%dT%H:%M:%SZ") in comment, show(resp)
    assert trunk.messages == [], "the trunk saw a call outside the window"
    lines = _decisions(gw)
    assert len(lines) == 3
    for line in lines:
        assert (line["decision"], line["reason"], line["rule"]) == (
            "block", "outside-calling-window", "calling-window")
        assert line["opens_at"] == opens.strftime("%Y-%m-%dT%H:%M:%SZ"), json.dumps(line)


def test_the_cap_blocks_the_third_call_and_survives_a_restart(
    start_gateway, sipp, tmp_path
) -> None:
    uas = sipp("uas_basic.xml", "uas", args=["-m", "2"])
    caps = [{"max_calls": 2, "period": "24h"}]
    gw = start_gateway([Trunk(uas.port)], overrides={"campaigns": {"default": {"caps": caps}}})
    first = sipp("uac_basic.xml", "uac1", remote=gw.address, args=_args(2)).wait(30)
    assert_all_succeeded(first, 2)
    assert len(uas.wait(10).received("INVITE")) == 2

    uas2 = sipp("uas_basic.xml", "uas2")
    gw.config["trunks"] = [{"uri": Trunk(uas2.port).uri, "priority": 1}]
    third = sipp(_expect_603(tmp_path), "uac3", remote=gw.address, args=_args(1)).wait(30)
    assert_all_succeeded(third, 1)
    (resp,) = third.received("INVITE", 603)
    assert resp.header("Reason") == 'SIP;cause=603;text="frequency-cap"', show(resp)
    assert not resp.header("Retry-After"), show(resp)

    gw.stop()  # the attempts are in the store: the restarted gateway counts them again
    before = gw.events()  # (a restart starts new log files)
    gw.exit_code = None
    gw.start()
    fourth = sipp(_expect_603(tmp_path), "uac4", remote=gw.address, args=_args(1)).wait(30)
    assert_all_succeeded(fourth, 1)
    (resp,) = fourth.received("INVITE", 603)
    assert resp.header("Reason") == 'SIP;cause=603;text="frequency-cap"', show(resp)
    time.sleep(0.3)
    assert uas2.stop().messages == [], "the trunk saw a call over the cap"
    events = before + gw.events()
    reasons = [(e["decision"], e["reason"]) for e in events if e.get("event") == "call.decision"]
    assert reasons == [("allow", "no-restriction")] * 2 + [("block", "frequency-cap")] * 2
    ready = [e for e in events if e.get("event") == "sipguard.ready"]
    assert [e.get("attempts_counted") for e in ready] == [0, 2]


# -- custom lists and tag mode -------------------------------------------------------------

SUPPRESSED = ["internal", "national", "acme-suppression"]


def _import_custom(gw: Gateway, tmp_path, numbers: list[str]) -> None:  # type: ignore[no-untyped-def]
    """`sipguard dnc import` of a custom list while the gateway serves (it returns once the
    server has applied it)."""
    listed = tmp_path / "acme.txt"
    listed.write_text("".join(f"{n}\n" for n in numbers))
    done = subprocess.run(
        [sys.executable, "-m", "sipguard", "dnc", "import", str(listed), "--list",
         "acme-suppression", "--kind", "custom", "--format", "e164", "-c", str(gw.config_path)],
        env=gw.env, cwd=gw.workdir, check=False, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "acme-suppression (custom): 1 numbers" in done.stdout, done.stdout
    assert "warning" not in done.stderr, done.stderr  # the server was told, not just polled


def test_a_custom_list_the_campaign_names_blocks_its_numbers(
    start_gateway, sipp, tmp_path
) -> None:
    uas = sipp("uas_basic.xml", "uas")
    gw = start_gateway([Trunk(uas.port)],
                       overrides={"campaigns": {"default": {"lists": SUPPRESSED}}})
    # named before it exists: serve says so at start (nothing is silently unchecked)
    missing = [e for e in gw.events() if e.get("event") == "dnc.list_missing"]
    assert [(e["campaign"], e["list"], e["level"]) for e in missing] == [
        ("default", "national", "warning"), ("default", "acme-suppression", "warning")]
    _import_custom(gw, tmp_path, [LONDON_LISTED])

    blocked = sipp(_expect_603(tmp_path), "uac1", remote=gw.address,
                   args=_args(1, LONDON_LISTED)).wait(30)
    assert_all_succeeded(blocked, 1)
    (resp,) = blocked.received("INVITE", 603)
    assert resp.header("Reason") == 'SIP;cause=603;text="dnc-custom"', show(resp)
    assert resp.header("Warning").endswith('"dnc-custom"'), show(resp)
    allowed = sipp("uac_basic.xml", "uac2", remote=gw.address, args=_args(1)).wait(30)
    assert_all_succeeded(allowed, 1)
    time.sleep(0.3)
    trunk = uas.stop()

    (invite,) = [m for m in trunk.received("INVITE") if "tag=" not in m.header("To")]
    assert LONDON.removeprefix("+") in invite.start_line, show(invite)
    lines = _decisions(gw)
    assert [(e["decision"], e["reason"], e["rule"]) for e in lines] == [
        ("block", "dnc-custom", "custom-dnc"), ("allow", "no-restriction", "allow")]
    assert invite.header("X-Sipguard-Decision") == (
        f"allow;reason=no-restriction;id={lines[1]['decision_id']}"), show(invite)
    gw.assert_alive()


def test_a_window_in_tag_mode_forwards_flagged_and_hides_no_later_block(
    start_gateway, sipp, tmp_path
) -> None:
    _, window = _closed_today()
    uas = sipp("uas_basic.xml", "uas")
    gw = start_gateway([Trunk(uas.port)], overrides={
        "policy": {"tag_reasons": ["outside-calling-window"]},
        "campaigns": {"default": {"window": window, "lists": SUPPRESSED}},
    })
    _import_custom(gw, tmp_path, [LONDON_LISTED])

    flagged = sipp("uac_basic.xml", "uac1", remote=gw.address, args=_args(1)).wait(30)
    assert_all_succeeded(flagged, 1)
    blocked = sipp(_expect_603(tmp_path), "uac2", remote=gw.address,
                   args=_args(1, LONDON_LISTED)).wait(30)
    assert_all_succeeded(blocked, 1)
    (resp,) = blocked.received("INVITE", 603)
    assert resp.header("Reason") == 'SIP;cause=603;text="dnc-custom"', show(resp)
    assert not resp.header("Retry-After"), show(resp)  # not a window block
    time.sleep(0.3)
    trunk = uas.stop()

    lines = _decisions(gw)
    assert [(e["decision"], e["reason"], e["rule"]) for e in lines] == [
        ("flag", "outside-calling-window", "calling-window"),
        ("block", "dnc-custom", "custom-dnc")]
    (invite,) = [m for m in trunk.received("INVITE") if "tag=" not in m.header("To")]
    assert invite.header("X-Sipguard-Decision") == (
        f"flag;reason=outside-calling-window;id={lines[0]['decision_id']}"), show(invite)
    gw.assert_alive()
