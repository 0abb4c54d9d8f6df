"""The proxy core frees what it holds by reference counting alone.

`sipguard serve` runs with the cyclic garbage collector off (app.run says why): a
reference cycle created on the call path would never be collected. Every in-memory proxy
flow (tests/core/test_proxy_core.py: calls, CANCEL, failover, rejections, malformed input)
is replayed here with the collector off, and must leave nothing for it to find."""

from __future__ import annotations

import gc
import inspect
from collections.abc import Callable

import pytest

from core import test_proxy_core as flows
from sipguard.sip.proxy import ProxyCore

FLOWS: list[Callable[[], None]] = [
    f for name, f in sorted(vars(flows).items())
    if name.startswith("test_") and callable(f) and not inspect.signature(f).parameters
]


def cyclic_garbage(run: Callable[[], None]) -> list[object]:
    """What `run` left for the cyclic collector, except the proxy cores it dropped: a core
    and its transactions point at each other, but `serve` keeps its one core for life."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    ids = {id(o) for o in garbage}
    owned: set[int] = set()
    todo = [o for o in garbage if isinstance(o, ProxyCore)]
    while todo:
        obj = todo.pop()
        if id(obj) not in owned:
            owned.add(id(obj))
            todo.extend(r for r in gc.get_referents(obj) if id(r) in ids)
    return [o for o in garbage if id(o) not in owned]


@pytest.mark.parametrize("flow", FLOWS, ids=[f.__name__[5:] for f in FLOWS])
def test_flow_creates_no_reference_cycle(flow: Callable[[], None]) -> None:
    left = cyclic_garbage(flow)
    assert not left, f"only reachable through cycles: {sorted({type(o).__name__ for o in left})}"


def test_the_check_can_fail() -> None:
    """A cycle made on purpose is found: the assertion above is not vacuous."""

    class Node:
        other: object = None

    def make_cycle() -> None:
        a, b = Node(), Node()
        a.other, b.other = b, a

    assert {type(o).__name__ for o in cyclic_garbage(make_cycle)} >= {"Node"}
