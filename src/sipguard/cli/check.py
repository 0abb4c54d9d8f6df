"""`sipguard check NUMBER [--campaign C] [--at ISO-8601] [--caller NUMBER]` (CONTRACT §2).

Prints, as JSON, the decision the gateway would make for a call to NUMBER, with the rule
trail that led to it. It reads the store file itself (SQLite in WAL mode lets it do so
while `serve` runs), so it gives the same answer with or without a running server; a
store that does not exist yet means no list and no consent. Frequency caps count the
stored attempts before `--at`, as the server does. Nothing is recorded: a check is not a
call. Outside the calling window, `opens_at` says when it opens next.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from sipguard.cli import add_config_option
from sipguard.config import Config, load_config
from sipguard.policy.caps import AttemptCounter, AttemptRecord, required_horizon
from sipguard.policy.facts import EMPTY_FACTS
from sipguard.policy.gate import Gate, attempt_counter
from sipguard.policy.geo import locate
from sipguard.policy.model import DecisionRecord, Facts
from sipguard.policy.rule_steps import all_caps
from sipguard.store.codec import parse_user_time
from sipguard.store.session import open_store, run, store_path
from sipguard.store.writer import attempts_since


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = subparsers.add_parser(
        "check", help="print the decision the gateway would make for a number, as JSON"
    )
    check.add_argument("number", help="the dialled number, as a dialer would send it")
    check.add_argument("--campaign", default="default", help="campaign name (default: default)")
    check.add_argument("--at", help="decide as of this ISO-8601 time (default: now; naive = UTC)")
    check.add_argument("--caller", help="the caller's number (for caller-ID rules)")
    add_config_option(check)
    check.set_defaults(func=cmd_check)


def load_facts(config: Config, at: datetime | None = None) -> (
    tuple[Facts, AttemptCounter, str | None]
):
    """The store's index and the attempts counted at `at` (default now), or no facts
    and no attempts when the store file does not exist yet."""
    path = store_path(config)
    when = at or datetime.now(UTC)
    if not path.exists():
        return EMPTY_FACTS, attempt_counter(config, (), when), None
    facts, counter = run(_load(config, when))
    return facts, counter, str(path)


async def _load(config: Config, at: datetime) -> tuple[Facts, AttemptCounter]:
    async with open_store(config) as store:
        index = await store.load_index()
        horizon = required_horizon(all_caps(config.campaigns, config.policy))
        rows = await attempts_since(store, at - horizon)
    records = (AttemptRecord(r.number, r.campaign, r.call_id, r.at) for r in rows if r.at <= at)
    return index, attempt_counter(config, records, at)


def _discard(_record: DecisionRecord) -> None:
    """`check` decides, it does not call: nothing is logged or counted."""


def report(
    config: Config, facts: Facts, store: str | None, number: str, campaign: str,
    caller: str | None, at: datetime | None, counter: AttemptCounter | None = None,
) -> dict[str, Any]:
    gate = Gate(config, facts, _discard, counter=counter)
    attempt = gate.attempt(number, campaign, caller)
    when = at or datetime.fromtimestamp(gate.wall_clock(), UTC)
    decision = gate.check(number, campaign, caller, when)
    return {
        "number": number,
        "callee": attempt.callee,
        "caller": attempt.caller,
        "campaign": campaign,
        "campaign_configured": campaign in config.campaigns,
        "at": when.isoformat(),
        "mode": config.policy.mode,
        "store": store,
        "location": _location(attempt.callee),
        **decision.as_dict(),
    }


def _location(callee: str | None) -> dict[str, Any] | None:
    """Where the called number rings, as the calling-window and cap rules read it."""
    if callee is None:
        return None
    loc = locate(callee)
    return {"country": loc.country, "regions": list(loc.regions), "zones": list(loc.zones),
            "source": loc.source}


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(getattr(args, "config", None))
    at = parse_user_time("--at", args.at) if args.at else None
    facts, counter, store = load_facts(config, at)
    result = report(config, facts, store, args.number, args.campaign, args.caller, at, counter)
    print(json.dumps(result, indent=2))
    return 0
