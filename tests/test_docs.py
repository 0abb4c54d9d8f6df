"""The config reference in docs/ is generated from the config dataclasses, never edited by
hand: it must match what `sipguard config doc` prints now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_current() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "sipguard", "config", "doc"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout
    committed = (ROOT / "docs" / "CONFIG.md").read_text()
    assert printed == committed, "run `sipguard config doc > docs/CONFIG.md`"


def test_broken_pipe_is_quiet() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m sipguard config doc | head -1",
        shell=True, capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert proc.stdout.startswith("# sipguard configuration reference")
    assert "Traceback" not in proc.stderr
