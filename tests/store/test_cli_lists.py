"""`sipguard dnc|consent|config` as a user runs them: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Cli = Callable[..., subprocess.CompletedProcess[str]]  # the `cli` fixture (conftest.py)



def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_import_add_remove_and_lists(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "national.txt").write_text("2025550100\n2025550101\nbad\n")
    done = cli("dnc", "import", "national.txt", "--list", "national")
    assert done.returncode == 0, done.stderr
    assert "national (national): 2 numbers" in done.stdout
    assert "line 3: 'bad'" in done.stderr
    assert "\r" not in done.stderr  # no progress bar when stderr is not a terminal

    done = cli("dnc", "import", "national.txt", "--list", "fl", "--kind", "state",
               "--jurisdiction", "US-FL", "--mode", "add")
    assert done.returncode == 0, done.stderr
    assert cli("dnc", "add", "+1 305 555 0199", "--list", "internal",
               "--source", "agent 7").returncode == 0
    assert cli("dnc", "remove", "305-555-0199", "--list", "internal").returncode == 0
    shown = cli("dnc", "lists")
    assert shown.returncode == 0
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[1:]}
    assert rows["fl"][:4] == ["fl", "state", "US-FL", "2"]
    assert rows["internal"][3] == "0"
    assert rows["national"][3] == "2"

    # --mode remove takes the file's numbers out of the list, and only those
    (tmp_path / "gone.txt").write_text("2025550101\n2025550199\n")
    done = cli("dnc", "import", "gone.txt", "--list", "national", "--mode", "remove")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in cli("dnc", "lists").stdout.splitlines()[1:]}
    assert rows["national"][3] == "1"
    at = "2026-06-03T18:00:00Z"  # a Wednesday, 14:00 in Washington: inside every window
    # 2025550101 left national, and is still on the state list "fl"
    for number, reason in (("2025550100", "dnc-national"), ("2025550101", "dnc-state")):
        checked = json.loads(cli("check", number, "--at", at).stdout)
        assert checked["reason"] == reason, checked


def test_strict_imports_nothing(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "n.txt").write_text("2025550100\nbad\n")
    done = cli("dnc", "import", "n.txt", "--list", "national", "--strict")
    assert done.returncode == 1
    assert "nothing imported (--strict)" in done.stderr
    db = sqlite3.connect(tmp_path / "var" / "sipguard.db")
    assert db.execute("SELECT count(*) FROM generations").fetchone()[0] == 0


def test_replace_with_an_empty_file_needs_allow_empty(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "n.txt").write_text("2025550100\n")
    (tmp_path / "empty.txt").write_text("junk\n")
    assert cli("dnc", "import", "n.txt", "--list", "national").returncode == 0
    done = cli("dnc", "import", "empty.txt", "--list", "national", "--format", "federal")
    assert done.returncode == 1 and "--allow-empty" in done.stderr


def test_consent_grant_revoke_list(cli: Cli) -> None:
    done = cli("consent", "grant", "202-555-0100", "--campaign", "default",
               "--type", "express-written", "--source", "form 12", "--expires", "2030-01-01")
    assert done.returncode == 0, done.stderr
    assert "consent #1 recorded" in done.stdout
    done = cli("consent", "revoke", "2025550100", "--source", "sms STOP")
    assert done.returncode == 0 and "consent #1 revoked" in done.stdout
    done = cli("consent", "list", "2025550100", "--json")
    assert '"revoke_source": "sms STOP"' in done.stdout and '"source": "form 12"' in done.stdout
    done = cli("consent", "revoke", "2025550100", "--source", "again")
    assert done.returncode == 0 and "nothing to revoke" in done.stdout


def test_config_check_and_doc(cli: Cli, tmp_path: Path) -> None:
    done = cli("config", "check")
    assert done.returncode == 0 and "OK" in done.stdout
    done = cli("config", "doc", config=False)
    assert done.returncode == 0 and "| `store.path` |" in done.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("dnc", "import", "missing.txt", "--list", "national"), "'missing.txt' does not exist"),
        (("dnc", "remove", "2025550100", "--list", "nope"), "unknown list 'nope'"),
        (("dnc", "add", "2025550100", "--list", "nope"), "give --kind"),
        (("dnc", "import", "n.txt", "--list", "mylist"), "unknown list 'mylist'"),
        (("dnc", "add", "12", "--list", "internal"), "'12' is not a valid phone number"),
        (("consent", "grant", "2025550100", "--campaign", "default", "--type", "express",
          "--source", "f", "--expires", "next tuesday"), "--expires: 'next tuesday' is not"),
        (("consent", "revoke", "2025550100", "--source", "s", "--at", "2026-13-01"),
         "--at: '2026-13-01' is not"),
        (("consent", "grant", "2025550100", "--campaign", "default", "--type", "bogus",
          "--source", "f"), "invalid choice: 'bogus'"),
        (("dnc", "import", "n.txt"), "the following arguments are required: --list"),
    ],
)
def test_error_paths_give_one_clear_line(
    cli: Cli, tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    (tmp_path / "n.txt").write_text("2025550100\n")
    done = cli(*args)
    assert done.returncode != 0
    assert expected in one_error_line(done.stderr)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ('[sip]\nlisten = ["udp:0.0.0.0:5060"]\n',
         "config error: sip.advertised_host: must be set when listening on a wildcard "
         "address ('udp:0.0.0.0:5060')"),
        ('[sip]\nlisten = ["tcp:[::]:5060"]\nadvertised_host = "::"\n',
         "config error: sip.advertised_host: '::' is a wildcard address; give the host or IP "
         "peers reach sipguard at"),
        # RFC 6761 §6.4: a name under .invalid never resolves, wherever this runs
        ('[[trunks]]\nuri = "sip:trunk.invalid:5060;transport=udp"\n',
         "config error: trunks[0].uri: cannot resolve 'trunk.invalid': "),
        ('[mqtt]\nenabled = true\nurl = "mqtts://127.0.0.1:8883"\ntls_ca_file = "junk.pem"\n',
         "config error: mqtt.tls_ca_file: cannot load "),
    ],
    ids=["wildcard-listen", "wildcard-advertised", "unresolvable-trunk", "ca-not-loading"],
)
def test_config_check_refuses_what_serve_refuses(
    cli: Cli, tmp_path: Path, section: str, expected: str
) -> None:
    """`config check` and `serve` run the same rule: the same line from both, exit 2."""
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[store]\npath = "{tmp_path / "var" / "sipguard.db"}"\n'
                   '[log]\npseudonymize = false\n' + section)
    (tmp_path / "junk.pem").write_text("no certificate\n")
    for command in (("config", "check"), ("serve",)):
        done = cli(*command, "-c", str(bad), config=False, timeout=30)
        assert done.returncode == 2, done.stderr
        assert one_error_line(done.stderr).startswith(expected), done.stderr


def test_unknown_config_key_is_named(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\npath = "x.db"\npoll_intervall = 2\n')
    for args in (("config", "check"), ("dnc", "lists")):
        done = cli(*args, "-c", str(bad), config=False)
        assert done.returncode == 2
        assert "store.poll_intervall: unknown key" in one_error_line(done.stderr)
    done = cli("config", "check", "-c", str(tmp_path / "none.toml"), config=False)
    assert done.returncode == 2 and "does not exist" in one_error_line(done.stderr)
