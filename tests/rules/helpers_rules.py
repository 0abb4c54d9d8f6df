"""Small builders shared by the rules tests (frozen clocks: every `now` is explicit)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def local(text: str, zone: str) -> datetime:
    """'2026-03-04 20:59:59' read in `zone` -> aware UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
