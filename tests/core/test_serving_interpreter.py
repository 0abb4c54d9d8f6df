"""serve's interpreter settings hold while it serves and are undone afterwards."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from sipguard.app import SWITCH_INTERVAL, serving_interpreter


@pytest.fixture
def interpreter_state() -> Iterator[None]:
    before = (gc.isenabled(), sys.getswitchinterval())
    yield
    gc.enable() if before[0] else gc.disable()
    sys.setswitchinterval(before[1])


@pytest.mark.usefixtures("interpreter_state")
@pytest.mark.parametrize("collecting", [True, False])
def test_settings_hold_while_serving_and_are_restored(collecting: bool) -> None:
    gc.enable() if collecting else gc.disable()
    sys.setswitchinterval(0.005)
    garbage = [object() for _ in range(10)]
    with serving_interpreter():
        assert not gc.isenabled()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
        assert SWITCH_INTERVAL < 0.005
        assert gc.get_freeze_count() >= len(garbage)  # what loading left is frozen
    assert gc.isenabled() is collecting
    assert sys.getswitchinterval() == pytest.approx(0.005)
    gc.unfreeze()


@pytest.mark.usefixtures("interpreter_state")
def test_restored_when_serving_fails() -> None:
    gc.enable()
    sys.setswitchinterval(0.005)
    with pytest.raises(RuntimeError), serving_interpreter():
        raise RuntimeError("serve failed")
    assert gc.isenabled()
    assert sys.getswitchinterval() == pytest.approx(0.005)
    gc.unfreeze()
