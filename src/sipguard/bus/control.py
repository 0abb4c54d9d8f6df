"""Messages on the MQTT control topics (CONTRACT §7): checked, then applied to the store.

A message is one JSON object with an `id` the sender chooses (its answer on the result
topic carries it back). `parse` is plain code: every field is checked the way the CLI
checks its options, unknown fields included, so that a typo such as `"expire"` is refused
rather than granting a consent that never ends. `apply` writes through the same `Store`
methods as `sipguard dnc` / `sipguard consent` and brings the in-memory index up to date
before it returns: the very next call to the number is decided with the change. The
`subject` topic records or ends objections and restrictions (GDPR Art. 21, 18) as
`sipguard subject` does; erasure is left to that command.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from sipguard.errors import SipguardError
from sipguard.policy.geo import subscriber_address
from sipguard.policy.model import ConsentType, ListKind, SubjectRight
from sipguard.store import subjects
from sipguard.store.codec import parse_user_time, utcnow
from sipguard.store.db import Store
from sipguard.store.importer import normalize_number
from sipguard.store.index import Index
from sipguard.store.sync import sync_now

Topic = Literal["dnc", "consent", "subject"]
MAX_ID = 200  # characters: an id is echoed and remembered, not a place for a payload
# A command is a few hundred bytes; a bigger payload is refused unread, so a stray or
# hostile message cannot hold the event loop in a JSON parser.
MAX_PAYLOAD = 16 * 1024


@dataclass(frozen=True, slots=True)
class DncChange:
    id: str
    op: Literal["add", "remove"]
    list_name: str
    number: str
    source: str
    at: datetime | None
    kind: ListKind | None


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    op: ClassVar[str] = "grant"
    id: str
    number: str
    campaign: str
    type: ConsentType
    source: str
    expires: datetime | None
    granted_at: datetime | None
    region: str | None
    zone: str | None


@dataclass(frozen=True, slots=True)
class ConsentRevoke:
    op: ClassVar[str] = "revoke"
    id: str
    number: str
    campaign: str | None
    source: str
    at: datetime | None


@dataclass(frozen=True, slots=True)
class SubjectChange:
    """An objection or restriction recorded (`object`, `restrict`) or ended (`withdraw`,
    `lift`). Erasure is not taken here: it deletes for good, so it stays a deliberate
    `sipguard subject erase --yes`."""

    id: str
    op: Literal["object", "withdraw", "restrict", "lift"]
    number: str
    source: str
    at: datetime | None

    @property
    def right(self) -> SubjectRight:
        return SubjectRight.OBJECT if self.op in ("object", "withdraw") else SubjectRight.RESTRICT

    @property
    def ends(self) -> bool:
        return self.op in ("withdraw", "lift")


Command = DncChange | ConsentGrant | ConsentRevoke | SubjectChange


class Rejected(Exception):
    """A message that cannot be applied as sent; `id` when it could be read."""

    def __init__(self, detail: str, id: str | None = None) -> None:
        super().__init__(detail)
        self.id = id


# Every field each (topic, op) takes; `id`, `op`, `number` and `source` are always required.
_FIELDS: dict[tuple[Topic, str], tuple[frozenset[str], frozenset[str]]] = {
    # (required, optional)
    ("dnc", "add"): (frozenset({"list"}), frozenset({"at", "kind"})),
    ("dnc", "remove"): (frozenset({"list"}), frozenset({"at"})),
    ("consent", "grant"): (frozenset({"campaign", "type"}),
                           frozenset({"expires", "granted_at", "state", "zone"})),
    # CONTRACT §7 gives one consent payload for both ops: a revoke may carry the grant's
    # `type` and `expires` (null, or a type, which changes nothing: a revocation ends the
    # campaign's consents whatever their type, 47 CFR 64.1200(a)(10))
    ("consent", "revoke"): (frozenset(), frozenset({"campaign", "at", "type", "expires"})),
    ("subject", "object"): (frozenset(), frozenset({"at"})),
    ("subject", "withdraw"): (frozenset(), frozenset({"at"})),
    ("subject", "restrict"): (frozenset(), frozenset({"at"})),
    ("subject", "lift"): (frozenset(), frozenset({"at"})),
}
_ALWAYS = frozenset({"id", "op", "number", "source"})


def parse(topic: Topic, payload: bytes, region: str) -> Command:
    """The command a control message carries; `Rejected` saying what is wrong otherwise.
    Numbers are read as the CLI reads them (E.164, or national in `region`)."""
    if len(payload) > MAX_PAYLOAD:
        raise Rejected(f"{len(payload)} bytes: a control message is at most {MAX_PAYLOAD}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Rejected("not a JSON object")
    given = data.get("id")
    id = given if isinstance(given, str) and 0 < len(given) <= MAX_ID else None
    if id is None:
        raise Rejected(f"'id' must be a string of 1 to {MAX_ID} characters")
    try:
        return _command(topic, data, id, region)
    except Rejected:
        raise
    except SipguardError as exc:  # a time, region or zone the shared checks refused
        raise Rejected(str(exc), id) from None


def _command(topic: Topic, data: dict[str, Any], id: str, region: str) -> Command:
    op = data.get("op")
    ops = sorted(o for t, o in _FIELDS if t == topic)
    if op not in ops:
        raise Rejected(f"'op' must be one of {', '.join(ops)}", id)
    required, optional = _FIELDS[topic, op]
    unknown = set(data) - _ALWAYS - required - optional
    if unknown:
        known = ", ".join(sorted(_ALWAYS | required | optional))
        raise Rejected(f"unknown field(s) {', '.join(sorted(unknown))} (known: {known})", id)
    fields = {name: _text(data, name, id, name in _ALWAYS | required)
              for name in _ALWAYS | required | optional}
    number = normalize_number(fields["number"] or "", region)
    if number is None:
        raise Rejected(f"'number' {fields['number']!r} is not a valid phone number "
                       f"(default region {region})", id)
    source = fields["source"] or ""
    if topic == "dnc":
        kind = fields.get("kind")
        if kind is not None and kind not in ListKind._value2member_map_:
            raise Rejected(f"'kind' must be one of {', '.join(k.value for k in ListKind)}", id)
        list_name = fields["list"] or ""
        return DncChange(id, "add" if op == "add" else "remove", list_name, number, source,
                         _time(fields, "at"), ListKind.of_list(list_name, kind))
    if topic == "subject":
        return SubjectChange(id, op, number, source, _time(fields, "at"))
    kind = fields.get("type")  # required for a grant: None only on a revoke
    if kind is not None and kind not in ConsentType._value2member_map_:
        raise Rejected(f"'type' must be one of {', '.join(t.value for t in ConsentType)}", id)
    if op == "grant":
        place, zone = subscriber_address(fields.get("state"), fields.get("zone"),
                                         ("'state'", "'zone'"))
        return ConsentGrant(id, number, fields["campaign"] or "", ConsentType(kind or ""), source,
                            _time(fields, "expires"), _time(fields, "granted_at"), place, zone)
    if fields.get("expires") is not None:
        raise Rejected("'expires' has no meaning on a revoke (a revocation takes effect at"
                       " 'at', or now): send null or leave it out", id)
    return ConsentRevoke(id, number, fields.get("campaign"), source, _time(fields, "at"))


def _text(data: dict[str, Any], name: str, id: str, required: bool) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise Rejected(f"'{name}' must be a non-empty string", id)
    return value.strip()


def _time(fields: dict[str, str | None], name: str) -> datetime | None:
    text = fields.get(name)
    return None if text is None else parse_user_time(f"'{name}'", text)


async def apply(store: Store, index: Index, command: Command) -> str:
    """Write the command to the store, then refresh `index` from it; what was done, in
    words. `Rejected` for a change the store refuses as asked (an unknown list, a consent
    that would end before it began); a `StoreError` when the store itself fails."""
    if isinstance(command, DncChange):
        if await store.get_list(command.list_name) is None and (
            command.op == "remove" or command.kind is None
        ):
            hint = "" if command.op == "remove" else "; give 'kind' to create it"
            raise Rejected(f"unknown list {command.list_name!r}{hint}", command.id)
        entry = await store.add_entry(command.list_name, command.number, command.op,
                                      source=command.source, at=command.at, kind=command.kind)
        done = f"entry {entry.id}: {command.op} on list {command.list_name!r}"
    elif isinstance(command, ConsentGrant):
        granted = command.granted_at or utcnow()
        if command.expires is not None and command.expires <= granted:
            raise Rejected("the consent would expire before it was granted", command.id)
        record = await store.grant_consent(
            command.number, command.campaign, command.type, command.source,
            granted_at=granted, expires_at=command.expires,
            location_region=command.region, location_zone=command.zone)
        done = f"consent {record.id} granted for campaign {command.campaign!r}"
    elif isinstance(command, ConsentRevoke):
        revoked = await store.revoke_consent(command.number, command.campaign, command.source,
                                             at=command.at)
        done = f"{len(revoked)} consent(s) revoked"
    elif command.ends:
        ended = await subjects.lift(store, command.number, command.right, command.source,
                                    at=command.at)
        done = f"{len(ended)} {command.right.value} request(s) ended"
    else:
        request = await subjects.record(store, command.number, command.right, command.source,
                                        at=command.at)
        done = f"{command.right.value} request {request.id} recorded"
    await sync_now(store, index)
    return done
