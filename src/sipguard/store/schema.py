"""The store's schema as numbered migrations, applied in order at open.

`PRAGMA user_version` holds the last migration applied. A migration is one SQL script run
inside a transaction together with the version bump, so a crash mid-migration leaves the
previous version whole. Never edit a shipped migration: append a new one.

Layout, and why:

* `lists` names a list and points at its current bulk `generation`. A replace-import writes
  a whole new generation and flips that pointer in the same transaction, so readers see the
  old list until the commit and a killed import leaves it untouched.
* `generation_chunks` holds a generation's serialized pyroaring `BitMap64` (E.164 digits as
  an integer) cut into pieces, so no single blob nears SQLite's 1 GB value limit even for
  the full US registry.
* `list_entries` is the append-only log of single adds/removes (CLI, MQTT): its `at` is the
  opt-out time the policy compares with consent times. Entries with `id` above the
  generation's `entries_upto` apply over the bitmap; a replace supersedes older ones.
* `consents` keeps every grant; revocation fills `revoked_at` and never deletes.
* `changes` is the change log a running server follows to refresh its in-memory index.
* `attempts` and `decisions` are written in batches off the call path; `decisions` is a
  hash chain in rowid order, anchored in `audit_chain` (`sipguard.store.chain`).
* `subject_requests` holds data subjects' objections, restrictions and erasures; lifting
  one fills `lifted_at`. An erasure deletes the number's other rows and stays, the one
  record that keeps the number from being called again.
"""

from __future__ import annotations

import sqlite3

import aiosqlite

from sipguard.errors import StoreError

_KINDS = "'internal', 'national', 'state', 'litigator', 'wireless', 'reassigned', 'custom'"
_CONSENT_TYPES = "'express', 'express-written', 'ebr-purchase', 'ebr-inquiry', 'gdpr-consent'"

MIGRATIONS: tuple[str, ...] = (
    # 1: lists, generations, entries, consents, change log, attempts, decisions
    f"""
    CREATE TABLE lists (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ({_KINDS})),
        jurisdiction TEXT,
        source TEXT NOT NULL DEFAULT '',
        refreshed_at TEXT,
        generation INTEGER,
        created_at TEXT NOT NULL
    );
    CREATE TABLE generations (
        id INTEGER PRIMARY KEY,
        list_id INTEGER NOT NULL REFERENCES lists(id),
        created_at TEXT NOT NULL,
        count INTEGER NOT NULL,
        entries_upto INTEGER NOT NULL,
        mode TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE generation_chunks (
        generation_id INTEGER NOT NULL REFERENCES generations(id),
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        UNIQUE (generation_id, seq)
    );
    CREATE TABLE list_entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        list_id INTEGER NOT NULL REFERENCES lists(id),
        number TEXT NOT NULL,
        op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
        at TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX list_entries_by_list ON list_entries (list_id, id);
    CREATE TABLE consents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        number TEXT NOT NULL,
        campaign TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ({_CONSENT_TYPES})),
        granted_at TEXT NOT NULL,
        expires_at TEXT,
        revoked_at TEXT,
        revoke_source TEXT,
        source TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX consents_by_number ON consents (number);
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('list', 'entry', 'consent')),
        ref INTEGER NOT NULL
    );
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        number TEXT NOT NULL,
        campaign TEXT NOT NULL,
        at TEXT NOT NULL,
        call_id TEXT NOT NULL
    );
    CREATE INDEX attempts_by_number ON attempts (number, at);
    CREATE INDEX attempts_by_time ON attempts (at);
    CREATE TABLE decisions (
        decision_id TEXT PRIMARY KEY,
        ts TEXT NOT NULL,
        call_id TEXT NOT NULL,
        campaign TEXT NOT NULL,
        callee TEXT,
        caller TEXT,
        action TEXT NOT NULL,
        reason TEXT NOT NULL,
        rule TEXT NOT NULL,
        trail TEXT NOT NULL
    );
    CREATE INDEX decisions_by_time ON decisions (ts);
    """,
    # 2: a consent may record the subscriber's known address (issue 5: its calling window
    # and state caps apply as well as the number's)
    """
    ALTER TABLE consents ADD COLUMN location_region TEXT;
    ALTER TABLE consents ADD COLUMN location_zone TEXT
    """,
    # 3: the decisions' hash chain (sipguard.store.chain): per row a random salt, the digest
    # of its personal fields and its link; `audit_chain` holds the chain's anchor (the link
    # of the last row a purge deleted, at first the genesis value of 32 zero bytes) and
    # the rows ever appended and purged. Rows from before this migration keep a NULL link
    # (they precede the chain); the trigger refuses any new row without a link, so only
    # the record writer, which computes it, can add decisions.
    """
    ALTER TABLE decisions ADD COLUMN salt BLOB;
    ALTER TABLE decisions ADD COLUMN personal BLOB;
    ALTER TABLE decisions ADD COLUMN link BLOB;
    CREATE TABLE audit_chain (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        anchor BLOB NOT NULL,
        anchor_rowid INTEGER NOT NULL,
        appended INTEGER NOT NULL,
        purged INTEGER NOT NULL
    );
    INSERT INTO audit_chain (id, anchor, anchor_rowid, appended, purged)
        VALUES (1, zeroblob(32), 0, 0, 0);
    CREATE TRIGGER decisions_need_a_link BEFORE INSERT ON decisions WHEN NEW.link IS NULL
    BEGIN
        SELECT RAISE(ABORT, 'a decision row needs its chain link (the record writer adds it)');
    END
    """,
    # 4: data-subject requests (GDPR Art. 17, 18, 21), and a change-log kind for them (the
    # kind's CHECK cannot be altered in place: the table is rebuilt, its rows kept)
    """
    CREATE TABLE subject_requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        number TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('object', 'restrict', 'erase')),
        at TEXT NOT NULL,
        source TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        lifted_at TEXT,
        lift_source TEXT
    );
    CREATE INDEX subject_requests_by_number ON subject_requests (number);
    CREATE TABLE changes_new (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('list', 'entry', 'consent', 'subject')),
        ref INTEGER NOT NULL
    );
    INSERT INTO changes_new (seq, kind, ref) SELECT seq, kind, ref FROM changes;
    DROP TABLE changes;
    ALTER TABLE changes_new RENAME TO changes
    """,
    # 5: a change-log kind naming a number whose consents a retention purge deleted (ref:
    # the E.164 digits), so running servers read its consents again: a 'consent' row names
    # a consent by id, and a deleted one cannot be read. Rebuilt as in 4, rows kept.
    """
    CREATE TABLE changes_new (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('list', 'entry', 'consent', 'subject',
                                           'consents-of')),
        ref INTEGER NOT NULL
    );
    INSERT INTO changes_new (seq, kind, ref) SELECT seq, kind, ref FROM changes;
    DROP TABLE changes;
    ALTER TABLE changes_new RENAME TO changes
    """,
)

LATEST = len(MIGRATIONS)


async def migrate(db: aiosqlite.Connection) -> int:
    """Bring the schema to `LATEST`; return the version found before."""
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    found = int(row[0]) if row else 0
    if found > LATEST:
        raise StoreError(
            f"the store's schema is version {found}, newer than this sipguard knows "
            f"({LATEST}); upgrade sipguard"
        )
    for version in range(found + 1, LATEST + 1):
        # executescript would commit on its own; run statements one by one in our
        # transaction so the bump and the DDL land together.
        try:
            await db.execute("BEGIN IMMEDIATE")
            for statement in _statements(MIGRATIONS[version - 1]):
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {version}")
            await db.commit()
        except sqlite3.Error as exc:
            await db.rollback()
            raise StoreError(f"schema migration {version} failed: {exc}") from None
    return found


def _statements(script: str) -> list[str]:
    """Split a migration into statements. Pieces between ';' are joined until SQLite says
    they make a complete statement: a trigger's body holds ';' of its own."""
    statements, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):  # incomplete SQL: executing it lets SQLite say what is wrong
        statements.append(pending.strip())
    return [s for s in statements if s != ";"]
