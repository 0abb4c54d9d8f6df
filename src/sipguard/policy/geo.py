"""Where a called number rings: country, state/province and time zones.

`phonenumbers` knows the zones and the geographic description of a number's prefix; its
answer is corrected by the shipped `data/npa_overrides.csv` for NANP area codes it maps to
one zone while they span two, and completed from `data/region_zones.csv` when it has no
zone. The answer is deliberately wide where the facts are uncertain: every zone the number
may ring in is listed, and a call is inside a calling window only if it is inside in all.

US territories with their own NANP region code (PR, GU, VI, AS, MP) are located in country
"US" (TCPA and TSR apply there) with regions such as "US-PR".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
from phonenumbers import geocoder, timezone

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
    rows = [
        _Override(r["prefix"], r["region"], tuple(r["zones"].split()), r["mode"], r["note"])
        for r in load_csv("npa_overrides.csv")
    ]
    return tuple(sorted(rows, key=lambda o: len(o.prefix), reverse=True))  # longest first


def validate_tables() -> None:
    """Every zone the shipped tables name exists (run by the tests and `config check`)."""
    known = available_timezones()
    for region in _regions().values():
        for zone in region.zones:
            if zone not in known:
                raise ValueError(f"region_zones.csv {region.code}: unknown zone {zone!r}")
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


def country_regions(country: str) -> tuple[str, ...]:
    """Every region the shipped table knows in a country ("US" -> "US-AL", ...)."""
    return tuple(code for code, r in _regions().items() if r.country == country and "-" in code)


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


def _override_for(e164: str) -> _Override | None:
    for override in _overrides():
        if e164.startswith(override.prefix):
            return override
    return None


def _parse(e164: str) -> phonenumbers.PhoneNumber:
    if len(e164) == 12 and e164.startswith("+1") and e164[2:].isdigit():
        # NANP: the parse would only split '+1' off (a full parse costs ~12 µs per number).
        return phonenumbers.PhoneNumber(country_code=1, national_number=int(e164[2:]))
    return phonenumbers.parse(e164, None)


def _region_and_type(parsed: phonenumbers.PhoneNumber, e164: str) -> tuple[str, int]:
    """Numbering region and number type. In NANP both follow from the area code (regions
    are assigned by NPA; toll-free, premium and personal numbers have NPAs of their own),
    so they are computed once per NPA."""
    if parsed.country_code == 1 and len(e164) == 12:
        return _nanp_npa(e164[:5], parsed)
    return phonenumbers.region_code_for_number(parsed) or "", phonenumbers.number_type(parsed)


_NPAS: dict[str, tuple[str, int]] = {}


def _nanp_npa(npa: str, parsed: phonenumbers.PhoneNumber) -> tuple[str, int]:
    found = _NPAS.get(npa)
    if found is None:
        found = _NPAS[npa] = (
            phonenumbers.region_code_for_number(parsed) or "",
            phonenumbers.number_type(parsed),
        )
    return found


@lru_cache(maxsize=65536)
def locate(e164: str) -> Location:
    """Country, regions and zones of an E.164 number (cached; pure)."""
    try:
        parsed = _parse(e164)
    except phonenumbers.NumberParseException:
        return Location("", (), (), "unparseable")
    numbering_region, kind = _region_and_type(parsed, e164)
    territory = _territories().get(numbering_region)
    country = "US" if territory else numbering_region
    zones = {z for z in timezone.time_zones_for_number(parsed) if z != UNKNOWN_ZONE}
    if kind in NON_GEOGRAPHIC:
        # toll-free and the like ring anywhere in the country (phonenumbers lists every zone
        # of the numbering plan, Guam to Bermuda): take the country's own regions' zones
        zones = set(country_zones(country))
        return Location(country, (), tuple(sorted(zones)), "non-geographic number")
    if territory:
        regions: tuple[str, ...] = (territory,)
    else:
        # The number is valid (normalisation checked it): skip the re-validation that
        # description_for_number does.
        description = geocoder.description_for_valid_number(parsed, "en")
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


# NANP numbers: phonenumbers' geocoding and zone data for country code 1 never look past
# NPA-NXX (7 digits with the country code; tests/rules/test_rules_engine.py checks it
# against the installed phonenumbers), the number types (toll-free, personal) are decided
# by the NPA and the override table by the NPA: every number of an exchange has the same
# Location. A dialer calls millions of numbers in a few thousand exchanges, so the cache
# below is keyed by '+1NPANXX' and Locations are interned (the engine keys its per-minute
# calling-window cache by their identity).
NANP_KEY = 8  # len("+1NPANXX")
_EXCHANGES: dict[str, Location] = {}
_EXCHANGES_LIMIT = 1 << 20  # every NANP exchange fits
_INTERNED: dict[Location, Location] = {}


def intern_location(location: Location) -> Location:
    """One object per distinct Location (there are a few hundred)."""
    return _INTERNED.setdefault(location, location)


def locate_fast(e164: str) -> Location:
    """`locate`, for the call path: by exchange for NANP numbers, interned."""
    if len(e164) == 12 and e164[1] == "1":
        key = e164[:NANP_KEY]
        found = _EXCHANGES.get(key)
        if found is None:
            if len(_EXCHANGES) >= _EXCHANGES_LIMIT:
                _EXCHANGES.clear()
            found = _EXCHANGES[key] = intern_location(locate(e164))
        return found
    return _locate_other(e164)


@lru_cache(maxsize=65536)
def _locate_other(e164: str) -> Location:
    return intern_location(locate(e164))


def location_of(region: str | None, zone: str | None, country: str = "") -> Location | None:
    """A known address (e.g. a consent record's state and/or zone) as a Location."""
    if not region and not zone:
        return None
    country = region.split("-")[0] if region else country
    zones = (zone,) if zone else region_zones(region or "")
    return Location(country, (region,) if region else (), zones, "consent address")


def zone_info(name: str) -> ZoneInfo:
    return _zone(name)


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def is_mobile(e164: str) -> bool:
    """phonenumbers says MOBILE (never for NANP, where fixed and mobile share ranges)."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE)
