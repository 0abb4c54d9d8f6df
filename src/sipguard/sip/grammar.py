"""Lexical rules of RFC 3261 §25.1, as small functions over `str`.

Each helper names the ABNF rule it implements. They scan with `str.find` and
character sets rather than regular expressions: they run on every message.
"""

from __future__ import annotations

from sipguard.errors import ProtocolError

# alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"   (RFC 3261 §25.1 token)
TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)
# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" /
#        "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
WORD_CHARS = TOKEN_CHARS | frozenset('()<>:\\"/[]?{}')
WSP = " \t"
DIGITS = frozenset("0123456789")

# Compact forms (RFC 3261 §7.3.3 and the IANA SIP header registry).
COMPACT_FORMS = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1); others are single-valued.
LIST_HEADERS = frozenset(
    {"via", "route", "record-route", "contact", "allow", "supported", "require",
     "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
     "allow-events", "path", "service-route", "p-asserted-identity", "reason", "warning"}
)
# Headers that must appear at most once (RFC 3261 §7.3.1 and §20).
SINGLE_HEADERS = frozenset(
    {"call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type"}
)


def canonical_name(name: str) -> str:
    """Header field name, lower-cased, compact form expanded (names are case-insensitive)."""
    low = name.lower()
    return COMPACT_FORMS.get(low, low) if len(low) == 1 else low


# The same sets as strings: `not text.strip(SET)` tests "only these characters" in C,
# an order of magnitude faster than a Python-level loop on every header of every message.
_TOKEN_STR = "".join(sorted(TOKEN_CHARS))
_WORD_STR = "".join(sorted(WORD_CHARS))
_DIGIT_STR = "0123456789"


def is_token(text: str) -> bool:
    """token = 1*(alphanum / "-" / ...)  (RFC 3261 §25.1)."""
    return bool(text) and not text.strip(_TOKEN_STR)


def is_word(text: str) -> bool:
    """word (RFC 3261 §25.1), used by callid = word [ "@" word ]."""
    return bool(text) and not text.strip(_WORD_STR)


def is_digits(text: str) -> bool:
    """1*DIGIT with DIGIT = %x30-39 only (str.isdigit also accepts '²' or '٣')."""
    return bool(text) and not text.strip(_DIGIT_STR)


def is_quoted_string(text: str) -> bool:
    """quoted-string = DQUOTE *(qdtext / quoted-pair) DQUOTE, spanning all of `text`."""
    if len(text) < 2 or text[0] != '"':
        return False
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i == len(text) - 1
        else:
            i += 1
    return False


def is_display_name(text: str) -> bool:
    """display-name = *(token LWS) / quoted-string  (RFC 3261 §25.1; RFC 4475 §3.1.2.15).

    Unquoted words may also carry non-ASCII (UTF-8) characters: strictly outside the ABNF,
    but common and never ambiguous, unlike the ASCII separators (',', ';', '"', ...).
    """
    if text.startswith('"'):
        return is_quoted_string(text)
    return all(all(c in TOKEN_CHARS or c > "\x7f" for c in word) for word in text.split())


def find_unquoted(text: str, chars: str, start: int = 0) -> int:
    """Index of the first of `chars` outside quoted-strings and <...>, or -1.

    quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE; quoted-pair = "\\" (%x00-09 /
    %x0B-0C / %x0E-7F)  (RFC 3261 §25.1). An unterminated quote is a protocol error.
    """
    if '"' not in text and "<" not in text:
        found = [i for i in (text.find(c, start) for c in chars) if i >= 0]
        return min(found) if found else -1
    i, n, angle = start, len(text), False
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= n:
                raise ProtocolError("unterminated quoted string")
        elif not angle and c in chars:
            return i
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        i += 1
    return -1


def split_unquoted(text: str, sep: str) -> list[str]:
    """Split on `sep` outside quotes and angle brackets (RFC 3261 §7.3.1 comma lists)."""
    if '"' not in text and "<" not in text:
        return [part.strip() for part in text.split(sep)]
    parts: list[str] = []
    start = 0
    while True:
        idx = find_unquoted(text, sep, start)
        if idx < 0:
            parts.append(text[start:].strip())
            return parts
        parts.append(text[start:idx].strip())
        start = idx + 1


def parse_params(text: str, what: str) -> tuple[tuple[str, str | None], ...]:
    """generic-param = token [ EQUAL gen-value ]; gen-value = token / host / quoted-string.

    `text` is what follows the first ';'. Empty parameters (';;') are errors (RFC 4475 §3.1.2.1).
    """
    params: list[tuple[str, str | None]] = []
    if not text.strip():
        raise ProtocolError(f"empty parameter in {what}")
    for raw in split_unquoted(text, ";"):
        name, eq, value = raw.partition("=")
        name = name.strip()
        if not is_token(name):
            raise ProtocolError(f"bad parameter {raw!r} in {what}")
        if eq:
            value = value.strip()
            if not value:
                raise ProtocolError(f"empty parameter value in {what}")
            params.append((name, value))
        else:
            params.append((name, None))
    return tuple(params)


def param(params: tuple[tuple[str, str | None], ...], name: str) -> str | None:
    """Value of a parameter (names compare case-insensitively); '' for a flag, None if absent."""
    for key, value in params:  # names as written first: they almost always match exactly
        if key == name:
            return "" if value is None else value
    low = name.lower()
    for key, value in params:
        if key.lower() == low:
            return "" if value is None else value
    return None


def unquote(text: str) -> str:
    """The content of a quoted-string, quoted-pairs resolved."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        body = text[1:-1]
        out: list[str] = []
        i = 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            out.append(body[i])
            i += 1
        return "".join(out)
    return text


def parse_uint(text: str, what: str, maximum: int) -> int:
    """1*DIGIT within [0, maximum] (CSeq ≤ 2**31-1 per §8.1.1.5, Max-Forwards ≤ 255 per §20.22)."""
    text = text.strip()
    if not is_digits(text) or len(text) > 12:
        raise ProtocolError(f"{what} is not a number: {text!r}")
    value = int(text)
    if value > maximum:
        raise ProtocolError(f"{what} is too large: {text}")
    return value
