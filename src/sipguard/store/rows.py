"""Row shapes shared by the store and the index sync: the SELECTs and their decoding."""

from __future__ import annotations

import sqlite3

from sipguard.policy.model import Consent, ConsentType, ListKind, SubjectRequest, SubjectRight
from sipguard.store.codec import text_time
from sipguard.store.index import Entry, ListInfo

LIST_COLUMNS = (
    "l.id, l.name, l.kind, l.jurisdiction, l.source, l.refreshed_at, l.generation, "
    "coalesce(g.entries_upto, 0), coalesce(g.count, 0)"
)
LIST_QUERY = f"SELECT {LIST_COLUMNS} FROM lists l LEFT JOIN generations g ON g.id = l.generation"
CONSENT_COLUMNS = (
    "id, number, campaign, type, granted_at, expires_at, revoked_at, revoke_source, source, "
    "location_region, location_zone"
)
ENTRY_COLUMNS = "id, list_id, number, op, at, source"
SUBJECT_COLUMNS = "id, number, kind, at, source, lifted_at, lift_source"


def list_info(row: sqlite3.Row) -> ListInfo:
    return ListInfo(
        id=int(row[0]),
        name=str(row[1]),
        kind=ListKind(row[2]),
        jurisdiction=row[3],
        source=str(row[4]),
        refreshed_at=text_time(row[5]),
        generation=row[6],
        entries_upto=int(row[7]),
        bulk_count=int(row[8]),
    )


def entry_row(row: sqlite3.Row) -> Entry:
    at = text_time(row[4])
    assert at is not None  # NOT NULL column
    return Entry(int(row[0]), int(row[1]), str(row[2]), str(row[3]), at, str(row[5]))


def consent_row(row: sqlite3.Row) -> Consent:
    granted = text_time(row[4])
    assert granted is not None  # NOT NULL column
    return Consent(
        id=int(row[0]),
        number=str(row[1]),
        campaign=str(row[2]),
        type=ConsentType(row[3]),
        granted_at=granted,
        expires_at=text_time(row[5]),
        revoked_at=text_time(row[6]),
        revoke_source=row[7],
        source=str(row[8]),
        location_region=row[9],
        location_zone=row[10],
    )


def subject_row(row: sqlite3.Row) -> SubjectRequest:
    at = text_time(row[3])
    assert at is not None  # NOT NULL column
    return SubjectRequest(int(row[0]), str(row[1]), SubjectRight(row[2]), at, str(row[4]),
                          text_time(row[5]), row[6])
