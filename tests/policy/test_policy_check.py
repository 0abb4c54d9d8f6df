"""`sipguard check`: the decision as JSON, from the store file or from nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sipguard.cli import main
from sipguard.policy.model import ConsentType, ListKind
from sipguard.store.db import Store

CONFIG = """
[store]
path = "var/sipguard.db"
[campaigns.default]
[campaigns.spring]
require_consent = false
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sipguard.toml"
    path.write_text(CONFIG)
    return path


# A weekday afternoon in every US time zone: the calling window never decides these tests.
DAYTIME = ("--at", "2026-06-03T18:00:00+00:00")


def check(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["-c", str(config), "check", *args]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def seed(db: Path) -> None:
    async def go() -> None:
        store = await Store.open(db)
        try:
            await store.add_entry("national", "+14155552671", "add", source="test",
                                  kind=ListKind.NATIONAL)
            await store.grant_consent(
                "+14155552671", "spring", ConsentType.EXPRESS_WRITTEN, "form 12",
                granted_at=datetime(2026, 3, 1, tzinfo=UTC),
            )
        finally:
            await store.close()

    asyncio.run(go())


def test_without_a_store(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = check(config, capsys, "(415) 555-2671", *DAYTIME)
    assert (result["decision"], result["reason"], result["callee"]) == (
        "allow", "no-restriction", "+14155552671")
    assert result["store"] is None
    assert [s["rule"] for s in result["trail"]][-1] == "allow"
    assert not (config.parent / "var").exists()  # a check creates no store


def test_from_the_store(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(config.parent / "var" / "sipguard.db")
    blocked = check(config, capsys, "+1 415 555 2671", *DAYTIME)
    assert (blocked["decision"], blocked["reason"], blocked["rule"]) == (
        "block", "dnc-national", "national-state-dnc")
    allowed = check(config, capsys, "4155552671", "--campaign", "spring",
                    "--caller", "+12125550100", *DAYTIME)
    assert (allowed["decision"], allowed["reason"], allowed["caller"]) == (
        "allow", "consent", "+12125550100")
    assert allowed["consent_id"] == 1
    assert any(s["outcome"] == "override" for s in allowed["trail"])
    before = check(config, capsys, "4155552671", "--campaign", "spring", "--at", "2026-02-01")
    assert before["reason"] == "dnc-national"
    assert before["at"] == "2026-02-01T00:00:00+00:00"


def test_invalid_and_emergency(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(config, capsys, "555")["reason"] == "invalid-number"
    assert check(config, capsys, "911")["reason"] == "emergency"
    unknown = check(config, capsys, "4155552671", "--campaign", "nope")
    assert unknown["campaign_configured"] is False


def test_bad_date_is_one_line(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(config), "check", "4155552671", "--at", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--at" in err


def test_a_custom_list_imported_with_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "sipguard.toml"
    config.write_text(CONFIG + """
[campaigns.acme]
lists = ["internal", "acme-suppression"]
[campaigns.typo]
lists = ["internal", "acme-supression"]
""")
    listed = tmp_path / "acme.txt"
    listed.write_text("+14155552671\n")
    assert main(["-c", str(config), "dnc", "import", str(listed), "--list", "acme-suppression",
                 "--kind", "custom", "--format", "e164"]) == 0
    capsys.readouterr()
    blocked = check(config, capsys, "4155552671", "--campaign", "acme", *DAYTIME)
    assert (blocked["decision"], blocked["reason"], blocked["rule"]) == (
        "block", "dnc-custom", "custom-dnc")
    assert blocked["trail"][-1]["detail"] == "acme-suppression: opt-out unknown"
    fresh = next(s for s in check(config, capsys, "4155552672", "--campaign", "acme",
                                  *DAYTIME)["trail"] if s["rule"] == "stale-list")
    assert fresh["detail"] == "national lists fresh"  # a custom list has no age limit
    # a campaign that does not name the list is not checked against it
    assert check(config, capsys, "4155552671", *DAYTIME)["reason"] == "no-restriction"
    # a campaign naming a list the store lacks: allowed, with a warning in the trail
    typo = check(config, capsys, "4155552671", "--campaign", "typo", *DAYTIME)
    assert typo["reason"] == "no-restriction"
    step = next(s for s in typo["trail"] if s["rule"] == "stale-list")
    assert "'acme-supression' is not in the store" in step["detail"]
