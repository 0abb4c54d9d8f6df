"""The compiled build's own rules (setup.py): what it compiles exists, and the value types
that write their `__init__` out (the compiled build would run a dataclass's generated one
as interpreted code) still take exactly their dataclass fields, in order."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

from sipguard.sip.message import Request, Via
from sipguard.sip.uri import parse_uri

ROOT = Path(__file__).resolve().parents[1]


def _setup_constants() -> dict[str, Any]:
    """setup.py's module-level literals (running it would run setup())."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    return {target.id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) for target in node.targets
            if isinstance(target, ast.Name) and target.id.isupper()}


SETUP = _setup_constants()


def written_out_inits() -> list[tuple[str, str]]:
    """(module, class) for each dataclass in the compiled modules with its own __init__."""
    found = []
    for entry in SETUP["COMPILED"]:
        path = ROOT / "src" / entry
        for file in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            module = ".".join(file.relative_to(ROOT / "src").with_suffix("").parts)
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.ClassDef) and any(
                    "dataclass" in ast.unparse(d) for d in node.decorator_list
                ) and any(isinstance(f, ast.FunctionDef) and f.name == "__init__"
                          for f in node.body):
                    found.append((module, node.name))
    return found


def test_what_setup_compiles_exists() -> None:
    for entry in SETUP["COMPILED"]:
        assert (ROOT / "src" / entry).exists(), entry
    for entry in SETUP["INTERPRETED"]:
        assert (ROOT / "src" / entry).is_file(), entry


def test_the_written_out_inits_are_found() -> None:
    assert {"Via", "Message", "Request", "Response", "SipUri", "Attempt",
            "DecisionRecord"} <= {name for _, name in written_out_inits()}


@pytest.mark.parametrize(("module", "name"), written_out_inits(),
                         ids=[f"{m}.{n}" for m, n in written_out_inits()])
def test_a_written_out_init_takes_the_fields(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    # As dataclass would write it: positional fields in order, then the keyword-only ones.
    fields = [f for f in fields if f.kw_only is not True] + [f for f in fields if f.kw_only is True]
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.kind == p.KEYWORD_ONLY for p in params] == [f.kw_only is True for f in fields]


def test_a_written_out_init_sets_every_field() -> None:
    via = Via("UDP", "127.0.0.1", 5060, (("branch", "z9hG4bK1"),))
    assert via == Via("UDP", "127.0.0.1", 5060, (("branch", "z9hG4bK1"),))
    assert via.branch == "z9hG4bK1"
    request = Request((), b"", "INVITE", "sip:a@b")
    assert dataclasses.replace(request, uri="sip:c@d").uri == "sip:c@d"
    assert request.memo == {}
    uri = parse_uri("sip:alice@example.com:5070;transport=tcp", "test")
    assert dataclasses.astuple(uri) == ("sip", "alice", "example.com", 5070,
                                        (("transport", "tcp"),),
                                        "sip:alice@example.com:5070;transport=tcp")
    with pytest.raises(dataclasses.FrozenInstanceError):
        via.host = "elsewhere"  # type: ignore[misc]
