"""Shared pieces of the compliance rules: the result a rule returns and the shipped tables.

Rules are data. Every table lives under `sipguard/data/` (TOML or CSV, shipped as package
data) and every entry names its legal source next to it; the modules here only interpret
them. A rule function takes its inputs (number facts, campaign settings, `now` as an aware
UTC datetime) and returns a `RuleResult`: pass, or block with a `Reason`, always with one
`Step` for the decision trail, and for calling windows the next opening time.
"""

from __future__ import annotations

import csv
import io
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

from sipguard.errors import PolicyError
from sipguard.policy.model import Reason, Step

DATA_PACKAGE = "sipguard"  # tables live in sipguard/data/ (package data, see pyproject)


@dataclass(frozen=True, slots=True)
class RuleResult:
    """What one rule found: `step` for the trail, `reason` when it decides the call."""

    step: Step
    reason: Reason | None = None
    opens_at: datetime | None = None  # outside-calling-window: next opening (aware, UTC)

    @property
    def blocked(self) -> bool:
        return self.step.outcome == "block"

    @property
    def allowed(self) -> bool:
        """An allow that ends the evaluation (e.g. an EBR override: reason `ebr`)."""
        return self.step.outcome == "allow"


def passed(rule: str, detail: str = "") -> RuleResult:
    return RuleResult(Step(rule, "pass", detail))


def skipped(rule: str, detail: str = "") -> RuleResult:
    return RuleResult(Step(rule, "skip", detail))


def blocked(
    rule: str, reason: Reason, detail: str = "", opens_at: datetime | None = None
) -> RuleResult:
    return RuleResult(Step(rule, "block", detail), reason, opens_at)


def require_aware(now: datetime) -> datetime:
    """Rules take wall-clock time as an aware datetime; a naive one is a caller's bug."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise PolicyError(f"`now` must be an aware datetime, got naive {now.isoformat()}")
    return now


def elapsed_days(since: datetime, now: datetime) -> int:
    """Calendar days from `since` to `now`, both read in UTC (day 0 is the same day)."""
    return (now.astimezone(UTC).date() - since.astimezone(UTC).date()).days


@cache
def load_toml(name: str) -> dict[str, Any]:
    """A shipped TOML table, parsed once."""
    text = resources.files(DATA_PACKAGE).joinpath("data", name).read_text(encoding="utf-8")
    return tomllib.loads(text)


@cache
def load_csv(name: str) -> tuple[dict[str, str], ...]:
    """A shipped CSV table (header row; lines starting with '#' are comments), parsed once."""
    text = resources.files(DATA_PACKAGE).joinpath("data", name).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return tuple(
        {k: (v or "").strip() for k, v in row.items()}
        for row in csv.DictReader(io.StringIO("\n".join(lines)))
    )


def as_date(value: object, where: str) -> date | None:
    """A TOML date (or an empty value) from a shipped table."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise PolicyError(f"{where}: {value!r} is not a date")


def parse_period(text: str) -> timedelta:
    """'24h', '7d', '90m' -> timedelta (used by caps in shipped tables and the config)."""
    units = {"m": 60, "h": 3600, "d": 86400}
    value, unit = text[:-1].strip(), text[-1:].lower()
    if unit not in units or not value.isdigit() or int(value) <= 0:
        raise PolicyError(f"{text!r} is not a period like '24h', '7d' or '90m'")
    return timedelta(seconds=int(value) * units[unit])
