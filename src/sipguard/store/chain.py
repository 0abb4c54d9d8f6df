"""The decisions hash chain: how a row's link is made, and how a walk over rows checks it.

Plain functions over bytes and text, no I/O: the record writer (`sipguard.store.writer`)
makes links with them, `sipguard.store.audit` walks the stored rows through `Verifier`.

The construction, for an auditor who re-implements the check (all hashes SHA-256):

* `enc(v)`: a text value as its UTF-8 bytes behind their length (4 bytes, big-endian);
  NULL as the 4 bytes FF FF FF FF. `enc(a, b, ...)` is `enc(a) || enc(b) || ...`. No two
  different value sequences encode alike.
* `steps(trail)`: the rule trail (the JSON list in `decisions.trail`) reduced to what
  is not personal: the number of steps (4 bytes, big-endian), then `enc(rule, outcome)` of
  each step in order. A step's `detail` may quote a number (the caller ID a campaign does
  not allow, the digits of an invalid number), so details count as personal.
* personal digest = `H(salt || enc(callee, caller, call_id, trail))`, with `salt` 16
  random bytes of the row's own, so that the digest of a redacted row cannot be reversed
  by hashing every possible number (there are only about 10^10 in a country plan).
* link = `H(previous link || enc(decision_id, ts, campaign, action, reason, rule) ||
  steps(trail) || personal digest)`; the previous link of the first row is the anchor.
* The anchor (`audit_chain.anchor`) is 32 zero bytes until the retention purge deletes
  rows; then it is the link of the last row deleted (deletion takes the oldest rows
  first, so the chain always starts right after the anchor).
* Rows follow each other in rowid order. Rows written before the chain existed have a
  NULL link and may only come before the first linked row.
* A redacted row (GDPR erasure) has callee, caller and salt NULL, call_id '' and every
  step's detail '': its stored personal digest stands in for the one that can no longer
  be recomputed, and its link must still follow.
* `audit_chain.appended - audit_chain.purged` is how many linked rows there must be.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

GENESIS = bytes(32)
SALT_BYTES = 16
_NULL = b"\xff\xff\xff\xff"
_length = struct.Struct(">I").pack
_sha256 = hashlib.sha256


class BadTrail(ValueError):
    """A trail column that is not the JSON list of steps the writer stores."""


def enc(*values: str | None) -> bytes:
    """The unambiguous encoding of a sequence of text values (see the module doc)."""
    parts = []
    for value in values:
        if value is None:
            parts.append(_NULL)
        else:
            data = value.encode()
            parts.append(_length(len(data)))
            parts.append(data)
    return b"".join(parts)


def _parse_trail(trail: str) -> list[dict[str, Any]]:
    try:
        steps = json.loads(trail)
    except ValueError:
        raise BadTrail("its trail is not JSON") from None
    if not isinstance(steps, list) or not all(
        isinstance(s, dict) and isinstance(s.get("rule"), str)
        and isinstance(s.get("outcome"), str) for s in steps
    ):
        raise BadTrail("its trail is not a list of steps")
    return steps


# Most calls share a handful of trails (the same text object, even): parsing each text
# once keeps the writer's cost per row to hashing.
@lru_cache(maxsize=4096)
def steps(trail: str) -> bytes:
    """`steps(trail)` of the module doc. Raises BadTrail."""
    parsed = _parse_trail(trail)
    return _length(len(parsed)) + b"".join(
        enc(s["rule"], s["outcome"]) for s in parsed
    )


def redacted_trail(trail: str) -> str:
    """The trail as a redacted row keeps it: every step's detail emptied."""
    return json.dumps([{**s, "detail": ""} for s in _parse_trail(trail)],
                      separators=(",", ":"))


def personal_digest(salt: bytes, callee: str | None, caller: str | None,
                    call_id: str | None, trail: str) -> bytes:
    return _sha256(salt + enc(callee, caller, call_id, trail)).digest()


def link(prev: bytes, decision_id: str | None, ts: str | None, campaign: str | None,
         action: str | None, reason: str | None, rule: str | None, trail: str,
         personal: bytes) -> bytes:
    """A row's link (the one function that makes links: writer, verify and export)."""
    return _sha256(prev + enc(decision_id, ts, campaign, action, reason, rule)
                   + steps(trail) + personal).digest()


@dataclass(frozen=True, slots=True)
class ChainTip:
    """The chain's newest end: its link, the rows ever appended, the newest row's id."""

    link: bytes
    rows: int
    decision_id: str | None


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One `decisions` row as read back, in the order of `audit.COLUMNS`."""

    rowid: int
    decision_id: str
    ts: str
    call_id: str
    campaign: str
    callee: str | None
    caller: str | None
    action: str
    reason: str
    rule: str
    trail: str
    salt: bytes | None
    personal: bytes | None
    link: bytes | None

    @property
    def redacted(self) -> bool:
        return self.salt is None and self.link is not None


@dataclass(slots=True)
class Verifier:
    """Walks rows in rowid order from the anchor; stops counting at the first break."""

    prev: bytes
    want_head: bytes | None = None
    rows: int = 0
    redacted: int = 0
    unchained: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    broken_at: str | None = None
    detail: str | None = None
    head_seen: bool = False
    started: bool = False  # a linked row came before: a row without a link is a break

    def __post_init__(self) -> None:
        self.head_seen = self.want_head == self.prev  # the checkpoint's row was purged last

    @property
    def ok(self) -> bool:
        return self.detail is None

    def feed(self, row: StoredRow) -> bool:
        """Check the next row; False once the chain is broken (further rows are ignored)."""
        if not self.ok:
            return False
        problem = self._problem(row)
        if problem is not None:
            self.broken_at, self.detail = row.decision_id, f"decision {row.decision_id}: {problem}"
            return False
        if row.link is None:
            self.unchained += 1
            return True
        self.prev = row.link
        self.started = True
        self.rows += 1
        self.redacted += row.redacted
        self.first_ts = self.first_ts or row.ts
        self.last_ts = row.ts
        self.head_seen = self.head_seen or row.link == self.want_head
        return True

    def _problem(self, row: StoredRow) -> str | None:
        if row.link is None:
            return "it has no link but follows linked rows" if self.started else None
        try:
            personal = self._personal(row)
            if personal is None:
                return ("it is marked redacted (no salt) but still holds a number, a call-id "
                        "or trail details, or lost its personal digest")
            if personal != row.personal:
                return ("its callee, caller, call-id or trail differ from what its personal "
                        "digest was made of")
            if link(self.prev, row.decision_id, row.ts, row.campaign, row.action, row.reason,
                    row.rule, row.trail, personal) != row.link:
                return ("its link does not follow from the row before it (the anchor for the "
                        "first): one of its fields or its link was changed, or a row before "
                        "it was removed, added or moved, or the anchor was changed")
        except BadTrail as exc:
            return str(exc)
        return None

    def _personal(self, row: StoredRow) -> bytes | None:
        """The personal digest the row's link must have been made with (None: unusable)."""
        if row.salt is not None:
            return personal_digest(row.salt, row.callee, row.caller, row.call_id, row.trail)
        clean = (row.callee is None and row.caller is None and row.call_id == ""
                 and redacted_trail(row.trail) == row.trail)
        return row.personal if clean else None

    def finish(self, expected_rows: int) -> None:
        """After the last row: the count of linked rows the chain's counters call for,
        and the checkpoint asked for."""
        if not self.ok:
            return
        if self.rows != expected_rows:
            self.detail = (f"the chain holds {self.rows} rows where its counters say "
                           f"{expected_rows}: rows were deleted from its end, or added")
        elif self.want_head is not None and not self.head_seen:
            self.detail = (f"the checkpoint head {self.want_head.hex()} is not in the chain: "
                           "it was cut or rewritten after the checkpoint (or the retention "
                           "purge has deleted the row the checkpoint names)")

    @property
    def head(self) -> bytes:
        return self.prev

    def report(self) -> dict[str, Any]:
        return {"ok": self.ok, "rows": self.rows, "redacted": self.redacted,
                "unchained": self.unchained, "first_ts": self.first_ts,
                "last_ts": self.last_ts, "head": self.head.hex(),
                "broken_at": self.broken_at, "detail": self.detail}
