"""What `serve` does for the compliance rules besides deciding (issue 5), as asyncio edges.

* At start, the frequency-cap counter is rebuilt from the store's `attempts` table over the
  longest period any cap of the config may count (attempts survive a restart).
* Every second the counter forgets the attempts that have grown older than that.
* At start and every hour, each national DNC list older than its safe-harbor limit is
  logged as a warning (`dnc.list_stale`), and so is each list a campaign names by name
  that the store does not hold (`dnc.list_missing`: the campaign is not checked against
  it; `policy.freshness`).
* Shortly after start and every `retention.purge_every` seconds, the retention policy is
  applied to the store (`sipguard.store.retention`).
* Every `audit.checkpoint_every` seconds in which decisions were written, and once more on
  the way out, the decision chain's head is logged (`audit.checkpoint`): shipped off the
  machine with the log, it is what `sipguard audit verify --head` checks the store against.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sipguard.config import Config
from sipguard.errors import StoreError
from sipguard.policy.caps import AttemptCounter, AttemptRecord, required_horizon
from sipguard.policy.freshness import describe_missing, missing_lists, stale_lists
from sipguard.policy.gate import attempt_counter
from sipguard.policy.model import Facts
from sipguard.policy.rule_steps import all_caps
from sipguard.store.db import Store
from sipguard.store.retention import purge
from sipguard.store.writer import RecordWriter, attempts_since

PRUNE_EVERY = 1.0  # seconds: a prune then has about a second's expired attempts to drop
STALE_EVERY = 3600.0
FIRST_PURGE_AFTER = 10.0  # seconds after start: out of the way of loading and warming up


async def load_counter(store: Store, config: Config, now: datetime | None = None) -> (
    AttemptCounter
):
    """The counter as the stored attempts leave it (at most the caps' longest period back)."""
    when = now or datetime.now(UTC)
    horizon = required_horizon(all_caps(config.campaigns, config.policy))
    rows = await attempts_since(store, when - horizon)
    records = (AttemptRecord(r.number, r.campaign, r.call_id, r.at) for r in rows)
    return attempt_counter(config, records, when)


def warn_stale_lists(facts: Facts, config: Config, log: Any, now: datetime | None = None) -> int:
    """Log one `dnc.list_stale` warning per stale national list; returns how many."""
    found = stale_lists(facts.lists(), now or datetime.now(UTC), config.policy.default_region)
    for f in found:
        log.warning(
            "dnc.list_stale",
            list=f.list_name,
            jurisdiction=f.jurisdiction,
            age_days=None if f.age is None else f.age.days,
            limit_days=f.limit.max_age.days,
            source=f.limit.source,
            stale_list=config.policy.stale_list,
        )
    return len(found)


def warn_missing_lists(facts: Facts, config: Config, log: Any) -> int:
    """Log one `dnc.list_missing` warning per (campaign, list name) whose list the store does
    not hold; returns how many."""
    lists = facts.lists()
    found = 0
    for campaign, settings in config.campaigns.items():
        for name in missing_lists(settings.lists, lists):
            log.warning(
                "dnc.list_missing",
                campaign=campaign,
                list=name,
                detail=f"{describe_missing(name)}: calls of the campaign are not checked "
                       "against it",
                stale_list=config.policy.stale_list,
            )
            found += 1
    return found


async def run_housekeeping(counter: AttemptCounter, facts: Facts, config: Config, log: Any) -> (
    None
):
    """Prune the counter every second and warn about stale and missing lists every hour,
    until cancelled (the warnings at start are the caller's: they come before
    `sipguard.ready`)."""
    since_warning = 0.0
    while True:
        await asyncio.sleep(PRUNE_EVERY)
        counter.prune(datetime.now(UTC))
        since_warning += PRUNE_EVERY
        if since_warning >= STALE_EVERY:
            since_warning = 0.0
            try:
                warn_stale_lists(facts, config, log)
                warn_missing_lists(facts, config, log)
            except Exception as exc:  # a store problem is reported by the store watch
                log.warning("dnc.list_check_failed", detail=str(exc))


async def run_retention(store: Store, config: Config, log: Any,
                        first_after: float = FIRST_PURGE_AFTER) -> None:
    """Purge `first_after` seconds from now, then every `retention.purge_every`, until
    cancelled. A store problem is logged and the next run tries again; under a litigation
    hold this logs `retention.held` once and stops."""
    await asyncio.sleep(first_after)
    while True:
        started = time.monotonic()
        try:
            result = await purge(store, config, datetime.now(UTC))
        except StoreError as exc:
            log.warning("retention.failed", detail=str(exc))
        else:
            if result.held:
                log.warning("retention.held", detail="retention.hold is true: nothing is "
                            "purged until it is set to false and serve restarted")
                return
            log.info("retention.purged", **result.counts(),
                     took_ms=round((time.monotonic() - started) * 1000, 1),
                     cutoffs=result.cutoffs.as_text())
        await asyncio.sleep(config.retention.purge_every)


class Checkpoints:
    """Logs the record writer's chain tip as `audit.checkpoint` when it moved since the
    last line (the writer knows the tip: no query), and hands it to `also` (the MQTT bus,
    which keeps it retained at the broker: another copy off the machine)."""

    def __init__(self, writer: RecordWriter, log: Any,
                 also: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._writer = writer
        self._log = log
        self._also = also
        self._logged: int | None = None

    def log_if_moved(self) -> bool:
        tip = self._writer.tip
        if tip is None or tip.rows == self._logged:
            return False
        fields = {"rows": tip.rows, "head": tip.link.hex(), "decision_id": tip.decision_id}
        self._log.info("audit.checkpoint", **fields)
        if self._also is not None:
            self._also(fields)
        self._logged = tip.rows
        return True

    async def run(self, every: float) -> None:
        """Every `every` seconds until cancelled."""
        while True:
            await asyncio.sleep(every)
            self.log_if_moved()
