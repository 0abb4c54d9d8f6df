"""Retention: deleting what the policy says is no longer to be kept (`[retention]`).

What goes, each once older than its cutoff (`cutoffs`):

* `decisions` by `ts`, as a prefix of their hash chain: the oldest rows, up to the first
  one young enough to keep, each batch moving the chain's anchor to its last row
  (`sipguard.store.audit.purge_decisions`);
* `attempts` by `at`, only as far back as the longest frequency cap counts, at least a
  day (the decisions hold the same calls as evidence);
* `consents` that ended (revoked, expired, or an EBR past its longest term) before the
  cutoff. A consent in force is
  never deleted. Nor is a revoked one whose revocation may still void a consent in force:
  `policy.consent_rules` lets a revocation void other consents of the number granted
  before it (a '*' record, or `revoke_scope = "all"`), so deleting it would turn that
  consent back into an allow;
* list history no longer in effect. A bulk generation goes once a later generation of its
  list replaced it before the cutoff, with its chunks. A single entry goes once a
  replace-import superseded it before the cutoff: the index reads a list as its current
  generation plus the entries with an id above that generation's `entries_upto`
  (`sync.load_index`, `Index.set_list`), so the entries at or below it are read by no one;
  the supersession time is the creation of the first generation whose `entries_upto`
  reaches the entry (add/remove imports carry `entries_upto` over, so only a replace
  moves it). The current generation and every entry above its `entries_upto` stay, however
  old: they are the list, and dropping an old opt-out would allow the call;
* the change log (`changes`: kinds and row ids, what running servers follow) but its newest
  `KEEP_CHANGES` rows. A server that had not read the rows purged finds the gap and reads
  the whole store again (`sync.refresh`), so no change is ever missed.

Deleted consents are told to running servers (their index holds ended consents) with a
`consents-of` change per number, in the same transaction: the log names a consent by id,
and a deleted one cannot be read.

Rows go `batch` at a time, one short write transaction each, so the record writer, which
shares the connection's lock and the database's write lock, waits at most one batch.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sipguard.config import Config
from sipguard.policy.caps import required_horizon
from sipguard.policy.consent_rules import EBR_TYPES, ebr_terms
from sipguard.policy.rule_steps import all_caps
from sipguard.store.audit import purge_decisions
from sipguard.store.codec import time_text
from sipguard.store.db import Store

BATCH = 5000
MIN_ATTEMPTS_AGE = timedelta(days=1)
# Change-log rows kept: far more than a server polling every second falls behind by, and a
# few MB at most (each names a row by id; no personal data).
KEEP_CHANGES = 100_000


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Rows older than these (by their table's time) may go."""

    decisions: datetime
    attempts: datetime
    consents: datetime
    lists: datetime

    @classmethod
    def of(cls, config: Config, now: datetime) -> Cutoffs:
        kept = config.retention
        horizon = required_horizon(all_caps(config.campaigns, config.policy))
        return cls(
            decisions=now - timedelta(days=kept.decisions_days),
            attempts=now - max(horizon, MIN_ATTEMPTS_AGE),
            consents=now - timedelta(days=kept.consents_days),
            lists=now - timedelta(days=kept.lists_days),
        )

    def as_text(self) -> dict[str, str]:
        return {key: time_text(value) for key, value in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """Rows deleted per table (or, on a dry run, that would be)."""

    held: bool
    dry_run: bool
    cutoffs: Cutoffs
    decisions: int = 0
    attempts: int = 0
    consents: int = 0
    list_entries: int = 0
    generation_chunks: int = 0
    generations: int = 0
    changes: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts().values())

    def counts(self) -> dict[str, int]:
        return {
            "decisions": self.decisions, "attempts": self.attempts, "consents": self.consents,
            "list_entries": self.list_entries, "generation_chunks": self.generation_chunks,
            "generations": self.generations, "changes": self.changes,
        }

    def as_json(self) -> dict[str, Any]:
        return {"hold": self.held, "dry_run": self.dry_run, **self.counts(),
                "cutoffs": self.cutoffs.as_text()}


# Each: the rows of a table (aliased `t`) that may go, given its parameters.
_ATTEMPTS = "t.at < ?"
_CHANGES = "t.seq <= (SELECT max(seq) FROM changes) - ?"
# An EBR ends without a date of its own: at the end of its term (data/consent_rules.toml),
# the longest any country gives its type, so none is deleted while a call may rest on it.
_EBR_TERMS = {kind: max(t.max_days for t in ebr_terms() if t.type is kind) for kind in EBR_TYPES}
_EBR_ENDED = "".join(f" OR (t.type = '{kind.value}' AND t.granted_at < ?)"
                     for kind in sorted(_EBR_TERMS))
_CONSENTS = (
    f"(t.revoked_at < ? OR t.expires_at < ?{_EBR_ENDED})"
    " AND NOT (t.revoked_at IS NOT NULL AND EXISTS (SELECT 1 FROM consents o"
    " WHERE o.number = t.number AND o.id != t.id AND o.revoked_at IS NULL"
    " AND (o.expires_at IS NULL OR o.expires_at > ?) AND o.granted_at <= t.revoked_at))"
)


def _replaced(g: str) -> str:
    """Generations (aliased `g`) a later one of their list replaced before the cutoff."""
    return (
        f"{g}.id NOT IN (SELECT generation FROM lists WHERE generation IS NOT NULL)"
        f" AND EXISTS (SELECT 1 FROM generations n"
        f" WHERE n.list_id = {g}.list_id AND n.id > {g}.id AND n.created_at < ?)"
    )


_CHUNKS = f"t.generation_id IN (SELECT g.id FROM generations g WHERE {_replaced('g')})"
_SUPERSEDED = "t.list_id = ? AND t.id <= ?"
# Per list: the highest `entries_upto` of a generation created before the cutoff, never
# above the current generation's (entries above that are the list in effect).
_SUPERSEDED_UPTO = (
    "SELECT g.list_id, min(max(g.entries_upto), c.entries_upto) FROM generations g"
    " JOIN lists l ON l.id = g.list_id JOIN generations c ON c.id = l.generation"
    " WHERE g.created_at < ? GROUP BY g.list_id"
)


async def purge(
    store: Store, config: Config, now: datetime, *, dry_run: bool = False, batch: int = BATCH,
    keep_changes: int = KEEP_CHANGES,
) -> PurgeResult:
    """Apply `config.retention` at `now`; count only with `dry_run`. Raises StoreError."""
    cutoffs = Cutoffs.of(config, now)
    if config.retention.hold:
        return PurgeResult(held=True, dry_run=dry_run, cutoffs=cutoffs)
    table = _Purger(store, dry_run, batch)
    lists = time_text(cutoffs.lists)
    consents = time_text(cutoffs.consents)
    entries = 0
    # Entries before generations: a generation's creation time says when it superseded them.
    for list_id, upto in await store.fetchall(_SUPERSEDED_UPTO, (lists,)):
        entries += await table.rows("list_entries", _SUPERSEDED, (int(list_id), int(upto)))
    return PurgeResult(
        held=False,
        dry_run=dry_run,
        cutoffs=cutoffs,
        decisions=await purge_decisions(store, time_text(cutoffs.decisions), batch=batch,
                                        dry_run=dry_run),
        attempts=await table.rows("attempts", _ATTEMPTS, (time_text(cutoffs.attempts),)),
        consents=await table.rows("consents", _CONSENTS, told="consents-of", params=(
            consents, consents,
            *(time_text(cutoffs.consents - timedelta(days=_EBR_TERMS[kind]))
              for kind in sorted(_EBR_TERMS)),
            time_text(now))),
        list_entries=entries,
        # chunks first: they reference their generation
        generation_chunks=await table.rows("generation_chunks", _CHUNKS, (lists,)),
        generations=await table.rows("generations", _replaced("t"), (lists,)),
        changes=await table.rows("changes", _CHANGES, (keep_changes,)),
    )


@dataclass(frozen=True, slots=True)
class _Purger:
    store: Store
    dry_run: bool
    batch: int

    async def rows(self, table: str, where: str, params: tuple[Any, ...] = (), *,
                   told: str | None = None) -> int:
        """Delete (or count) the rows of `table` matching `where`, a batch per transaction.
        With `told`, each batch also logs a change of that kind per number whose rows it
        deleted (ref: the E.164 digits), so running servers read that number again."""
        if self.dry_run:
            found = await self.store.fetchall(
                f"SELECT count(*) FROM {table} t WHERE {where}", params
            )
            return int(found[0][0])
        sql = (f"DELETE FROM {table} WHERE rowid IN"
               f" (SELECT t.rowid FROM {table} t WHERE {where} LIMIT ?)"
               + (" RETURNING number" if told else ""))
        deleted = 0
        while True:
            async with self.store.transaction() as db:
                async with db.execute(sql, (*params, self.batch)) as cur:
                    numbers = [str(r[0]) for r in await cur.fetchall()] if told else []
                    done = len(numbers) if told else cur.rowcount
                if numbers:
                    await db.executemany("INSERT INTO changes (kind, ref) VALUES (?, ?)",
                                         [(told, int(n[1:])) for n in sorted(set(numbers))])
            deleted += done
            if done < self.batch:
                return deleted
            await asyncio.sleep(0)  # let the record writer have the lock between batches
