"""Control messages (CONTRACT §7) as `parse` reads them: every field checked, nothing guessed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from sipguard.bus.control import (
    Command,
    ConsentGrant,
    ConsentRevoke,
    DncChange,
    Rejected,
    SubjectChange,
    Topic,
    parse,
)
from sipguard.policy.model import ConsentType, ListKind, SubjectRight


def message(topic: Topic, **fields: Any) -> Command:
    return parse(topic, json.dumps(fields).encode(), "US")


def test_a_dnc_add_is_read_with_its_number_in_e164_and_the_kind_from_the_list_name() -> None:
    change = message("dnc", id="m1", op="add", list="internal", number="(212) 555-1234",
                     source="call 17 agent 4")
    assert change == DncChange("m1", "add", "internal", "+12125551234", "call 17 agent 4",
                               None, ListKind.INTERNAL)


def test_a_dnc_add_to_a_list_named_freely_takes_its_kind_and_time() -> None:
    change = message("dnc", id="m2", op="add", list="crm-optouts", kind="custom",
                     number="+12125551234", source="crm", at="2026-05-01T12:00:00Z")
    assert isinstance(change, DncChange)
    assert change.kind is ListKind.CUSTOM
    assert change.at == datetime(2026, 5, 1, 12, tzinfo=UTC)


def test_a_consent_grant_and_revoke_are_read_whole() -> None:
    grant = message("consent", id="c1", op="grant", number="+12125551234", campaign="spring",
                    type="express-written", source="form 88", expires="2027-01-01",
                    state="us-fl", zone="America/New_York")
    assert grant == ConsentGrant("c1", "+12125551234", "spring", ConsentType.EXPRESS_WRITTEN,
                                 "form 88", datetime(2027, 1, 1, tzinfo=UTC), None, "US-FL",
                                 "America/New_York")
    revoke = message("consent", id="c2", op="revoke", number="2125551234", source="sms STOP")
    assert revoke == ConsentRevoke("c2", "+12125551234", None, "sms STOP", None)


def test_a_revoke_in_the_grants_shape_is_taken() -> None:
    """CONTRACT §7 lists one payload for both ops: a producer that always sends every
    field sends a revoke with `type` and `expires` too."""
    for extra in ({"type": None, "expires": None}, {"type": "express-written"}):
        revoke = message("consent", id="c3", op="revoke", number="2125551234",
                         campaign="spring", source="sms STOP", **extra)
        assert revoke == ConsentRevoke("c3", "+12125551234", "spring", "sms STOP", None)


def test_subject_requests_are_read_with_the_right_they_concern() -> None:
    change = message("subject", id="s1", op="withdraw", number="2125551234", source="phone",
                     at="2026-11-28T10:00:00Z")
    assert change == SubjectChange("s1", "withdraw", "+12125551234", "phone",
                                   datetime(2026, 11, 28, 10, tzinfo=UTC))
    assert isinstance(change, SubjectChange)
    assert (change.right, change.ends) == (SubjectRight.OBJECT, True)
    restrict = message("subject", id="s2", op="restrict", number="+12125551234", source="x")
    assert isinstance(restrict, SubjectChange)
    assert (restrict.right, restrict.ends) == (SubjectRight.RESTRICT, False)


@pytest.mark.parametrize(("topic", "fields", "says"), [
    ("subject", {"id": "a", "op": "erase", "number": "+12125551234", "source": "x"},
     "'op' must be one of lift, object, restrict, withdraw"),
    ("dnc", {"op": "add", "list": "internal", "number": "+12125551234", "source": "x"},
     "'id' must be"),
    ("dnc", {"id": "a", "op": "delete", "list": "internal", "number": "+12125551234",
             "source": "x"}, "'op' must be one of add, remove"),
    ("dnc", {"id": "a", "op": "add", "number": "+12125551234", "source": "x"},
     "'list' must be a non-empty string"),
    ("dnc", {"id": "a", "op": "add", "list": "internal", "number": "12", "source": "x"},
     "is not a valid phone number"),
    ("dnc", {"id": "a", "op": "add", "list": "internal", "number": "+12125551234"},
     "'source' must be a non-empty string"),
    ("dnc", {"id": "a", "op": "add", "list": "x", "kind": "nope", "number": "+12125551234",
             "source": "x"}, "'kind' must be one of"),
    ("dnc", {"id": "a", "op": "remove", "list": "internal", "kind": "internal",
             "number": "+12125551234", "source": "x"}, "unknown field(s) kind"),
    ("consent", {"id": "a", "op": "grant", "number": "+12125551234", "campaign": "c",
                 "type": "express", "source": "x", "expire": "2027-01-01"},
     "unknown field(s) expire"),
    ("consent", {"id": "a", "op": "grant", "number": "+12125551234", "campaign": "c",
                 "type": "verbal", "source": "x"}, "'type' must be one of"),
    ("consent", {"id": "a", "op": "grant", "number": "+12125551234", "campaign": "c",
                 "type": "express", "source": "x", "expires": "next year"},
     "is not an ISO-8601 date or time"),
    ("consent", {"id": "a", "op": "grant", "number": "+12125551234", "campaign": "c",
                 "type": "express", "source": "x", "state": "US-XX"},
     "'state' 'US-XX' is not a known region"),
    ("consent", {"id": "a", "op": "revoke", "number": 2125551234, "source": "x"},
     "'number' must be a non-empty string"),
    ("consent", {"id": "a", "op": "revoke", "number": "+12125551234", "source": "x",
                 "type": "verbal"}, "'type' must be one of"),
    ("consent", {"id": "a", "op": "revoke", "number": "+12125551234", "source": "x",
                 "expires": "2027-01-01"}, "'expires' has no meaning on a revoke"),
])
def test_a_faulty_message_is_rejected_saying_what_is_wrong(
    topic: Topic, fields: dict[str, Any], says: str
) -> None:
    with pytest.raises(Rejected) as caught:
        parse(topic, json.dumps(fields).encode(), "US")
    assert says in str(caught.value)
    assert caught.value.id == fields.get("id")


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_what_is_not_a_json_object_is_rejected_without_an_id(payload: bytes) -> None:
    with pytest.raises(Rejected) as caught:
        parse("dnc", payload, "US")
    assert caught.value.id is None


def test_an_oversized_message_is_refused_unread() -> None:
    fields = {"id": "a", "op": "add", "list": "internal", "number": "+12125551234",
              "source": "x" * 20_000}
    with pytest.raises(Rejected, match="a control message is at most 16384"):
        parse("dnc", json.dumps(fields).encode(), "US")
