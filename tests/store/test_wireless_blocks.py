"""Wireless number blocks (issue 5): NANP NPA-NXX-X / NPA-NXX block files on a `wireless`
list, looked up by the number's block keys, and what the wireless rule makes of them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyroaring import BitMap64

from sipguard.config import CampaignConfig, PolicyConfig
from sipguard.errors import UsageError
from sipguard.policy.engine import decide
from sipguard.policy.model import Action, Attempt, ListKind, Reason
from sipguard.store import importer
from sipguard.store.db import Store
from sipguard.store.importer import detect_format, parse_file
from sipguard.store.index import Index, ListInfo

Cli = Callable[..., subprocess.CompletedProcess[str]]  # the `cli` fixture (conftest.py)

IN_1000 = "+12125551234"  # in thousands-block 212-555-1
IN_10000 = "+13055559876"  # in ten-thousands-block 305-555
OUTSIDE = ("+12125552234", "+12125550999", "+13055569876", "+12025551234", "+442079460958")


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def wireless_index(bitmap: BitMap64, kind: ListKind = ListKind.WIRELESS) -> Index:
    index = Index()
    index.set_list(ListInfo(1, "wireless", kind, "US", "test", None, 1, 0, len(bitmap)),
                   bitmap, ())
    index.mark_healthy()
    return index


@pytest.mark.parametrize("text", [
    "212555-1\n305555\n",
    "212-555-1\n305-555\n",
    "2125551\n305555\n",
    "\ufeff2125551\r\n\r\n305-555\r\n",
    "212-5551\n305555",  # no final newline
])
def test_block_formats_auto_detected(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "blocks.txt", text)
    assert detect_format(path) == "blocks"
    report = parse_file(path)
    assert (report.format, report.good, report.bad) == ("blocks", 2, 0)
    assert list(report.numbers) == [1305555, 12125551]


def test_block_keys_cannot_collide_with_numbers(tmp_path: Path) -> None:
    report = parse_file(write(tmp_path, "b.txt", "999999\n9999999\n200000\n2000000\n"))
    assert list(report.numbers) == [1200000, 1999999, 12000000, 19999999]
    assert max(report.numbers) < 10**10  # every NANP number key is 11 digits


def test_bad_block_lines_are_reported(tmp_path: Path) -> None:
    lines = ["2125551", "1125551", "0212555", "21255512", "2125551234", "212-55-51", "abc",
             "305555", "12125551", "21-25551"]
    path = write(tmp_path, "b.txt", "\n".join(lines) + "\n")
    report = parse_file(path, "blocks")
    assert (report.good, report.bad) == (2, 8)
    assert [b.line for b in report.first_bad] == [2, 3, 4, 5, 6, 7, 9, 10]
    assert "NPA-NXX-X" in report.first_bad[0].why
    assert list(report.numbers) == [1305555, 12125551]


def test_fast_path_and_line_by_line_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "BLOCK_BYTES", 64)
    plain = [f"{2000000 + 7919 * i}" for i in range(200)]
    plain += [f"{300000 + 97 * i}" for i in range(50)]
    dashed = [f"{b[:3]}-{b[3:6]}" + (f"-{b[6:]}" if len(b) == 7 else "") for b in plain]
    fast = parse_file(write(tmp_path, "p.txt", "\n".join(plain) + "\n"), "blocks")
    slow = parse_file(write(tmp_path, "d.txt", "\n".join(dashed) + "\n"), "blocks")
    assert fast.bad == slow.bad == 0 and fast.good == slow.good == 250
    assert fast.numbers == slow.numbers and len(fast.numbers) == 250


def test_auto_detection_leaves_other_formats_alone(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path, "f.txt", "2125551234\n")) == "federal"
    assert detect_format(write(tmp_path, "e.txt", "+12125551234\n")) == "e164"
    mixed = write(tmp_path, "m.txt", "212555-1\n2125551234\n")
    with pytest.raises(UsageError, match="--format blocks"):
        detect_format(mixed)
    report = parse_file(mixed, "blocks")
    assert (report.good, report.bad) == (1, 1)


def test_lookup_inside_and_outside_blocks(tmp_path: Path) -> None:
    report = parse_file(write(tmp_path, "b.txt", "212-555-1\n305-555\n"))
    exact = BitMap64([12025550100])
    index = wireless_index(report.numbers | exact)
    for number in (IN_1000, "+12125551000", "+12125551999", IN_10000, "+13055550000",
                   "+12025550100"):
        [hit] = index.memberships(number)
        assert (hit.list_name, hit.kind, hit.listed_at) == ("wireless", ListKind.WIRELESS, None)
    for number in OUTSIDE:
        assert index.memberships(number) == ()


def test_only_wireless_lists_look_blocks_up(tmp_path: Path) -> None:
    report = parse_file(write(tmp_path, "b.txt", "212-555-1\n"))
    assert wireless_index(report.numbers, ListKind.INTERNAL).memberships(IN_1000) == ()


async def test_single_entries_win_over_blocks(store: Store, tmp_path: Path) -> None:
    report = parse_file(write(tmp_path, "b.txt", "212-555-1\n"))
    await store.write_generation("wireless", report.numbers, "replace", kind=ListKind.WIRELESS)
    await store.add_entry("wireless", IN_1000, "remove")
    index = await store.load_index()
    assert index.memberships(IN_1000) == ()
    assert len(index.memberships("+12125551235")) == 1
    # a bulk add of the block afterwards wins over that removal again
    await store.write_generation("wireless", report.numbers, "add")
    assert len((await store.load_index()).memberships(IN_1000)) == 1


def test_cli_imports_blocks_into_a_wireless_list(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, "blocks.txt", "212555-1\n305-555\n")
    done = cli("dnc", "import", "blocks.txt", "--list", "wireless", "--kind", "wireless")
    assert done.returncode == 0, done.stderr
    assert "wireless (wireless): 2 numbers" in done.stdout and "format blocks" in done.stdout
    write(tmp_path, "more.txt", "202-555-0\nnope\n")
    done = cli("dnc", "import", "more.txt", "--list", "wireless", "--mode", "add")
    assert done.returncode == 2 and "--format blocks" in done.stderr, done.stderr
    done = cli("dnc", "import", "more.txt", "--list", "wireless", "--format", "blocks",
               "--mode", "add")
    assert done.returncode == 0, done.stderr
    assert "wireless (wireless): 3 numbers" in done.stdout
    assert "line 2: 'nope'" in done.stderr
    done = cli("dnc", "import", "blocks.txt", "--list", "internal", "--kind", "internal")
    assert done.returncode == 1 and "kind 'wireless'" in done.stderr, done.stderr
    assert "blocks" in cli("dnc", "import", "--help", config=False).stdout


async def test_decide_blocks_autodialed_telemarketing_inside_a_block(
    store: Store, tmp_path: Path
) -> None:
    report = parse_file(write(tmp_path, "b.txt", "212-555-1\n"))
    await store.write_generation("wireless", report.numbers, "replace", kind=ListKind.WIRELESS)
    index = await store.load_index()
    campaign = CampaignConfig(purpose="telemarketing", autodialed=True)
    at = datetime(2026, 6, 3, 16, 0, tzinfo=UTC)  # a Wednesday, 12:00 in New York

    def decision(number: str) -> tuple[Action, Reason, str]:
        d = decide(Attempt(number, number, None, "default", "c1"), index, campaign,
                   PolicyConfig(), at)
        return d.action, d.reason, d.rule

    assert decision(IN_1000) == (Action.BLOCK, Reason.NO_CONSENT, "wireless")
    action, reason, _ = decision("+12125552234")  # same exchange, another thousands-block
    assert (action, reason) == (Action.ALLOW, Reason.NO_RESTRICTION)
