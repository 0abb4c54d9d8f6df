"""The Gate on real SIP bytes: CONTRACT §4 headers, decision records, the 407 re-send."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sipguard.app import identity
from sipguard.config import (
    BlockResponse,
    CampaignConfig,
    Config,
    NodeConfig,
    PolicyConfig,
    SipConfig,
)
from sipguard.errors import ConfigError
from sipguard.policy.facts import MemoryFacts, UnavailableFacts
from sipguard.policy.gate import Gate
from sipguard.policy.model import (
    Action,
    Consent,
    ConsentType,
    DecisionRecord,
    ListKind,
    Membership,
    Reason,
)
from sipguard.sip.message import Request
from sipguard.sip.parser import parse_message
from sipguard.sip.peer import Peer
from sipguard.sip.verdict import Allow, Block

DIALER = Peer("udp", "10.1.0.5", 5060)
T0 = 1_780_000_000.0  # wall clock seconds
LISTED = Membership("national", ListKind.NATIONAL, None, None, None)
OPTED_OUT = Membership("internal", ListKind.INTERNAL, None, datetime(2026, 1, 1, tzinfo=UTC), None)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t

    def ticks(self) -> Iterator[float]:
        while True:
            self.t += 0.0004
            yield self.t


def invite(
    number: str = "+14155552671",
    call_id: str = "a84b4c76e66710@10.1.0.5",
    cseq: int = 1,
    *extra: str,
    ruri: str | None = None,
) -> Request:
    lines = [
        f"INVITE {ruri or f'sip:{number}@gw.example.com;user=phone'} SIP/2.0",
        "Via: SIP/2.0/UDP 10.1.0.5:5060;branch=z9hG4bK776asdhds" + str(cseq),
        "Max-Forwards: 70",
        f"To: <sip:{number}@gw.example.com>",
        '"Dialer" <sip:+12125550100@10.1.0.5>;tag=1928301774'.join(["From: ", ""]),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} INVITE",
        "Contact: <sip:dialer@10.1.0.5:5060>",
        *extra,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def gate(facts: MemoryFacts | UnavailableFacts | None = None, **policy: object) -> tuple[
    Gate, list[DecisionRecord], Clock
]:
    config = Config(
        policy=replace(PolicyConfig(), **policy),  # type: ignore[arg-type]
        campaigns={"default": CampaignConfig(), "spring": CampaignConfig(require_consent=True)},
    )
    records: list[DecisionRecord] = []
    clock = Clock()
    return Gate(config, facts or MemoryFacts(), records.append, clock), records, clock


def raw_headers(verdict: Allow | Block) -> list[bytes]:
    return [h.raw for h in verdict.headers]


def test_blocked_call_gets_603_with_reason_and_warning() -> None:
    g, records, _ = gate(MemoryFacts([("+14155552671", LISTED)]))
    verdict = g(invite(), DIALER, 10.0)
    assert verdict == Block(603, "Decline", verdict.headers)
    assert raw_headers(verdict) == [
        b'Reason: SIP;cause=603;text="dnc-national"',
        b'Warning: 399 127.0.0.1 "dnc-national"',
    ]
    assert [h.name for h in verdict.headers] == ["reason", "warning"]
    (record,) = records
    assert (record.action, record.reason, record.decision.rule) == (
        Action.BLOCK, Reason.DNC_NATIONAL, "national-state-dnc")


def test_608_and_advertised_host() -> None:
    config = Config(
        sip=SipConfig(advertised_host="sbc.example.net"),
        policy=PolicyConfig(block_response=BlockResponse(608, "Rejected")),
    )
    g = Gate(config, MemoryFacts([("+14155552671", OPTED_OUT)]), lambda r: None, Clock())
    verdict = g(invite(), DIALER, 1.0)
    assert isinstance(verdict, Block)
    assert (verdict.status, verdict.reason) == (608, "Rejected")
    assert raw_headers(verdict) == [
        b'Reason: SIP;cause=608;text="dnc-internal"',
        b'Warning: 399 sbc.example.net "dnc-internal"',
    ]


@pytest.mark.parametrize(("listen", "agent"), [
    ("udp:10.0.0.7:5060", "10.0.0.7"),
    ("udp:[2001:db8::7]:5060", "[2001:db8::7]"),  # a hostport: brackets, as in Via
])
def test_warning_names_the_host_via_names_when_advertised_host_is_empty(
    listen: str, agent: str
) -> None:
    """The docs say an empty advertised_host means the listen host: the Warning must not
    name the node instead (it did), nor anything else than Via's sent-by does."""
    config = Config(node=NodeConfig(name="gw-node"), sip=SipConfig(listen=(listen,)))
    g = Gate(config, MemoryFacts([("+14155552671", OPTED_OUT)]), lambda r: None, Clock())
    verdict = g(invite(), DIALER, 1.0)
    assert isinstance(verdict, Block)
    assert raw_headers(verdict)[-1] == f'Warning: 399 {agent} "dnc-internal"'.encode()
    assert identity(config).sent_by("udp") == f"{agent}:5060"


def test_allowed_call_is_tagged_with_reason_and_id() -> None:
    g, records, _ = gate()
    verdict = g(invite(), DIALER, 1.0)
    assert isinstance(verdict, Allow)
    (header,) = verdict.headers
    assert header.name == "x-sipguard-decision"
    assert header.value == f"allow;reason=no-restriction;id={records[0].decision_id}"
    assert re.fullmatch(rb"X-Sipguard-Decision: allow;reason=no-restriction;id=gw1-[0-9a-f]{20}",
                        header.raw)


def test_consent_allow_and_custom_tag_header() -> None:
    consent = Consent(3, "+14155552671", "spring", ConsentType.EXPRESS,
                      datetime(2026, 1, 1, tzinfo=UTC), None, None, None, "form 9")
    g, records, _ = gate(MemoryFacts(consents=[consent]), tag_header="X-Policy")
    verdict = g(invite("+14155552671", "c2", 1, "X-Campaign: spring"), DIALER, 1.0)
    assert raw_headers(verdict)[0].startswith(b"X-Policy: allow;reason=consent;id=gw1-")
    assert records[0].campaign == "spring"
    assert records[0].decision.consent_id == 3


def test_monitor_mode_flags_and_forwards() -> None:
    g, _, _ = gate(MemoryFacts([("+14155552671", LISTED)]), mode="monitor")
    verdict = g(invite(), DIALER, 1.0)
    assert isinstance(verdict, Allow)
    assert verdict.headers[0].value.startswith("flag;reason=dnc-national;id=gw1-")


def test_store_unavailable_reject_is_503_with_retry_after() -> None:
    g, records, _ = gate(UnavailableFacts("index not loaded"))
    verdict = g(invite(), DIALER, 1.0)
    assert isinstance(verdict, Block)
    assert (verdict.status, verdict.reason) == (503, "Service Unavailable")
    assert raw_headers(verdict) == [
        b"Retry-After: 30",
        b'Reason: SIP;cause=503;text="store-unavailable"',
        b'Warning: 399 127.0.0.1 "store-unavailable"',
    ]
    assert records[0].reason is Reason.STORE_UNAVAILABLE


def test_store_unavailable_allow_forwards_with_a_flag() -> None:
    g, _, _ = gate(UnavailableFacts(), on_store_error="allow")
    verdict = g(invite(), DIALER, 1.0)
    assert isinstance(verdict, Allow)
    assert verdict.headers[0].value.startswith("flag;reason=store-unavailable;id=")


def test_a_broken_index_fails_like_a_store() -> None:
    class Broken(MemoryFacts):
        def memberships(self, number: str) -> list[Membership]:
            raise KeyError(number)

    g, records, _ = gate(Broken())
    verdict = g(invite(), DIALER, 1.0)
    assert isinstance(verdict, Block) and verdict.status == 503
    assert "KeyError" in records[0].decision.trail[-1].detail


def test_invalid_and_emergency_numbers() -> None:
    g, records, _ = gate(strip_prefixes=("9",))
    assert raw_headers(g(invite("555"), DIALER, 1.0))[0] == (
        b'Reason: SIP;cause=603;text="invalid-number"')
    verdict = g(invite("9911", "e1"), DIALER, 1.0)
    assert verdict.headers[0].value.startswith("allow;reason=emergency;id=")
    assert records[1].callee is None and records[1].callee_raw == "9911"


def test_decision_record_fields() -> None:
    g, records, clock = gate(MemoryFacts([("+14155552671", LISTED)]))
    pai = 'P-Asserted-Identity: "Sales" <sip:+13055550123@carrier.example>'
    g(invite("(415)555-2671", "rec-1", 1, pai), DIALER, 5.0)
    (r,) = records
    assert r.node == "gw1"
    assert r.ts == datetime.fromtimestamp(clock.t, UTC)
    assert (r.call_id, r.campaign, r.callee, r.callee_raw, r.caller, r.source) == (
        "rec-1", "default", "+14155552671", "(415)555-2671", "+13055550123", "udp:10.1.0.5:5060")
    assert r.latency_us >= 0
    assert r.decision_id.startswith("gw1-")


@pytest.mark.parametrize(
    ("source", "extra", "ruri"),
    [
        ("to", (), "sip:ignored@gw"),
        ("header:X-Dialed-Number", ("X-Dialed-Number: 1 415 555 2671",), "sip:ignored@gw"),
        ("ruri", (), "tel:+1-415-555-2671"),
    ],
)
def test_number_sources(source: str, extra: tuple[str, ...], ruri: str) -> None:
    g, records, _ = gate(MemoryFacts([("+14155552671", LISTED)]), number_source=source)
    verdict = g(invite("+14155552671", "src", 1, *extra, ruri=ruri), DIALER, 1.0)
    assert isinstance(verdict, Block)
    assert records[0].callee == "+14155552671"


def test_resent_invite_after_407_reuses_the_first_decision() -> None:
    facts = MemoryFacts()
    g, records, _ = gate(facts)
    first = g(invite(cseq=1), DIALER, 100.0)
    # The opt-out lands between the challenge and the re-sent INVITE: same call, same decision.
    facts.add_membership("+14155552671", OPTED_OUT)
    auth = 'Proxy-Authorization: Digest username="d", realm="trunk", nonce="n", uri="sip:x", ' \
           'response="00"'
    again = g(invite("+14155552671", "a84b4c76e66710@10.1.0.5", 2, auth), DIALER, 101.5)
    assert again == first
    assert len(records) == 1  # decided and counted once
    # Another call (new Call-ID) is decided afresh and sees the opt-out.
    other = g(invite("+14155552671", "other-call"), DIALER, 102.0)
    assert isinstance(other, Block)
    # The same Call-ID long after the reuse window is a new decision.
    late = g(invite(cseq=3), DIALER, 100.0 + 61)
    assert isinstance(late, Block)
    assert len(records) == 3


def test_the_gate_knows_a_call_it_decided_until_the_reuse_window_ends() -> None:
    g, _, _ = gate()
    first = invite(cseq=1)
    assert not g.decided(first, 100.0)  # asking decides nothing
    g(first, DIALER, 100.0)
    assert g.decided(invite(cseq=2), 101.5)  # the re-send after a challenge
    assert not g.decided(invite("+14155552671", "other-call"), 101.5)
    assert not g.decided(invite(cseq=3), 100.0 + 61)


def test_same_call_id_other_number_is_a_new_decision() -> None:
    g, records, _ = gate()
    g(invite("+14155552671", "same"), DIALER, 1.0)
    g(invite("+12125550199", "same", 2), DIALER, 1.1)
    assert [r.callee for r in records] == ["+14155552671", "+12125550199"]


def test_reuse_cache_is_bounded() -> None:
    g, _, _ = gate()
    for i in range(70_000):
        g._remember((f"c{i}", "", "n"), 1.0, Allow())
    assert len(g._recent) == 65536


def test_decision_ids_are_unique_and_sortable() -> None:
    g, records, clock = gate()
    ticks = clock.ticks()
    for i in range(2000):
        if i % 3 == 0:
            next(ticks)  # several decisions per millisecond, and some across milliseconds
        g(invite("+14155552671", f"id-{i}"), DIALER, float(i))
    ids = [r.decision_id for r in records]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids


def test_emit_failure_does_not_fail_the_call() -> None:
    def broken(record: DecisionRecord) -> None:
        raise OSError("disk full")

    g = Gate(Config(), MemoryFacts(), broken, Clock())
    assert isinstance(g(invite(), DIALER, 1.0), Allow)
    assert g.emit_failures == 1


def test_check_entry_point() -> None:
    g, records, _ = gate(MemoryFacts([("+14155552671", LISTED)]))
    decision = g.check("(415) 555-2671")
    assert (decision.action, decision.reason) == (Action.BLOCK, Reason.DNC_NATIONAL)
    assert g.check("tel:+1-415-555-2671", at=datetime(2020, 1, 1, tzinfo=UTC)).reason is (
        Reason.DNC_NATIONAL)
    assert g.check("+12125550199", campaign="spring").reason is Reason.NO_CONSENT
    assert g.attempt("415 555 2671", caller="sip:+12125550100@x").caller == "+12125550100"
    assert records == []  # a what-if is not a call


def test_unknown_region_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"policy\.default_region"):
        Gate(Config(policy=PolicyConfig(default_region="XX")), MemoryFacts(), lambda r: None)
