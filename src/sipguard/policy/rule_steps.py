"""The issue-5 compliance rules as pipeline steps: adapters from the pure rule modules
(`windows`, `caps`, `consent_rules`, `freshness`) to `Rule`s of the engine.

Each adapter turns a `RuleResult` into a trail `Step` (the pipeline goes on) or an
`Outcome` (it stops). What does not change from call to call is computed once:

* `Prepared`: a campaign's settings parsed once per (campaign config, policy, campaign
  name): its own hours, caller IDs in E.164, configured caps, declared holidays;
* where a number rings: `geo.locate` (by NANP exchange, interned Locations);
* the calling window: one `windows.WindowState` per (campaign, location, known addresses)
  and UTC minute (the answer cannot change within a minute); only a blocked call formats
  its own detail, and the next-opening search runs once per minute for a closed location;
* frequency caps: a number never called within the counter's horizon passes at once;
* list freshness (and lists a campaign names that the store lacks): evaluated once per
  minute and list catalogue;
* tag mode: the block reasons a campaign's config puts in tag mode (`Prepared.tags`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sipguard.config import CampaignConfig, PolicyConfig
from sipguard.policy import caps as caps_mod
from sipguard.policy import consent_rules as cr
from sipguard.policy import freshness, geo, windows
from sipguard.policy.model import TAGGABLE, ConsentType, Facts, ListMeta, Membership, Reason, Step
from sipguard.policy.pipeline import (
    BLOCK,
    CUSTOM,
    INTERNAL,
    NATIONAL,
    REASSIGNED,
    STATE,
    Context,
    Outcome,
    shared_step,
)
from sipguard.policy.rules_data import RuleResult, require_aware

# Consent types that are a person's affirmative "yes" (47 CFR 64.1200(f)(9) prior express
# written consent; prior express consent per the FCC's 1992 TCPA Order ¶31; GDPR Art. 4(11)).
# An established business relationship is not consent: it never overrides an opt-out
# (47 CFR 64.1200(f)(5)(i): a seller-specific do-not-call request terminates the EBR).
AFFIRMATIVE = frozenset(
    {ConsentType.EXPRESS, ConsentType.EXPRESS_WRITTEN, ConsentType.GDPR_CONSENT}
)
_EMPTY_SCREEN = cr.ConsentScreen((), ())


# -- per-campaign settings, parsed once ---------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Prepared:
    """A campaign's rule settings, parsed once (compared by identity)."""

    campaign: str
    purpose: str
    hours: windows.WindowRule | None  # the campaign's own narrower hours
    caller_ids: frozenset[str]
    caps: tuple[caps_mod.Cap, ...]  # configured: [policy] caps and the campaign's
    zero_cap: bool  # a configured cap allows no call at all
    extra_holidays: Mapping[str, Mapping[date, str]]
    autodialed: bool
    require_consent: bool
    emergency: frozenset[str]  # policy.emergency_numbers
    emergency_longest: int  # longest emergency number with a strip prefix: longer never is one
    # block reason in tag mode -> the config key that put it there (`engine` reads it)
    tags: Mapping[Reason, str]


def prepare(campaign: CampaignConfig, policy: PolicyConfig, name: str) -> Prepared:
    """Parse a campaign's settings (config validation already proved they parse)."""
    hours = None
    if campaign.window:
        week = windows.WeekHours.parse(campaign.window, f"campaigns.{name}.window")
        hours = windows.campaign_rule(name, week)
    caller_ids = cr.normalise_caller_ids(campaign.allowed_caller_ids, policy.default_region)
    configured = (
        *(caps_mod.configured_cap(c.max_calls, c.period, c.scope) for c in policy.caps),
        *(caps_mod.configured_cap(c.max_calls, c.period, c.scope, campaign=name)
          for c in campaign.caps),
    )
    longest = max((len(n) for n in policy.emergency_numbers), default=0)
    longest += max((len(p) for p in policy.strip_prefixes), default=0)
    holidays = {
        region: {date.fromisoformat(d): "declared holiday (policy.extra_holidays)" for d in days}
        for region, days in policy.extra_holidays.items()
    }
    tags: dict[Reason, str] = {}
    for key, reasons in (("policy.tag_reasons", policy.tag_reasons),
                         ("the campaign's tag_reasons", campaign.tag_reasons)):
        for text in reasons:
            if text in TAGGABLE:  # validated; never tag what config check refuses
                tags.setdefault(Reason(text), key)
    return Prepared(
        campaign=name,
        purpose=campaign.purpose,
        hours=hours,
        caller_ids=caller_ids,
        caps=configured,
        zero_cap=any(c.max_calls == 0 for c in configured),
        extra_holidays=holidays,
        autodialed=campaign.autodialed,
        require_consent=campaign.require_consent,
        emergency=frozenset(policy.emergency_numbers),
        emergency_longest=longest,
        tags=tags,
    )


_PREPARED: dict[tuple[int, int, str], tuple[CampaignConfig, PolicyConfig, Prepared]] = {}


def prepared_for(campaign: CampaignConfig, policy: PolicyConfig, name: str) -> Prepared:
    """`prepare`, made once per (campaign config, policy) identity and campaign name."""
    key = (id(campaign), id(policy), name)
    entry = _PREPARED.get(key)
    if entry is None or entry[0] is not campaign or entry[1] is not policy:
        if len(_PREPARED) > 1024:  # campaign names come off the wire: keep the table bounded
            _PREPARED.clear()
        entry = _PREPARED[key] = (campaign, policy, prepare(campaign, policy, name))
    return entry[2]


# -- the minute: what the calling-window and freshness rules cache ----------------------


@dataclass(slots=True, eq=False)
class Minute:
    """One UTC minute of `now`, [start, end), and what holds for all of it: windows open and
    close on whole local minutes in zones of whole-minute offsets (`windows.WindowState`),
    and list ages are counted in days (a refresh shows within a minute)."""

    start: datetime
    end: datetime
    # (prepared, id(location), known addresses) -> the rule's answer (Prepared hashes and
    # compares by identity; Locations are interned, and a dataclass hash is slow)
    windows: dict[tuple[Prepared, int, tuple[geo.Location, ...]], Step | Outcome] = (
        field(default_factory=dict)
    )
    # prepared -> (facts, what is stale or missing in them, its "warn" step and whether a
    # list is missing; None: all there and fresh): by campaign, as campaigns that check
    # other lists may take turns call by call
    # per campaign: (facts, its stale-list problem, the countries its national lists hold)
    stale: dict[Prepared, tuple[Facts, tuple[str, Step, bool] | None, frozenset[str] | None]] = (
        field(default_factory=dict))


_MINUTE_LIMIT = 65536  # entries of each of a Minute's tables
_EPOCH = datetime.min.replace(tzinfo=UTC)
_minute = Minute(_EPOCH, _EPOCH)
_ONE_MINUTE = timedelta(minutes=1)


def this_minute(ctx: Context) -> Minute:
    """The caches for `now`'s minute (two datetime comparisons: `now.timestamp()` costs
    more), a fresh set when `now` left the last one (either way: `check --at`)."""
    global _minute  # noqa: PLW0603 (a per-minute cache is module state by design)
    found, now = _minute, ctx.now
    try:
        if found.start <= now < found.end:
            return found
    except TypeError:  # a naive `now` against an aware bound: require_aware refuses it
        pass
    start = require_aware(now).astimezone(UTC).replace(second=0, microsecond=0)
    found = _minute = Minute(start, start + _ONE_MINUTE)
    return found


def all_caps(config_campaigns: Mapping[str, CampaignConfig], policy: PolicyConfig) -> (
    tuple[caps_mod.Cap, ...]
):
    """Every cap that may apply to a campaign of this config (shipped caps whose purposes
    some campaign has, and the configured ones): the counter keeps their longest period."""
    purposes = {c.purpose for c in config_campaigns.values()}
    out = [
        c for c in caps_mod.shipped_caps()
        if "*" in c.purposes or c.purposes & purposes
    ]
    out += [caps_mod.configured_cap(c.max_calls, c.period, c.scope) for c in policy.caps]
    for name, campaign in config_campaigns.items():
        out += [caps_mod.configured_cap(c.max_calls, c.period, c.scope, campaign=name)
                for c in campaign.caps]
    return tuple(out)


_RELEVANT: dict[tuple[int, int], tuple[Prepared, bool]] = {}


def worth_counting(prep: Prepared, number: str, has_address: bool) -> bool:
    """Whether an allowed call to `number` may ever count against a cap of this campaign
    (the counter keeps only those: a day of every call would cost memory for nothing).
    Configured caps count every call; shipped ones the calls located where they apply, or
    anywhere when the number's state is unknown or a consent names an address."""
    if prep.caps or has_address:
        return True
    loc = geo.locate(number)
    key = (id(prep), id(loc))
    entry = _RELEVANT.get(key)
    if entry is None or entry[0] is not prep:
        unknown_state = loc.country == "US" and not loc.regions
        relevant = any(
            ("*" in c.purposes or prep.purpose in c.purposes)
            and (c.region is None or unknown_state or c.region in loc.regions)
            for c in caps_mod.shipped_caps()
        )
        if len(_RELEVANT) > 65536:
            _RELEVANT.clear()
        entry = _RELEVANT[key] = (prep, relevant)
    return entry[1]


# -- lazily computed facts of one call ----------------------------------------------------


def location(ctx: Context) -> geo.Location:
    found = ctx.location
    if found is None:
        found = ctx.location = geo.locate(ctx.attempt.callee or "")
    return found


def addresses(ctx: Context) -> tuple[geo.Location, ...]:
    """Known addresses of the number's consent records (every one: stricter)."""
    found = ctx.addresses
    if found is None:
        out: list[geo.Location] = []
        consents = ctx.consents
        if consents:
            country = location(ctx).country
            for c in consents:
                loc = geo.location_of(c.location_region, c.location_zone, country=country)
                if loc is not None and loc not in out:
                    out.append(geo.intern_location(loc))
        found = ctx.addresses = tuple(out)
    return found


def screen(ctx: Context) -> cr.ConsentScreen:
    found = ctx.screen
    if found is None:
        consents = ctx.consents
        if not consents:
            found = _EMPTY_SCREEN
        else:
            memberships = ctx.memberships
            found = cr.screen_consents(
                consents, ctx.attempt.campaign, ctx.now,
                country=location(ctx).country or ctx.policy.default_region,
                revoke_scope=ctx.policy.revoke_scope,
                disconnected_at=cr.reassigned_at(memberships, ctx.now) if memberships else None,
            )
        ctx.screen = found
    return found


def outcome(r: RuleResult) -> Step | Outcome:
    """A rule module's result as a pipeline step: a block stops, anything else goes on."""
    if r.blocked:
        assert r.reason is not None
        return Outcome(BLOCK, r.reason, r.step.detail, dynamic=True, opens_at=r.opens_at)
    return shared_step(r.step.rule, r.step.outcome, r.step.detail)


# -- caller ID (16 CFR 310.4(a)(8)) -------------------------------------------------------


def caller_id(ctx: Context) -> Step | Outcome:
    allowed = ctx.prepared.caller_ids
    if not allowed:
        return _CALLER_SKIP
    return outcome(cr.check_caller_id(ctx.attempt.caller, allowed))


def caller_id_fixed(prep: Prepared, counted: bool) -> Step | None:
    return None if prep.caller_ids else _CALLER_SKIP


_CALLER_SKIP = shared_step("caller-id", "skip", "campaign lists no caller IDs")


# -- calling window (data/calling_windows.toml) -------------------------------------------


def calling_window(ctx: Context) -> Step | Outcome:
    prep = ctx.prepared
    loc = ctx.location or location(ctx)
    known = addresses(ctx) if ctx.consents else ()
    cache = this_minute(ctx).windows
    key = (prep, id(loc), known)
    result = cache.get(key)
    if result is None:
        now = ctx.now
        state = windows.window_state(
            (loc, *known), now, purpose=prep.purpose, campaign_hours=prep.hours,
            extra_holidays=prep.extra_holidays,
        )
        # the whole minute gets the same answer, its detail read at the minute's start
        result = outcome(state.at(now.replace(second=0, microsecond=0)))
        if len(cache) >= _MINUTE_LIMIT:
            cache.clear()
        cache[key] = result
    return result


# -- internal do-not-call (47 CFR 64.1200(d)(3); 16 CFR 310.4(b)(1)(iii)(A)) -------------


def _ts(value: datetime | None) -> str:
    return value.isoformat() if value else "unknown"


def internal_dnc(ctx: Context) -> Step | Outcome:
    """A seller honours a person's request not to be called. A consent given after the
    opt-out overrides it (issue 3); an EBR never does, and neither does a consent voided by
    a revocation, its term or a reassignment (the screened consents)."""
    memberships = ctx.memberships
    if not memberships:
        return _INTERNAL_PASS
    hits = [m for m in memberships if m.kind is INTERNAL]
    if not hits:
        return _INTERNAL_PASS
    return _opt_out(ctx, hits, "internal-dnc", Reason.DNC_INTERNAL)


def _opt_out(ctx: Context, hits: Sequence[Membership], rule: str, reason: Reason) -> (
    Step | Outcome
):
    """Block for opt-out lists `hits`, unless an affirmative consent newer than every one
    of their listings overrides them (the consent goes on `ctx.consent`)."""
    times = [m.listed_at for m in hits]
    # An opt-out of unknown date counts as the newest: it cannot be overridden.
    opt_out = None if any(t is None for t in times) else max(t for t in times if t is not None)
    names = ",".join(sorted({m.list_name for m in hits}))
    consent = screen(ctx).best(AFFIRMATIVE)
    if consent is not None and cr.overrides_opt_out(consent, opt_out):
        ctx.consent = consent
        return Step(
            rule, "override",
            f"{names}: opt-out {_ts(opt_out)} before consent #{consent.id} "
            f"{_ts(consent.granted_at)}",
        )
    return Outcome(BLOCK, reason, f"{names}: opt-out {_ts(opt_out)}", dynamic=True)


_INTERNAL_PASS = shared_step("internal-dnc", "pass")


def internal_dnc_bare(prep: Prepared, counted: bool) -> Step:
    return _INTERNAL_PASS


# -- custom suppression lists (the user's own; read as internal opt-out lists) ------------


def custom_dnc(ctx: Context) -> Step | Outcome:
    """A list of kind `custom` the campaign names (by name, or every one by naming the kind
    `custom`) is the user's own suppression list. It is read as the internal list is
    (47 CFR 64.1200(d)(3); 16 CFR 310.4(b)(1)(iii)(A)): an opt-out that only an
    affirmative consent given after the listing overrides; consent given before it, an EBR,
    or a listing of unknown date (a bulk import without dates) never does. A list that no
    consent may override belongs in kind `litigator`."""
    for m in ctx.memberships:  # a loop, no list made: most numbers are on no custom list
        if m.kind is CUSTOM:
            break
    else:
        return _CUSTOM_PASS
    hits = [m for m in ctx.memberships if m.kind is CUSTOM and ctx.applies(m)]
    if not hits:
        return _CUSTOM_PASS
    return _opt_out(ctx, hits, "custom-dnc", Reason.DNC_CUSTOM)


_CUSTOM_PASS = shared_step("custom-dnc", "pass")


def custom_dnc_bare(prep: Prepared, counted: bool) -> Step:
    return _CUSTOM_PASS


# -- national and state registries --------------------------------------------------------


def national_state_dnc(ctx: Context) -> Step | Outcome:
    """47 CFR 64.1200(c)(2) and 16 CFR 310.4(b)(1)(iii)(B): no telephone solicitation to a
    number on the National Do-Not-Call Registry, unless the person gave prior express
    written consent to this seller (64.1200(c)(2)(ii)) or has a live established business
    relationship with it (64.1200(f)(5), (f)(15)(ii)); state registries follow suit."""
    national = state = None
    for m in ctx.memberships:
        kind = m.kind
        if kind is NATIONAL:
            if national is None and ctx.applies(m):
                national = m
        elif kind is STATE and state is None and ctx.applies(m):
            state = m
    hit = national or state
    if hit is None:
        return _NATIONAL_PASS
    found = cr.dnc_override(screen(ctx))
    if found is not None:
        consent, reason = found
        ctx.consent = consent
        return Step(
            "national-state-dnc", "override",
            f"{hit.list_name}: {consent.type.value} consent #{consent.id} "
            f"{_ts(consent.granted_at)} ({reason.value})",
        )
    return _dnc_block(hit.list_name, hit.jurisdiction, hit is national)


_NATIONAL_PASS = shared_step("national-state-dnc", "pass")
_DNC_BLOCKS: dict[tuple[str, str | None, bool], Outcome] = {}


def _dnc_block(name: str, jurisdiction: str | None, national: bool) -> Outcome:
    """A registry's block, made once per list (one call in ten is on the national list)."""
    key = (name, jurisdiction, national)
    found = _DNC_BLOCKS.get(key)
    if found is None:
        where = f" ({jurisdiction})" if jurisdiction else ""
        reason = Reason.DNC_NATIONAL if national else Reason.DNC_STATE
        found = Outcome(BLOCK, reason, name + where)
        if len(_DNC_BLOCKS) < 1024:  # list names come from the store: keep the table bounded
            _DNC_BLOCKS[key] = found
    return found


def national_state_dnc_bare(prep: Prepared, counted: bool) -> Step:
    return _NATIONAL_PASS


# -- list freshness (safe harbor: 47 CFR 64.1200(c)(2)(i)(D); data/consent_rules.toml) ---

def stale_list(ctx: Context) -> Step | Outcome:
    """A national list the campaign checks is older than its safe-harbor limit, or a list
    it names is not in the store (`freshness.missing_lists`): a trail warning, or with
    `stale_list = "block"` a block (`dnc-national` for a stale list unless a DNC override
    applies, as for a missing national list; `dnc-custom` for another missing one, which
    nothing overrides). The catalogue is
    read once a minute (a refresh or a new list shows within a minute; ages are in days)."""
    policy, facts = ctx.policy, ctx.facts
    cache = this_minute(ctx).stale
    prep = ctx.prepared  # the campaign's lists and the policy come with it
    entry = cache.get(prep)
    if entry is None or entry[0] is not facts:
        wanted = ctx.campaign.lists
        lists = facts.lists()
        names = [i.name for i in lists if i.name in wanted or i.kind in wanted]
        missing = freshness.missing_lists(wanted, lists)
        found = _stale(names, lists, ctx.now, policy.default_region)
        if missing:
            found = "; ".join([*map(freshness.describe_missing, missing),
                               *([found] if found else [])])
        if len(cache) >= _MINUTE_LIMIT:
            cache.clear()
        entry = cache[prep] = (facts, None if found is None else _problem(
            found, not freshness.only_national_missing(missing)),
            freshness.national_coverage(wanted, lists, policy.default_region))
    stale = entry[1]
    covered = entry[2]
    if covered is not None:  # the campaign checks national lists: the callee's country?
        known = ctx.location
        country = known.country if known else geo.country_of(ctx.attempt.callee or "")
        if country not in covered:
            gap = _uncovered(country, covered, stale)
            if gap is not None:
                stale = gap
    if stale is None:
        return _FRESH
    detail, warning, missing_list = stale
    if policy.stale_list == "warn":
        return warning
    if missing_list:
        return Outcome(BLOCK, Reason.DNC_CUSTOM, f"stale_list = block: {detail}")
    if cr.dnc_override(screen(ctx)) is not None:
        return shared_step(freshness.RULE, "skip", f"DNC override applies; {detail}")
    return Outcome(BLOCK, Reason.DNC_NATIONAL, f"stale_list = block: {detail}")


_Problem = tuple[str, Step, bool]  # detail, its warning step, a non-national list missing


def _problem(detail: str, missing_list: bool) -> _Problem:
    return detail, shared_step(freshness.RULE, "pass", f"warning: {detail}"), missing_list


def _uncovered(country: str, covered: frozenset[str], stale: _Problem | None) -> (
    _Problem | None
):
    """The stale-list problem of a call to `country` whose registry no national list of
    the campaign holds (`freshness.uncovered`), with what else was wrong; kept per
    (country, covered, problem) so that such calls share their trail steps."""
    key = (country, covered, stale)
    if key in _UNCOVERED:
        return _UNCOVERED[key]
    gap = freshness.uncovered(country, covered)
    found = None if gap is None else _problem(
        gap if stale is None else f"{stale[0]}; {gap}", stale is not None and stale[2])
    if len(_UNCOVERED) >= _MINUTE_LIMIT:
        _UNCOVERED.clear()
    _UNCOVERED[key] = found
    return found


_UNCOVERED: dict[tuple[str, frozenset[str], _Problem | None], _Problem | None] = {}


def _stale(names: Sequence[str], lists: Sequence[ListMeta], now: datetime, region: str) -> (
    str | None
):
    wanted = set(names)
    stale = freshness.stale_lists((i for i in lists if i.name in wanted), now, region)
    return "; ".join(f.describe() for f in stale) or None


_FRESH = shared_step(freshness.RULE, "pass", "national lists fresh")


# -- reassigned numbers (47 CFR 64.1200(m)) -----------------------------------------------


def reassigned(ctx: Context) -> Step | Outcome:
    memberships = ctx.memberships
    if not memberships or not any(m.kind is REASSIGNED for m in memberships):
        return _NOT_REASSIGNED
    return outcome(cr.check_reassigned(cr.reassigned_at(memberships, ctx.now), screen(ctx)))


_NOT_REASSIGNED = shared_step("reassigned", "skip", "not on a reassigned-numbers list")


def reassigned_bare(prep: Prepared, counted: bool) -> Step:
    return _NOT_REASSIGNED


# -- wireless numbers (47 U.S.C. 227(b)(1)(A)(iii); 47 CFR 64.1200(a)(1)-(2)) -------------


def wireless(ctx: Context) -> Step | Outcome:
    prep = ctx.prepared
    if not prep.autodialed:
        return _NOT_AUTODIALED
    callee = ctx.attempt.callee or ""
    # phonenumbers never types a NANP number MOBILE (fixed and mobile share ranges)
    mobile_type = ctx.policy.wireless_from_number_type and not callee.startswith("+1")
    is_wireless = cr.is_wireless(callee, ctx.memberships, mobile_type=mobile_type)
    return outcome(cr.check_wireless(is_wireless, True, prep.purpose, screen(ctx)))


def wireless_fixed(prep: Prepared, counted: bool) -> Step | None:
    return None if prep.autodialed else _NOT_AUTODIALED


_NOT_AUTODIALED = shared_step("wireless", "skip", "campaign not autodialed")


# -- campaigns that require consent -------------------------------------------------------


def require_consent(ctx: Context) -> Step | Outcome:
    """The campaign's own rule (`campaigns.NAME.require_consent`), e.g. for autodialled or
    prerecorded calls that need prior express consent (47 CFR 64.1200(a)(1)-(3)) or GDPR
    Art. 6(1)(a) processing. Why it fails is told apart: reassigned, revoked, expired, none."""
    if not ctx.prepared.require_consent:
        return _CONSENT_SKIP
    consent = ctx.consent
    if consent is None or consent.type not in AFFIRMATIVE:
        consent = screen(ctx).best(AFFIRMATIVE)
    if consent is not None:
        ctx.consent = consent
        return Step("require-consent", "pass", f"consent #{consent.id}")
    found = screen(ctx)
    reason = found.failure_reason()
    if reason is Reason.NO_CONSENT and not found.void:
        return _NO_CONSENT
    return Outcome(BLOCK, reason, found.failure_detail(), dynamic=True)


def require_consent_fixed(prep: Prepared, counted: bool) -> Step | None:
    return None if prep.require_consent else _CONSENT_SKIP


def require_consent_bare(prep: Prepared, counted: bool) -> Step | Outcome:
    """No consent record at all: nothing to screen, nothing void."""
    return _NO_CONSENT if prep.require_consent else _CONSENT_SKIP


_CONSENT_SKIP = shared_step("require-consent", "skip", "campaign does not require consent")
_NO_CONSENT = Outcome(BLOCK, Reason.NO_CONSENT, "no consent on record")


# -- frequency caps (data/frequency_caps.toml; configured caps) ---------------------------


def frequency_cap(ctx: Context) -> Step | Outcome:
    counter = ctx.counter
    if counter is None:
        return _NO_COUNTER
    prep = ctx.prepared
    callee = ctx.attempt.callee or ""
    if callee not in counter and not prep.zero_cap:
        return _NEVER_CALLED
    located = (location(ctx), *addresses(ctx))
    return outcome(caps_mod.check_caps(
        callee, ctx.attempt.campaign, prep.purpose, located, counter, ctx.now,
        configured=prep.caps,
    ))


def frequency_cap_fixed(prep: Prepared, counted: bool) -> Step | None:
    return None if counted else _NO_COUNTER


_NO_COUNTER = shared_step("frequency-cap", "skip", "no attempt counter")
_NEVER_CALLED = shared_step("frequency-cap", "pass", "no allowed call within the caps' periods")
