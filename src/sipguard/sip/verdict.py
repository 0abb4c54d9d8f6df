"""The seam between the proxy core and the policy: what a decision hook returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sipguard.sip.message import Header, Request
from sipguard.sip.peer import Peer


@dataclass(frozen=True, slots=True)
class Allow:
    """Forward the INVITE, adding `headers` (any same-named headers from the dialer are dropped)."""

    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class Block:
    """Answer the INVITE with this final response; the trunk never sees it."""

    status: int
    reason: str
    headers: tuple[Header, ...] = ()


Verdict = Allow | Block

# (initial INVITE from a dialer, its source, monotonic now) -> verdict. Synchronous by design:
# it reads in-memory indexes only, so the INVITE path never waits on disk or network.
DecisionHook = Callable[[Request, Peer, float], Verdict]


# (initial INVITE from a dialer, its source, monotonic now) -> None to go on, or a refusal
# sent at once, statelessly, before any transaction or 100 Trying: what overload shedding
# needs, since a refused call must cost a small fraction of a placed one.
AdmissionHook = Callable[[Request, Peer, float], Block | None]


def allow_all(_request: Request, _source: Peer, _now: float) -> Verdict:
    """The hook used until a policy is wired in."""
    return Allow()
