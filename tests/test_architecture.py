"""The sans-IO rule (docs/DESIGN.md, ../shared/STYLE.md): the SIP core and the policy core
import none of asyncio, aiosqlite, aiomqtt or structlog, directly or through an edge module.

Checked two ways: statically, by walking the AST of every file (function-level imports and
`importlib.import_module("...")` / `__import__("...")` calls included), and at run time, by
importing every core module in a fresh interpreter and looking at `sys.modules`.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sipguard"
CORE_PACKAGES = ("sip", "policy")
FORBIDDEN = frozenset({"asyncio", "aiosqlite", "aiomqtt", "structlog"})
# sipguard modules that are edges (they may use the above), so the core must not import them.
EDGES = frozenset({"sipguard.transport", "sipguard.store", "sipguard.bus", "sipguard.log",
                   "sipguard.app", "sipguard.cli"})


def imported_modules(source: str, module: str) -> set[str]:
    """Every module name a file imports, absolute, with relative imports resolved."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def violations(source: str, module: str) -> list[str]:
    def edge(name: str) -> bool:
        return any(name == e or name.startswith(e + ".") for e in EDGES)

    return [
        name for name in sorted(imported_modules(source, module))
        if name.split(".")[0] in FORBIDDEN or edge(name)
    ]


def core_files() -> list[tuple[str, Path]]:
    files = []
    for package in CORE_PACKAGES:
        for path in sorted((SRC / package).rglob("*.py")):
            rel = path.relative_to(SRC.parent).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files.append((".".join(parts), path))
    return files


CORE = core_files()


def test_core_packages_exist() -> None:
    names = {name for name, _ in CORE}
    assert {"sipguard.sip.parser", "sipguard.sip.transaction", "sipguard.policy"} <= names


@pytest.mark.parametrize(("module", "path"), CORE, ids=[m for m, _ in CORE])
def test_core_module_imports_no_io_library(module: str, path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), module) == []


@pytest.mark.parametrize(
    "snippet",
    [
        "import asyncio",
        "import asyncio.events",
        "from structlog import get_logger",
        "def f():\n    import aiosqlite\n",
        "import importlib\nimportlib.import_module('aiomqtt')",
        "__import__('asyncio')",
        "from sipguard.store import Store",
        "from sipguard import log",
        "from ...transport import udp",
    ],
)
def test_the_checker_catches_violations(snippet: str) -> None:
    assert violations(snippet, "sipguard.sip.x.y") != []


def test_the_checker_allows_plain_code() -> None:
    ok = "import heapq\nfrom sipguard.sip.message import Request\nfrom . import uri\n"
    assert violations(ok, "sipguard.sip.parser") == []


def test_importing_the_core_loads_no_io_library() -> None:
    """Transitive imports too (a third-party module could pull one in)."""
    names = [module for module, _ in CORE]
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
