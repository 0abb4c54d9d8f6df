"""Called and caller numbers: from a SIP request to E.164 (ITU-T E.164, RFC 3966).

`Numbers(region, strip_prefixes)` turns whatever a dialer puts in a Request-URI, a `tel:`
URI, To or a configured header into E.164, or None when the number is impossible or
invalid (-> `invalid-number`). The full `phonenumbers` parse costs some 30-40 µs, so the
hot path avoids it:

* NANP (country code 1): a number is plain digits once separators are gone; its validity
  comes from automata built on libphonenumber's own patterns (`policy/nanp.py`, about
  1 µs, also for numbers never seen) and the E.164 form is built by string concatenation.
* anything else: the whole cleaned string is cached (LRU), after one `phonenumbers` parse.

Dialling conventions handled (in this order):
1. visual separators dropped: space, "-", ".", "(", ")" (RFC 3966 §5.1.1 visual-separator);
2. one configured dial prefix stripped (e.g. an outside-line "9"), longest first, only from
   a number without "+";
3. international prefixes: "+" as is; the region's own prefix via `phonenumbers`; in NANP
   regions "011" (the NANP international prefix) and "00" (the prefix ITU-T recommends,
   which NANP national numbers cannot start with); elsewhere "00" when the number does
   not parse as the region's own format;
4. national formats (trunk prefix "1" in NANP, "0" elsewhere) via `phonenumbers`.
"""

from __future__ import annotations

from collections import OrderedDict
from urllib.parse import unquote

import phonenumbers

from sipguard.policy.nanp import tables
from sipguard.sip.message import Request

SEPARATORS = " -.()\t"  # RFC 3966 §5.1.1 visual separators, plus blanks
DIGITS = frozenset("0123456789")
NANP_CC = 1
CACHE_SIZE = 65536  # distinct non-NANP numbers kept


def strip_separators(text: str) -> str:
    """Drop visual separators (a chain of replace() beats translate() on short strings)."""
    return (
        text.replace(" ", "").replace("-", "").replace(".", "").replace("(", "")
        .replace(")", "").replace("\t", "")
    )


def emergency_dialled(
    raw: str, table: frozenset[str], strip_prefixes: tuple[str, ...]
) -> str | None:
    """The emergency number (policy.emergency_numbers) `raw` dials, directly or after a
    strip prefix, separators ignored; None when it dials none."""
    dialled = strip_separators(raw)
    if dialled in table:
        return dialled
    for prefix in strip_prefixes:
        if prefix and dialled.startswith(prefix) and dialled[len(prefix) :] in table:
            return dialled
    return None


class _Lru:
    """A small bounded mapping, least recently used dropped first."""

    __slots__ = ("_data", "_size")

    def __init__(self, size: int) -> None:
        self._data: OrderedDict[str, str | None] = OrderedDict()
        self._size = size

    def get(self, key: str) -> tuple[bool, str | None]:
        data = self._data
        if key in data:
            data.move_to_end(key)
            return True, data[key]
        return False, None

    def put(self, key: str, value: str | None) -> None:
        self._data[key] = value
        if len(self._data) > self._size:
            self._data.popitem(last=False)


class Numbers:
    """Normalisation for one default region and set of dial prefixes (cheap after warm-up)."""

    def __init__(self, region: str = "US", strip_prefixes: tuple[str, ...] = ()) -> None:
        self.region = region.upper()
        self.country_code = phonenumbers.country_code_for_region(self.region)
        if self.country_code == 0:
            raise ValueError(f"unknown region {region!r}")
        self.nanp = self.country_code == NANP_CC
        self.strip_prefixes = tuple(sorted((p for p in strip_prefixes if p), key=len, reverse=True))
        self._nanp_tables = tables()  # built here, at start, not on the first call
        self._lru = _Lru(CACHE_SIZE)
        self._callers: dict[str, str | None] = {}

    # -- strings ------------------------------------------------------------------------

    def clean(self, raw: str) -> str:
        """The dialled string without separators and dial prefix: '+' and digits, or junk."""
        text = raw if raw.isdigit() else strip_separators(raw)
        if text[:1] != "+":
            for prefix in self.strip_prefixes:
                if text.startswith(prefix) and len(text) > len(prefix):
                    return text[len(prefix) :]
        return text

    def e164(self, raw: str) -> str | None:
        """E.164 ('+' and digits) for a dialled string, or None when invalid or impossible."""
        if raw[:2] == "+1" and len(raw) == 12 and raw.isascii() and raw[1:].isdigit():
            return self._nanp(raw[2:])  # E.164 NANP as most trunks and dialers send it
        text = self.clean(raw)
        if text[:1] == "+":
            digits = text[1:]
            if not (digits.isdigit() and digits.isascii()):
                return None
            if digits[0] == "1" and len(digits) == 11:
                return self._nanp(digits[1:])
            return self._slow(text)
        if not (text.isdigit() and text.isascii()):
            return None
        if self.nanp:
            # NANP national numbers never start with 0: "011" and "00" can only be
            # international prefixes here.
            n = len(text)
            if n == 10:
                return self._nanp(text)
            if n == 11 and text[0] == "1":
                return self._nanp(text[1:])
            if text.startswith("011"):
                return self._international(text[3:])
            if text.startswith("00"):
                return self._international(text[2:])
            return self._slow(text)
        value = self._slow(text)  # the region's own international prefix, national formats
        if value is None and text.startswith("00"):
            return self._international(text[2:])
        return value

    def _international(self, digits: str) -> str | None:
        if digits[:1] == "1" and len(digits) == 11:
            return self._nanp(digits[1:])
        return self._slow("+" + digits) if digits else None

    def _nanp(self, national: str) -> str | None:
        """A NANP national number (ten ASCII digits) in E.164 if phonenumbers deems it valid."""
        return "+1" + national if self._nanp_tables.valid(national) else None

    def _slow(self, text: str) -> str | None:
        hit, value = self._lru.get(text)
        if not hit:
            value = self._parse(text)
            self._lru.put(text, value)
        return value

    def _parse(self, text: str) -> str | None:
        try:
            number = phonenumbers.parse(text, self.region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_valid_number(number):
            return None
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

    # -- SIP ------------------------------------------------------------------------------

    def called_raw(self, request: Request, source: str = "ruri") -> str:
        """The dialled string from the Request-URI, To or `header:NAME` (number_source)."""
        if source == "ruri":
            return uri_number(request.uri)
        if source == "to":
            return uri_number(addr_uri(request.get("to") or ""))
        name = source.partition(":")[2].strip().lower()
        value = (request.get(name) or "").strip()
        return uri_number(addr_uri(value)) if ":" in value else value

    def caller(self, request: Request) -> str | None:
        """The caller's E.164 number: P-Asserted-Identity (RFC 3325) first, else From."""
        pai = request.get("p-asserted-identity")
        if pai is not None:
            for value in request.values("p-asserted-identity"):
                number = self._caller_uri(addr_uri(value))
                if number is not None:
                    return number
        return self._caller_uri(addr_uri(request.get("from") or ""))

    def _caller_uri(self, uri: str) -> str | None:
        """A caller URI's number; dialers use few caller IDs, so results are kept."""
        cache = self._callers
        if uri in cache:
            return cache[uri]
        raw = uri_number(uri)
        number = self.e164(raw) if raw else None
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[uri] = number
        return number


def addr_uri(value: str) -> str:
    """The URI inside a name-addr or addr-spec header value, without parsing the rest."""
    lt = value.find("<")
    if lt >= 0:
        gt = value.find(">", lt)
        return value[lt + 1 : gt if gt > 0 else len(value)].strip()
    return value.partition(";")[0].strip()


def uri_number(uri: str) -> str:
    """The user part of a sip:/sips: URI or the number of a tel: URI ('' when none).

    User-part parameters (RFC 4694 `;npdi`, `;rn=`) and a password are dropped; a tel:
    local number with a global `phone-context` (RFC 3966 §5.1.5) gets it prepended.
    """
    scheme, colon, rest = uri.partition(":")
    if not colon:
        return ""
    scheme = scheme.lower()
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if number[:1] != "+" and "phone-context=+" in params.lower():
            start = params.lower().index("phone-context=+") + len("phone-context=")
            context = params[start:].partition(";")[0]
            number = context + number
        return unquote(number) if "%" in number else number
    if scheme not in ("sip", "sips"):
        return ""
    at = rest.rfind("@")
    if at < 0:
        return ""
    user = rest[:at].partition(";")[0].partition(":")[0]
    return unquote(user) if "%" in user else user
