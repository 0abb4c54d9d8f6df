"""The Index's overlay of single entries (store/index.py): it wins over the bitmap of its
own list only, whichever numbers other lists' overlays hold."""

from __future__ import annotations

from datetime import UTC, datetime

from pyroaring import BitMap64

from sipguard.policy.model import ListKind
from sipguard.store.index import Entry, Index, ListInfo

AT = datetime(2026, 3, 1, tzinfo=UTC)
A, B, C = "+12125550001", "+12125550002", "+12125550003"


def info(list_id: int, name: str, kind: ListKind, upto: int = 0) -> ListInfo:
    return ListInfo(list_id, name, kind, None, "test", None, 1, upto, 0)


def entry(entry_id: int, list_id: int, number: str, op: str) -> Entry:
    return Entry(entry_id, list_id, number, op, AT, "test")


def names(index: Index, number: str) -> list[tuple[str, datetime | None]]:
    return [(m.list_name, m.listed_at) for m in index.memberships(number)]


def test_single_entries_win_on_their_own_list_only() -> None:
    index = Index()
    index.set_list(info(1, "internal", ListKind.INTERNAL), BitMap64([12125550001]), ())
    index.set_list(info(2, "national", ListKind.NATIONAL), BitMap64([12125550001, 12125550002]),
                   [entry(1, 2, A, "remove"), entry(2, 2, C, "add")])
    index.mark_healthy()
    assert names(index, A) == [("internal", None)]  # removed from national, still internal
    assert names(index, B) == [("national", None)]
    assert names(index, C) == [("national", AT)]
    index.apply_entry(entry(3, 1, B, "add"))  # B now has an entry too, on the other list
    assert names(index, B) == [("internal", AT), ("national", None)]
    index.apply_entry(entry(4, 2, A, "add"))
    assert names(index, A) == [("internal", None), ("national", AT)]


def test_a_list_installed_whole_drops_the_entries_it_supersedes() -> None:
    index = Index()
    index.set_list(info(1, "national", ListKind.NATIONAL), BitMap64([12125550001]),
                   [entry(1, 1, A, "remove")])
    index.mark_healthy()
    assert names(index, A) == []
    index.set_info(info(1, "national", ListKind.NATIONAL))  # same generation: entry kept
    assert names(index, A) == []
    index.set_list(info(1, "national", ListKind.NATIONAL, upto=1), BitMap64([12125550001]),
                   [entry(1, 1, A, "remove")])
    assert names(index, A) == [("national", None)]
