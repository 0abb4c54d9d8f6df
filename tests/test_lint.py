"""mypy --strict (configured in pyproject.toml) and ruff, run from the venv as the CI would."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed in this environment")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False,
                          timeout=600)


def test_mypy_strict_on_src() -> None:
    out = run(tool("mypy"))  # files = ["src/sipguard"], strict = true in [tool.mypy]
    print(out.stdout, out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_check_src_and_tests() -> None:
    out = run(tool("ruff"), "check", "src", "tests")
    print(out.stdout, out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr
