"""Small `Facts` implementations: plain dicts, nothing, and a store that is down.

The server's real facts come from the store's in-memory index (`sipguard.store`); these
serve `sipguard check` without a store, the benchmark and the tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sipguard.errors import StoreError
from sipguard.policy.model import Consent, ListMeta, Membership, SubjectRequest


class MemoryFacts:
    """Memberships and consents held in dicts keyed by E.164 number."""

    __slots__ = ("_consents", "_lists", "_memberships", "_requests")

    def __init__(
        self,
        memberships: Iterable[tuple[str, Membership]] = (),
        consents: Iterable[Consent] = (),
        lists: Iterable[ListMeta] = (),
        requests: Iterable[SubjectRequest] = (),
    ) -> None:
        self._memberships: dict[str, list[Membership]] = {}
        self._consents: dict[str, list[Consent]] = {}
        self._requests: dict[str, list[SubjectRequest]] = {}
        self._lists: list[ListMeta] = list(lists)
        for number, membership in memberships:
            self.add_membership(number, membership)
        for consent in consents:
            self.add_consent(consent)
        for request in requests:
            self._requests.setdefault(request.number, []).append(request)

    def add_membership(self, number: str, membership: Membership) -> None:
        self._memberships.setdefault(number, []).append(membership)

    def add_consent(self, consent: Consent) -> None:
        self._consents.setdefault(consent.number, []).append(consent)

    def memberships(self, number: str) -> Sequence[Membership]:
        return self._memberships.get(number, ())

    def consents(self, number: str) -> Sequence[Consent]:
        return self._consents.get(number, ())

    def subject_requests(self, number: str) -> Sequence[SubjectRequest]:
        return [r for r in self._requests.get(number, ()) if r.lifted_at is None]

    def add_list(self, info: ListMeta) -> None:
        self._lists.append(info)

    def lists(self) -> Sequence[ListMeta]:
        return self._lists


EMPTY_FACTS = MemoryFacts()


class UnavailableFacts:
    """A store that cannot be read: every question raises StoreError."""

    __slots__ = ("why",)

    def __init__(self, why: str = "store not loaded") -> None:
        self.why = why

    def memberships(self, number: str) -> Sequence[Membership]:
        raise StoreError(self.why)

    def consents(self, number: str) -> Sequence[Consent]:
        raise StoreError(self.why)

    def subject_requests(self, number: str) -> Sequence[SubjectRequest]:
        raise StoreError(self.why)

    def lists(self) -> Sequence[ListMeta]:
        raise StoreError(self.why)
