"""The in-memory index: what the call path asks instead of SQLite.

`Index` implements `sipguard.policy.model.Facts`. It is built by `Store.load_index()` and
kept in step by `Store.refresh(index)`; every mutation here is a plain assignment done on
the event loop thread, so a decision sees either the old or the new state of a list,
never half of one (a new bulk generation is deserialized elsewhere and swapped in whole).

A list answers from two layers: the bulk bitmap of its current generation, and an overlay
of single entries newer than that generation (latest operation per number wins). A bitmap
hit has no known listing time (`listed_at=None`, which the policy treats as the newest
opt-out); an overlay add carries its entry time.

A list of kind `wireless` may also hold NANP number blocks in its bitmap (keys in
`sipguard.store.codec`): a NANP number not on it exactly is looked up again by its
thousands-block and ten-thousands-block keys. Only those lists pay the two extra probes
(`_ListState.blocks`); a single entry for the number itself still wins over its block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from pyroaring import BitMap64

from sipguard.errors import StoreError
from sipguard.policy.model import Consent, ListKind, Membership, SubjectRequest
from sipguard.store.codec import NANP_KEY_HIGH, NANP_KEY_LOW, number_key

_NONE: tuple[Membership, ...] = ()
_NO_CONSENT: tuple[Consent, ...] = ()


@dataclass(frozen=True, slots=True)
class ListInfo:
    """A list's row as the store holds it."""

    id: int
    name: str
    kind: ListKind
    jurisdiction: str | None
    source: str
    refreshed_at: datetime | None
    generation: int | None  # current bulk generation, None before the first import
    entries_upto: int  # list_entries ids at or below this are part of / superseded by it
    bulk_count: int  # numbers in the current generation's bitmap


@dataclass(frozen=True, slots=True)
class Entry:
    """One single add/remove (append-only log)."""

    id: int
    list_id: int
    number: str
    op: str  # "add" | "remove"
    at: datetime
    source: str


class _ListState:
    """One list: its metadata, bulk bitmap and overlay of newer single entries. A `wireless`
    list's bitmap may also hold NANP thousands/ten-thousands blocks (`blocks`)."""

    __slots__ = ("bitmap", "blocks", "bulk_member", "info", "overlay")

    def __init__(self, info: ListInfo, bitmap: BitMap64, overlay: dict[str, Entry]) -> None:
        self.info = info
        self.bitmap = bitmap
        self.overlay = overlay
        self.blocks = info.kind is ListKind.WIRELESS
        # Built once: a bitmap hit returns this object, no allocation on the call path.
        self.bulk_member = Membership(
            info.name, info.kind, info.jurisdiction, None, info.refreshed_at
        )

    def entry_member(self, entry: Entry) -> Membership | None:
        """What a single entry for the number says (it wins over the bitmap)."""
        if entry.op == "remove":
            return None
        info = self.info
        return Membership(info.name, info.kind, info.jurisdiction, entry.at, info.refreshed_at)

    def in_block(self, key: int) -> bool:
        """Whether a number's thousands- or ten-thousands-block is on the bitmap."""
        bitmap = self.bitmap
        return NANP_KEY_LOW <= key <= NANP_KEY_HIGH and (
            key // 1000 in bitmap or key // 10000 in bitmap
        )


_READ, _WRITE = "read", "write"


class Index:
    """Lists and consents in memory; answers `Facts` questions in about a microsecond.

    While the store has a problem (never loaded, failed to refresh, or its decision records
    cannot be written and are being lost), the Facts methods raise `StoreError` so the
    policy answers `store-unavailable` (as `on_store_error` says) instead of deciding on
    data that may be stale, or placing calls that leave no record.
    """

    def __init__(self) -> None:
        self._lists: dict[int, _ListState] = {}
        self._by_name: dict[str, _ListState] = {}
        self._order: tuple[_ListState, ...] = ()
        # Every number with a single entry on some list (more at times: a number leaves it
        # when a list is installed whole). Most numbers have none, and then no list's
        # overlay needs asking.
        self._overlaid: set[str] = set()
        self._consents: dict[str, tuple[Consent, ...]] = {}
        self._subjects: dict[str, tuple[SubjectRequest, ...]] = {}  # in force only
        self.seq = 0  # last change-log sequence applied
        self._problems: dict[str, str] = {_READ: "store not loaded"}  # by side, read/write
        self.error: str | None = "store not loaded"  # the first problem: asked per call

    def adopt(self, other: Index) -> None:
        """Take the contents of `other`, a full reload that succeeded, whole: plain
        assignments on the loop thread, so a decision sees all of the old or all of the new.
        A problem writing records stays this index's own."""
        self._lists, self._by_name, self._order = other._lists, other._by_name, other._order
        self._overlaid, self._consents = other._overlaid, other._consents
        self._subjects = other._subjects
        self.seq = other.seq
        self.mark_healthy()

    # -- Facts -------------------------------------------------------------------------

    def memberships(self, number: str) -> Sequence[Membership]:
        if self.error is not None:
            raise StoreError(self.error)
        key = number_key(number)
        if key is None:
            return _NONE
        # Inlined per list (no method call): most numbers are on no list, and each list
        # must be asked.
        overlaid = number in self._overlaid
        found = _NONE
        for state in self._order:
            entry = state.overlay.get(number) if overlaid else None
            if entry is not None:
                hit = state.entry_member(entry)
                if hit is not None:
                    found = (*found, hit)
            elif key in state.bitmap or (state.blocks and state.in_block(key)):
                found = (*found, state.bulk_member)
        return found

    def consents(self, number: str) -> Sequence[Consent]:
        if self.error is not None:
            raise StoreError(self.error)
        return self._consents.get(number, _NO_CONSENT)

    def subject_requests(self, number: str) -> Sequence[SubjectRequest]:
        if self.error is not None:
            raise StoreError(self.error)
        return self._subjects.get(number, ())

    # -- health ------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Whether the lists and consents are the store's, as last read."""
        return _READ not in self._problems

    def mark_unhealthy(self, why: str) -> None:
        self._problem(_READ, why)

    def mark_healthy(self) -> None:
        self._problem(_READ, None)

    def recording_lost(self, why: str | None) -> None:
        """Decision records are being lost (`why`), or no longer (None)."""
        self._problem(_WRITE, why)

    def _problem(self, side: str, why: str | None) -> None:
        if why is None:
            self._problems.pop(side, None)
        else:
            self._problems[side] = why
        self.error = next(iter(self._problems.values()), None)

    # -- introspection -----------------------------------------------------------------

    def lists(self) -> list[ListInfo]:
        return [state.info for state in self._order]

    def list_size(self, name: str) -> int:
        """Numbers on a list now (bulk plus overlay adds minus overlay removes); a wireless
        list's number block counts as one."""
        state = self._by_name.get(name)
        if state is None:
            return 0
        size = len(state.bitmap)
        for number, entry in state.overlay.items():
            key = number_key(number)
            on_bulk = key is not None and key in state.bitmap
            size += (entry.op == "add") - on_bulk
        return size

    # -- updates (Store.load_index / Store.refresh) ------------------------------------

    def set_list(self, info: ListInfo, bitmap: BitMap64, entries: Iterable[Entry]) -> None:
        """Install a list whole: new metadata, bitmap and overlay rebuilt from `entries`."""
        overlay: dict[str, Entry] = {}
        for entry in entries:
            if entry.id > info.entries_upto:
                overlay[entry.number] = entry
        self._install(_ListState(info, bitmap, overlay))

    def set_info(self, info: ListInfo) -> None:
        """New metadata for a list whose bulk generation did not change."""
        old = self._lists.get(info.id)
        if old is None:
            self.set_list(info, BitMap64(), ())
        else:
            self._install(_ListState(info, old.bitmap, old.overlay))

    def generation_of(self, list_id: int) -> int | None:
        state = self._lists.get(list_id)
        return state.info.generation if state else None

    def apply_entry(self, entry: Entry) -> None:
        state = self._lists.get(entry.list_id)
        if state is None or entry.id <= state.info.entries_upto:
            return
        current = state.overlay.get(entry.number)
        if current is None or current.id < entry.id:
            state.overlay[entry.number] = entry
            self._overlaid.add(entry.number)

    def put_consent(self, consent: Consent) -> None:
        """Insert or replace (by id) one consent record of a number."""
        others = tuple(c for c in self._consents.get(consent.number, ()) if c.id != consent.id)
        self._consents[consent.number] = tuple(
            sorted((*others, consent), key=lambda c: (c.granted_at, c.id))
        )

    def put_subject_request(self, request: SubjectRequest) -> None:
        """Insert or replace (by id) one request; a lifted one leaves the index."""
        number = request.number
        kept = tuple(r for r in self._subjects.get(number, ()) if r.id != request.id)
        if request.lifted_at is None:
            kept = (*kept, request)
        if kept:
            self._subjects[number] = kept
        else:
            self._subjects.pop(number, None)

    def forget_consents(self, number: str) -> None:
        """Drop a number's consents (a purge deleted some; the rest are put again)."""
        self._consents.pop(number, None)

    def erase_subject(self, number: str) -> None:
        """Forget a number's consents and requests: its subject was erased, and the store
        deleted them (the erasure request is put next)."""
        self._consents.pop(number, None)
        self._subjects.pop(number, None)

    def _install(self, state: _ListState) -> None:
        old = self._lists.get(state.info.id)
        if old is not None and old.info.name != state.info.name:
            self._by_name.pop(old.info.name, None)
        self._lists[state.info.id] = state
        self._by_name[state.info.name] = state
        self._order = tuple(sorted(self._lists.values(), key=lambda s: s.info.name))
        if old is None or state.overlay is not old.overlay:  # set_info keeps the overlay
            self._overlaid = set().union(*(s.overlay for s in self._order))


def with_generation(info: ListInfo, generation: int, entries_upto: int, count: int) -> ListInfo:
    return replace(info, generation=generation, entries_upto=entries_upto, bulk_count=count)
