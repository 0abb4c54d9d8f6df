"""Where a called number rings: country, state/province and time zones.

`phonenumbers` knows the zones and the geographic description of a number's prefix; its
answer is corrected by the shipped `data/npa_overrides.csv` for NANP area codes it maps to
one zone while they span two, and completed from `data/region_zones.csv` when it has no
zone. The answer is deliberately wide where the facts are uncertain: every zone the number
may ring in is listed, and a call is inside a calling window only if it is inside in all.

US territories with their own NANP region code (PR, GU, VI, AS, MP) are located in country
"US" (TCPA and TSR apply there) with regions such as "US-PR".

NANP numbers get the same answers from tables built on phonenumbers' data (`policy/nanp.py`)
at a few µs for a number never seen before; other countries ask phonenumbers (cached).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from phonenumbers import geocoder, timezone

from sipguard.errors import PolicyError
from sipguard.policy.nanp import NanpClass, PrefixTable, tables
from sipguard.policy.rules_data import load_csv

UNKNOWN_ZONE = "Etc/Unknown"
NON_GEOGRAPHIC = frozenset(
    {
        phonenumbers.PhoneNumberType.TOLL_FREE,
        phonenumbers.PhoneNumberType.PREMIUM_RATE,
        phonenumbers.PhoneNumberType.SHARED_COST,
        phonenumbers.PhoneNumberType.UAN,
        phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
    }
)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a call is received, as far as it is known."""

    country: str  # ISO 3166-1 alpha-2 ("US", "CA", "AU", "FR"); "" when unknown
    regions: tuple[str, ...]  # ISO 3166-2 ("US-FL"); () when unknown
    zones: tuple[str, ...]  # IANA zones, sorted; () when unknown
    source: str  # how it was found: "phonenumbers", "override +1850", "consent", ...


@dataclass(frozen=True, slots=True)
class _Region:
    code: str
    country: str
    names: tuple[str, ...]
    zones: tuple[str, ...]
    numbering_region: str


@dataclass(frozen=True, slots=True)
class _Override:
    prefix: str
    region: str
    zones: tuple[str, ...]
    mode: str
    note: str


@cache
def _regions() -> dict[str, _Region]:
    out: dict[str, _Region] = {}
    for row in load_csv("region_zones.csv"):
        code = row["region"]
        out[code] = _Region(
            code=code,
            country=code.split("-")[0],
            names=tuple(n.strip() for n in row["names"].split("|") if n.strip()),
            zones=tuple(row["zones"].split()),
            numbering_region=row["numbering_region"],
        )
    return out


@cache
def _names() -> dict[tuple[str, str], str]:
    """(country, lower-case name) -> region code."""
    return {
        (r.country, name.lower()): r.code
        for r in _regions().values()
        if "-" in r.code  # a bare country row is not a region
        for name in r.names
    }


@cache
def _territories() -> dict[str, str]:
    """phonenumbers region code of a US territory -> ISO 3166-2 code."""
    return {r.numbering_region: r.code for r in _regions().values() if r.numbering_region}


@cache
def _overrides() -> tuple[_Override, ...]:
    return tuple(
        _Override(r["prefix"], r["region"], tuple(r["zones"].split()), r["mode"], r["note"])
        for r in load_csv("npa_overrides.csv")
    )


def validate_tables() -> None:
    """Every zone the shipped tables name exists (run by the tests and `config check`)."""
    known = available_timezones()
    for region in _regions().values():
        for zone in region.zones:
            if zone not in known:
                raise ValueError(f"region_zones.csv {region.code}: unknown zone {zone!r}")
    prefixes = [o.prefix for o in _overrides()]
    if len(set(prefixes)) != len(prefixes):
        raise ValueError("npa_overrides.csv: a prefix is listed twice")
    for override in _overrides():
        if override.mode not in ("add", "replace"):
            raise ValueError(f"npa_overrides.csv {override.prefix}: mode {override.mode!r}")
        for zone in override.zones:
            if zone not in known:
                raise ValueError(f"npa_overrides.csv {override.prefix}: unknown zone {zone!r}")


def region_zones(region: str) -> tuple[str, ...]:
    """The zones of a region ("US-FL") or, for a bare country code, of all its regions."""
    table = _regions()
    if region in table:
        return table[region].zones
    if "-" not in region:
        zones = {z for r in table.values() if r.country == region for z in r.zones}
        return tuple(sorted(zones))
    return ()


def country_zones(country: str) -> tuple[str, ...]:
    """Zones of a country's states/provinces, its separately numbered territories excluded."""
    table = _regions()
    zones = {
        z
        for r in table.values()
        if r.country == country and not r.numbering_region
        for z in r.zones
    }
    return tuple(sorted(zones))


def _regions_from_description(country: str, description: str) -> tuple[str, ...]:
    """'Elizabethtown, KY' / 'Florida' / 'Northwest Territories/Nunavut/Yukon' -> codes."""
    names = _names()
    found: list[str] = []
    for raw in description.split("/"):
        part = raw.strip()
        if not part:
            continue
        tail = part.rsplit(",", 1)[-1].strip()
        if "," in part and len(tail) == 2 and tail.isalpha() and tail.isupper():
            found.append(f"{country}-{tail}")
        elif (country, part.lower()) in names:
            found.append(names[(country, part.lower())])
    return tuple(dict.fromkeys(found))


@cache
def _override_index() -> PrefixTable[_Override]:
    return PrefixTable({o.prefix: o for o in _overrides()})


def _override_for(e164: str) -> _Override | None:
    return _override_index().get(e164)


def _assemble(
    e164: str,
    numbering_region: str,
    kind: int,
    zones_found: Iterable[str],
    describe: Callable[[], str],
) -> Location:
    """A Location from phonenumbers' facts about a number, with the shipped tables applied."""
    territory = _territories().get(numbering_region)
    country = "US" if territory else numbering_region
    zones = {z for z in zones_found if z != UNKNOWN_ZONE}
    if kind in NON_GEOGRAPHIC:
        # toll-free and the like ring anywhere in the country (phonenumbers lists every zone
        # of the numbering plan, Guam to Bermuda): take the country's own regions' zones
        zones = set(country_zones(country))
        return Location(country, (), tuple(sorted(zones)), "non-geographic number")
    if territory:
        regions: tuple[str, ...] = (territory,)
    else:
        description = describe()
        regions = _regions_from_description(country, description) if description else ()
    source = "phonenumbers"
    override = _override_for(e164)
    if override is not None:
        zones = set(override.zones) if override.mode == "replace" else zones | set(override.zones)
        if override.region:
            regions = (override.region,)
        source = f"phonenumbers + override {override.prefix}"
    if not zones:
        for region in regions or (country,):
            zones.update(region_zones(region))
        if zones:
            source += " + region zones"
    return Location(country, regions, tuple(sorted(zones)), source)


def _locate_phonenumbers(e164: str) -> Location:
    """`locate` asking phonenumbers everything (any country; the reference for NANP)."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return Location("", (), (), "unparseable")
    return _assemble(
        e164,
        phonenumbers.region_code_for_number(parsed) or "",
        phonenumbers.number_type(parsed),
        timezone.time_zones_for_number(parsed),
        # The number is valid (normalisation checked it): skip the re-validation that
        # description_for_number does.
        lambda: geocoder.description_for_valid_number(parsed, "en"),
    )


# NANP numbers ('+1' and ten digits) are located from tables (policy/nanp.py): the number's
# class, its time zones and place by prefix, the override by prefix. Those four fix the
# Location, so Locations are kept by them: a dialer's fresh number in a known exchange
# class and place costs a few dict lookups. Kept Locations are interned (the engine keys its
# per-minute calling-window cache by their identity).
_NanpKey = tuple[NanpClass, tuple[str, ...], str, _Override | None]
_NANP_LOCATIONS: dict[_NanpKey, Location] = {}
_NANP_LOCATIONS_LIMIT = 1 << 17  # above the few 10,000 combinations phonenumbers' data has
_INTERNED: dict[Location, Location] = {}
# Most exchanges ('+1NPANXX') decide all four for every number in them: their Location is
# kept by exchange, one dict lookup per call instead of the walk and prefix lookups (a few
# µs, the largest part of a decision). None: the digits after the exchange matter
# (Barbados 246-521x, ...), such a number is located on its own.
NANP_EXCHANGE = 8  # len("+1NPANXX")
_EXCHANGES: dict[str, Location | None] = {}
_EXCHANGES_LIMIT = 1 << 20  # every NANP exchange fits


def intern_location(location: Location) -> Location:
    """One object per distinct Location (there are a few hundred)."""
    return _INTERNED.setdefault(location, location)


def _is_nanp(e164: str) -> bool:
    return len(e164) == 12 and e164[:2] == "+1" and e164.isascii() and e164[2:].isdigit()


def _locate_nanp(e164: str) -> Location:
    exchange = e164[:NANP_EXCHANGE]
    try:
        found = _EXCHANGES[exchange]
    except KeyError:  # once per exchange
        if len(_EXCHANGES) >= _EXCHANGES_LIMIT:
            _EXCHANGES.clear()
        found = _EXCHANGES[exchange] = _exchange_location(exchange)
    if found is not None:
        return found
    return _nanp_location(e164, *tables().facts(e164[2:]))


def _exchange_location(exchange: str) -> Location | None:
    """The Location of every number in `exchange`, or None when the digits after it matter."""
    facts = tables().settled_facts(exchange[2:])
    if facts is None or not _override_index().decides(exchange):
        return None
    return _nanp_location(exchange, *facts)


def _nanp_location(digits: str, kind: NanpClass, zones: tuple[str, ...], place: str) -> (
    Location
):
    """The Location of a NANP number (or of every number of an exchange, `digits` its
    prefix) of this class, zones and place."""
    key = (kind, zones, place, _override_for(digits))
    found = _NANP_LOCATIONS.get(key)
    if found is None:
        if len(_NANP_LOCATIONS) >= _NANP_LOCATIONS_LIMIT:
            _NANP_LOCATIONS.clear()
        found = _NANP_LOCATIONS[key] = intern_location(
            _assemble(digits, kind.region, kind.kind, zones, lambda: place)
        )
    return found


def locate(e164: str) -> Location:
    """Country, regions and zones of an E.164 number (cached, interned; pure)."""
    return _locate_nanp(e164) if _is_nanp(e164) else _locate_other(e164)



def country_of(e164: str) -> str:
    """The country `locate` gives, for NANP numbers kept by area code (the NANP's
    countries are told apart by it): a dict lookup, where `locate` reads the exchange."""
    if not e164.startswith("+1"):
        return locate(e164).country
    key = e164[:5]
    found = _NANP_COUNTRIES.get(key)
    if found is None:
        found = _NANP_COUNTRIES[key] = locate(e164).country
    return found


_NANP_COUNTRIES: dict[str, str] = {}  # "+1NPA" -> country: a thousand at most


@lru_cache(maxsize=65536)
def _locate_other(e164: str) -> Location:
    return intern_location(_locate_phonenumbers(e164))


def location_of(region: str | None, zone: str | None, country: str = "") -> Location | None:
    """A known address (e.g. a consent record's state and/or zone) as a Location."""
    if not region and not zone:
        return None
    country = region.split("-")[0] if region else country
    zones = (zone,) if zone else region_zones(region or "")
    return Location(country, (region,) if region else (), zones, "consent address")


def zone_info(name: str) -> ZoneInfo:
    return _zone(name)


def subscriber_address(
    state: str | None, zone: str | None, labels: tuple[str, str] = ("state", "zone")
) -> tuple[str | None, str | None]:
    """A consent's subscriber address (region like US-FL, IANA zone), checked against the
    shipped region table and the zone database; errors name the two by `labels` (the
    CLI's options, the control message's fields)."""
    region = state.strip().upper() if state else None
    if region is not None and not region_zones(region):
        raise PolicyError(f"{labels[0]} {state!r} is not a known region like 'US-FL'")
    if zone:
        try:
            zone_info(zone)
        except (ValueError, ZoneInfoNotFoundError):
            raise PolicyError(f"{labels[1]} {zone!r} is not an IANA time zone") from None
    return region, zone or None


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)
