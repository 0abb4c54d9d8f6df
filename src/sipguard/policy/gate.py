"""The decision hook: an initial INVITE in, an Allow or a Block out (docs/DESIGN.md).

`Gate(config, facts, emit, wall_clock)` reads the called number, the caller and the
campaign off the INVITE, asks `engine.decide`, turns the Decision into what CONTRACT §4
puts on the wire, and hands a `DecisionRecord` to `emit` (the app fans it out to the
log, the store writer and MQTT). It never blocks: facts are in memory.

On the wire (CONTRACT §4):
* block: the configured final response with `Reason: SIP;cause=<code>;text="<reason>"`
  (RFC 3326) and `Warning: 399 <host> "<reason>"` (RFC 3261 §20.43, 399 = miscellaneous);
* store unavailable with on_store_error = "reject": 503 with Retry-After (RFC 3261 §21.5.4);
* allow / flag: the INVITE goes on with `<tag_header>: allow|flag;reason=<reason>;id=<id>`.

A re-sent INVITE after a 401/407 challenge (same Call-ID, From tag and number, RFC 3261
§22.2) gets the first decision again: it is the same call, decided and counted once.

Frequency caps: the gate keeps the `AttemptCounter` (`self.counter`; the app rebuilds it
from the store at start with `attempt_counter`) and records every call it lets through
(allowed or flagged) that a cap may count; the counter ignores a Call-ID it has seen.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from sipguard.config import Config
from sipguard.errors import ConfigError
from sipguard.policy.caps import AttemptCounter, AttemptRecord, required_horizon
from sipguard.policy.engine import RULES, Rule, decide
from sipguard.policy.model import Action, Attempt, Decision, DecisionRecord, Facts, Reason, Step
from sipguard.policy.numbers import Numbers, uri_number
from sipguard.policy.rule_steps import all_caps, prepared_for, worth_counting
from sipguard.sip.message import Header, Request, encode
from sipguard.sip.peer import Peer
from sipguard.sip.verdict import Allow, Block, Verdict

Emit = Callable[[DecisionRecord], None]



def attempt_counter(
    config: Config, records: Iterable[AttemptRecord] = (), now: datetime | None = None
) -> AttemptCounter:
    """A counter whose horizon covers every cap this config may apply, filled with the
    stored `records` that a cap may count (at start: the attempts table's last days)."""
    horizon = required_horizon(all_caps(config.campaigns, config.policy))
    counter = AttemptCounter(horizon)
    when = now or datetime.now(UTC)
    oldest = when - horizon
    for r in records:
        if r.at >= oldest and worth_counting(
            prepared_for(config.campaign(r.campaign), config.policy, r.campaign), r.number, True
        ):
            counter.record(r.number, r.campaign, r.call_id, r.at)
    return counter


class DecisionIds:
    """Unique ids, sortable within a node: '<node>-<ms since epoch, 12 hex><counter, 8 hex>'.

    The counter starts at a random value per process, so that workers of one node that
    decide in the same millisecond do not collide; it only grows, so ids of a process
    sort in decision order.
    """

    __slots__ = ("_clock", "_prefix", "_seq")

    def __init__(self, node: str, wall_clock: Callable[[], float]) -> None:
        self._prefix = f"{node}-"
        self._clock = wall_clock
        self._seq = int.from_bytes(os.urandom(3), "big") << 4

    def next(self, wall: float | None = None) -> str:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        ms = int((self._clock() if wall is None else wall) * 1000)
        # the ms in 12 hex digits, then the counter in 8: one 20-digit number, one format
        return f"{self._prefix}{ms << 32 | self._seq:020x}"


def campaign_of(request: Request, header: str) -> str:
    """The campaign a call belongs to: the `policy.campaign_header` value, else "default"."""
    return (request.get(header) or "").strip() or "default"


class Gate:
    """The `DecisionHook` the proxy core calls for every initial INVITE from a dialer."""

    def __init__(
        self,
        config: Config,
        facts: Facts,
        emit: Emit,
        wall_clock: Callable[[], float] = time.time,
        *,
        perf_clock: Callable[[], float] = time.perf_counter,
        rules: Sequence[Rule] = RULES,
        counter: AttemptCounter | None = None,
    ) -> None:
        self.config = config
        self.facts = facts  # the app may swap in a reloaded index
        self.emit = emit
        self.wall_clock = wall_clock
        self.perf_clock = perf_clock
        self.rules = tuple(rules)
        self.counter = counter if counter is not None else attempt_counter(config)
        policy = config.policy
        self.policy = policy
        try:
            self.numbers = Numbers(policy.default_region, policy.strip_prefixes)
        except ValueError as exc:
            raise ConfigError("policy.default_region", str(exc)) from None
        self.node = config.node.name
        self.ids = DecisionIds(self.node, wall_clock)
        self.emit_failures = 0
        self._campaign_header = policy.campaign_header.lower()
        self._tag_name = policy.tag_header.lower()
        self._tag_prefix = encode(f"{policy.tag_header}: ")
        self._tag_colon = len(self._tag_prefix) - 2
        self._tags: dict[tuple[Action, Reason], bytes] = {}
        self._warn_host = config.sip.warn_agent()  # the host Via names: one rule for both
        self._retry_after = policy.retry_after
        self._reuse_seconds = policy.reuse_seconds
        self._reuse_entries = policy.reuse_entries
        # The reuse cache: key -> verdict, and (expiry, key) oldest first, whose head is
        # cheap to look at on every call (an ordered dict's first item is not).
        self._recent: dict[tuple[str, str, str], Verdict] = {}
        self._expiries: deque[tuple[float, tuple[str, str, str]]] = deque()
        self._blocks: dict[Reason, Block] = {}
        self._opens_text: dict[datetime, str] = {}

    # -- the hook ------------------------------------------------------------------------

    def __call__(self, request: Request, source: Peer, now: float) -> Verdict:
        started = self.perf_clock()
        numbers = self.numbers
        key = self._key(request)
        call_id, _, callee_raw = key
        reused = self._reused(key, now)
        if reused is not None:
            return reused
        campaign = campaign_of(request, self._campaign_header)
        attempt = Attempt(callee_raw, numbers.e164(callee_raw), numbers.caller(request),
                          campaign, call_id)
        wall = self.wall_clock()
        ts = datetime.fromtimestamp(wall, UTC)
        decision = self._decide(attempt, ts)
        if decision.action is not Action.BLOCK and attempt.callee is not None:
            self.count(attempt, ts)
        decision_id = self.ids.next(wall)
        verdict = self.verdict(decision, decision_id, ts)
        self._remember(key, now, verdict)
        latency_us = int((self.perf_clock() - started) * 1_000_000)
        record = DecisionRecord(
            decision_id, ts, self.node, call_id, campaign,
            attempt.callee, callee_raw, attempt.caller, str(source), decision, latency_us,
        )
        try:
            self.emit(record)
        except Exception:  # the call must not fail because a log sink did
            self.emit_failures += 1
        return verdict

    def count(self, attempt: Attempt, at: datetime) -> None:
        """Remember a call that went through, for the frequency caps (once per Call-ID)."""
        callee = attempt.callee
        if callee is None:
            return
        campaign = self.config.campaign(attempt.campaign)
        prep = prepared_for(campaign, self.policy, attempt.campaign)
        try:
            consents = self.facts.consents(callee)
        except Exception:  # the store is down: count it anyway (stricter)
            has_address = True
        else:  # most numbers have no consent: no generator for them
            has_address = bool(consents) and any(c.location_region or c.location_zone
                                                 for c in consents)
        if worth_counting(prep, callee, has_address):
            self.counter.record(callee, attempt.campaign, attempt.call_id, at)

    def _decide(self, attempt: Attempt, now: datetime) -> Decision:
        campaign = self.config.campaign(attempt.campaign)
        try:
            return decide(attempt, self.facts, campaign, self.policy, now, self.rules,
                          self.counter)
        except Exception as exc:  # a broken index must not crash the proxy: fail as a store
            action = Action.BLOCK if self.policy.on_store_error == "reject" else Action.FLAG
            if self.policy.mode == "monitor":
                action = Action.FLAG
            step = Step("store", action.value, f"internal error: {type(exc).__name__}: {exc}")
            return Decision(action, Reason.STORE_UNAVAILABLE, "store", (step,))

    # -- wire form -------------------------------------------------------------------------

    def verdict(self, decision: Decision, decision_id: str, now: datetime | None = None) -> (
        Verdict
    ):
        """What the proxy core does with the INVITE for this decision (CONTRACT §4)."""
        if decision.action is Action.BLOCK:
            block = self._blocks.get(decision.reason)
            if block is None:
                block = self._blocks[decision.reason] = self._block(decision.reason)
            if decision.opens_at is not None and now is not None:
                return self._retry_later(block, decision.opens_at, now)
            return block
        key = (decision.action, decision.reason)
        head = self._tags.get(key)
        if head is None:
            head = self._tags[key] = self._tag_prefix + encode(
                f"{decision.action.value};reason={decision.reason.value};id="
            )
        return Allow((Header(self._tag_name, head + decision_id.encode(), self._tag_colon),))

    def _block(self, reason: Reason) -> Block:
        if reason is Reason.STORE_UNAVAILABLE:
            code, phrase = 503, "Service Unavailable"
            extra: tuple[Header, ...] = (Header.make("Retry-After", str(self._retry_after)),)
        else:
            code = self.policy.block_response.code
            phrase = self.policy.block_response.reason
            extra = ()
        return Block(code, phrase, (
            *extra,
            Header.make("Reason", f'SIP;cause={code};text="{reason.value}"'),
            Header.make("Warning", f'399 {self._warn_host} "{reason.value}"'),
        ))

    def _retry_later(self, block: Block, opens_at: datetime, now: datetime) -> Block:
        """A call outside its calling window: the block response also says, in a
        Retry-After (RFC 3261 §20.33 allows it on 603), when the window opens; a dialer
        that honours it reschedules instead of retrying at once."""
        seconds = max(0, math.ceil((opens_at - now).total_seconds()))
        opens = self._opens_text.get(opens_at)
        if opens is None:  # a few openings per minute: format each once
            if len(self._opens_text) >= 1024:
                self._opens_text.clear()
            opens = self._opens_text[opens_at] = opens_at.astimezone(UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        retry = Header.make("Retry-After", f"{seconds} (calling window opens {opens})")
        return Block(block.status, block.reason, (retry, *block.headers))

    # -- the re-sent INVITE after a challenge ----------------------------------------------

    def decided(self, request: Request, now: float) -> bool:
        """Whether this INVITE re-sends a call decided in the last reuse_seconds (the same
        Call-ID, From tag and number: a retry after a 401/407 challenge). The overload guard
        lets such a call through: it is under way, not new."""
        return self._reused(self._key(request), now) is not None

    def _key(self, request: Request) -> tuple[str, str, str]:
        """(Call-ID, From tag, number as dialled): what a re-sent INVITE shares."""
        callee_raw = self.numbers.called_raw(request, self.policy.number_source)
        return request.call_id, request.tag("from") or "", callee_raw

    def _reused(self, key: tuple[str, str, str], now: float) -> Verdict | None:
        expiries, recent = self._expiries, self._recent
        while expiries and expiries[0][0] <= now:  # oldest first: drop what expired
            recent.pop(expiries.popleft()[1], None)
        return recent.get(key)

    def _remember(self, key: tuple[str, str, str], now: float, verdict: Verdict) -> None:
        # `__call__` remembers only a key `_reused` did not find; were one remembered
        # again, its first expiry would drop it (hence pop, not del)
        self._recent[key] = verdict
        self._expiries.append((now + self._reuse_seconds, key))
        if len(self._expiries) > self._reuse_entries:
            self._recent.pop(self._expiries.popleft()[1], None)

    # -- `sipguard check` --------------------------------------------------------------------

    def attempt(self, number: str, campaign: str = "default", caller: str | None = None) -> Attempt:
        """An attempt as if `number` (digits, E.164, or a sip:/tel: URI) were dialled."""
        raw = uri_number(number) if ":" in number else number
        caller_e164 = None
        if caller:
            caller_e164 = self.numbers.e164(uri_number(caller) if ":" in caller else caller)
        return Attempt(raw, self.numbers.e164(raw), caller_e164, campaign, "")

    def check(
        self,
        number: str,
        campaign: str = "default",
        caller: str | None = None,
        at: datetime | None = None,
    ) -> Decision:
        """The decision the gateway would make for `number` at `at` (default: now)."""
        when = at if at is not None else datetime.fromtimestamp(self.wall_clock(), UTC)
        return self._decide(self.attempt(number, campaign, caller), when)
