"""`sipguard check NUMBER [--campaign C] [--at ISO-8601] [--caller NUMBER]` (CONTRACT §2).

Prints, as JSON, the decision the gateway would make for a call to NUMBER, with the rule
trail that led to it. It reads the store file itself (SQLite in WAL mode lets it do so
while `serve` runs), so it gives the same answer with or without a running server; a
store that does not exist yet means no list and no consent. Nothing is recorded: a
check is not a call.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from sipguard.cli import add_config_option
from sipguard.config import Config, load_config
from sipguard.policy.facts import EMPTY_FACTS
from sipguard.policy.gate import Gate
from sipguard.policy.model import DecisionRecord, Facts
from sipguard.store.codec import parse_user_time
from sipguard.store.session import open_store, run, store_path


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


def load_facts(config: Config) -> tuple[Facts, str | None]:
    """The store's index, or no facts at all when the store file does not exist yet."""
    path = store_path(config)
    if not path.exists():
        return EMPTY_FACTS, None
    return run(_load(config)), str(path)


async def _load(config: Config) -> Facts:
    async with open_store(config) as store:
        return await store.load_index()


def _discard(_record: DecisionRecord) -> None:
    """`check` decides, it does not call: nothing is logged or counted."""


def report(
    config: Config, facts: Facts, store: str | None, number: str, campaign: str,
    caller: str | None, at: datetime | None,
) -> dict[str, Any]:
    gate = Gate(config, facts, _discard)
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
        **decision.as_dict(),
    }


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(getattr(args, "config", None))
    at = parse_user_time("--at", args.at) if args.at else None
    facts, store = load_facts(config)
    result = report(config, facts, store, args.number, args.campaign, args.caller, at)
    print(json.dumps(result, indent=2))
    return 0
