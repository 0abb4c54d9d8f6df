"""Data-subject rights while serving: `sipguard subject ...` run against a live gateway
decides the very next call (the command returns once the server has applied it)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.checks import assert_all_succeeded, show
from e2e.harness import Gateway, Sipp, Trunk, scenario_variant

pytestmark = pytest.mark.e2e

LONDON = "+442079460123"  # no statutory calling window is shipped for GB


def subject(gw: Gateway, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "sipguard", "subject", *args, "-c",
                           str(gw.config_path)], env=gw.env, cwd=gw.workdir, check=False,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr, done.stderr  # the server was told, not just polled


def test_an_objection_and_an_erasure_stop_the_next_call_and_a_withdrawal_lets_it_through(
    start_gateway: Callable[..., Gateway], sipp: Callable[..., Sipp], tmp_path: Path,
) -> None:
    uas = sipp("uas_basic.xml", "uas")
    gw = start_gateway([Trunk(uas.port)])
    expect_603 = scenario_variant("uac_expect_403.xml", tmp_path / "scenarios",
                                  {'<recv response="403"/>': '<recv response="603"/>'})
    args = ["-s", LONDON, "-m", "1", "-r", "1", "-d", "50"]

    def blocked(name: str, reason: str) -> None:
        result = sipp(expect_603, name, remote=gw.address, args=args).wait(30)
        assert_all_succeeded(result, 1)
        (resp,) = result.received("INVITE", 603)
        assert resp.header("Reason") == f'SIP;cause=603;text="{reason}"', show(resp)

    def placed(name: str) -> None:
        assert_all_succeeded(sipp("uac_basic.xml", name, remote=gw.address, args=args).wait(30),
                             1)

    subject(gw, "object", LONDON, "--source", "email of 2026-11-28")
    blocked("uac1", "subject-objection")
    subject(gw, "object", LONDON, "--source", "withdrawn by phone", "--withdraw")
    placed("uac2")
    subject(gw, "restrict", LONDON, "--source", "accuracy contested")
    blocked("uac3", "subject-restricted")
    subject(gw, "restrict", LONDON, "--source", "resolved", "--lift")
    placed("uac4")
    subject(gw, "erase", LONDON, "--source", "letter", "--yes")
    blocked("uac5", "subject-objection")
    assert len(uas.stop().received("INVITE")) == 2, "the trunk saw a call it should not have"
    reasons = [e["reason"] for e in gw.events() if e.get("event") == "call.decision"]
    assert reasons == ["subject-objection", "no-restriction", "subject-restricted",
                       "no-restriction", "subject-objection"]
    gw.assert_alive()
