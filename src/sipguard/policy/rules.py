"""The compliance rules of issue 5, in the order the engine evaluates them.

Each rule is a pure function of its inputs and `now` (aware UTC) returning a `RuleResult`
(`.step` goes on the trail; `.blocked` / `.reason` decide; `.opens_at` for windows). Where
each one slots into issue 3's order (`policy/engine.py`):

1.  emergency numbers -> allow `emergency` (issue 3; none of the rules below run)
2.  invalid number -> `invalid-number` (issue 3)
3.  `check_caller_id(attempt.caller, allowed)` -> `caller-id-not-allowed`
        cheap, and a call with a false caller ID is unlawful whatever the callee's status.
4.  `check_calling_window(locate(callee), now, purpose=, campaign=, campaign_hours=,
        known_addresses=)` -> `outside-calling-window` with `opens_at` (copy it to
        `Decision.opens_at`). Known addresses: `location_of(...)` of every consent record of
        the number that carries an address (see H3-requests: `Consent.location`).
5.  internal DNC -> `dnc-internal` (issue 3). Consents screened first (step 6 below) so that
        `overrides_opt_out(consent, membership.listed_at)` decides "consent newer than the
        opt-out"; an EBR never beats a later opt-out. Then the campaign's custom lists
        (kind `custom`, the user's own suppression lists) the same way -> `dnc-custom`.
6.  `screen_consents(facts.consents(n), campaign, now, country=, revoke_scope=,
        disconnected_at=reassigned_at(memberships, now))` -> `ConsentScreen`; from here on
        "active consent" in issue 3 means `screen.usable`, and a missing one is explained by
        `screen.failure_reason()` (`reassigned-number` > `consent-revoked` >
        `consent-expired` > `no-consent`).
7.  litigator -> `litigator` (issue 3)
8.  national / state DNC (issue 3) with `dnc_override(screen)`: express-written -> reason
        `consent`, a live EBR -> reason `ebr` (the override is recorded, the pipeline goes on);
        then `check_stale_list(campaign.lists, facts.lists(), stale_list, now,
        default_region, overridden=override is not None)` -> `dnc-national` (rule
        `stale-list`) when `[policy] stale_list = "block"`; `dnc-custom` when a list the
        campaign names by name is not in the store (`missing_lists`).
9.  `check_reassigned(disconnected_at, screen)` -> `reassigned-number` (a call that rests on
        a consent from the previous subscriber).
10. `check_wireless(is_wireless(n, memberships), campaign.autodialed, purpose, screen)`
        -> `no-consent`.
11. `require_consent` (issue 3) using `screen.usable` / `screen.failure_reason()`.
12. `check_caps(n, campaign, purpose, (location, *known_addresses), counter, now,
        configured=caps)` -> `frequency-cap`; last, so that only calls that would otherwise
        be allowed are refused for frequency. The gate records each allowed call with
        `counter.record(n, campaign, call_id, now)` (a repeated Call-ID counts once), and
        the app rebuilds the counter at start with `AttemptCounter.rebuild(store attempts,
        now, required_horizon(all caps))`.
13. allow: `ebr` when the EBR override applied, `consent` when a consent did, else
        `no-restriction` (issue 3).

`serve` logs `stale_lists(facts.lists(), now, default_region)` and `missing_lists(campaign
lists, facts.lists())` at start and every hour.

Tag mode (`tag_reasons`): any rule's block may be turned into a flag by config; the engine
then runs the rules after it, and a later block not in tag mode still blocks.
"""

from __future__ import annotations

from sipguard.policy.caps import (
    AttemptCounter,
    AttemptRecord,
    Cap,
    check_caps,
    configured_cap,
    required_horizon,
    shipped_caps,
)
from sipguard.policy.consent_rules import (
    ConsentScreen,
    check_caller_id,
    check_reassigned,
    check_wireless,
    dnc_override,
    in_number_blocks,
    is_wireless,
    normalise_caller_ids,
    overrides_opt_out,
    reassigned_at,
    screen_consents,
)
from sipguard.policy.freshness import Freshness, check_stale_list, missing_lists, stale_lists
from sipguard.policy.geo import Location, locate, location_of
from sipguard.policy.rules_data import RuleResult
from sipguard.policy.windows import WeekHours, check_calling_window, load_windows, next_opening

# (rule name on the trail, function) in evaluation order; the engine owns the steps between.
ORDER = (
    ("caller-id", check_caller_id),
    ("calling-window", check_calling_window),
    ("stale-list", check_stale_list),
    ("reassigned", check_reassigned),
    ("wireless", check_wireless),
    ("frequency-cap", check_caps),
)

__all__ = [
    "ORDER",
    "AttemptCounter",
    "AttemptRecord",
    "Cap",
    "ConsentScreen",
    "Freshness",
    "Location",
    "RuleResult",
    "WeekHours",
    "check_caller_id",
    "check_calling_window",
    "check_caps",
    "check_reassigned",
    "check_stale_list",
    "check_wireless",
    "configured_cap",
    "dnc_override",
    "in_number_blocks",
    "is_wireless",
    "load_windows",
    "locate",
    "location_of",
    "missing_lists",
    "next_opening",
    "normalise_caller_ids",
    "overrides_opt_out",
    "reassigned_at",
    "required_horizon",
    "screen_consents",
    "shipped_caps",
    "stale_lists",
]
