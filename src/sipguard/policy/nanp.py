"""NANP numbers (country code 1) as tables: phonenumbers' answers without running it per number.

A dialer calls mostly numbers it has never called, so caching phonenumbers' answer per number
or per exchange misses, and each miss costs 30-90 µs. For a ten-digit national number
phonenumbers decides validity, numbering region and number type with nothing but regular
expressions from its metadata (each region's `leading_digits` and the national number
pattern of every number category, `PhoneMetadata`), and time zones and geographic
descriptions with longest-prefix tables (`tzdata.TIMEZONE_DATA`, `geodata.GEOCODE_DATA`).

So, here:

* every NANP metadata pattern becomes a small automaton over digits (`_Nfa`); a number is
  walked through their product, built lazily, one state per distinct combination of
  "where each pattern stands" (a few hundred). The states reached after ten digits fix the
  outcome of every pattern, hence every answer phonenumbers derives from them: the first
  number to reach a state is asked of phonenumbers, the rest share its `NanpClass`. The
  walk costs about 1 µs, and unlike a per-NPA-NXX shortcut it is right for patterns that
  look at seven or eight digits (Barbados, Montserrat, personal numbers 52x);
* the prefix tables are read directly, restricted to country code 1 (`NanpTables`).

tests/policy/test_nanp_tables.py compares both with phonenumbers on random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import ClassVar, Generic, TypeVar

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberDesc, geocoder, timezone
from phonenumbers.geodata import GEOCODE_DATA
from phonenumbers.tzdata import TIMEZONE_DATA

T = TypeVar("T")
NANP_CC = 1
_UNKNOWN_ZONES = ("Etc/Unknown",)  # timezone's answer when no prefix matches
NATIONAL_LENGTH = 10
_ALL_DIGITS = frozenset(range(10))


# -- patterns as automata -----------------------------------------------------------------


class _Nfa:
    """Thompson automaton of one metadata pattern, over digits 0-9.

    The metadata uses a small subset of regex syntax: digits, `\\d`, `[...]` with ranges,
    `(?:...)`, `|` and `{n}`; anything else raises ValueError (a newer phonenumbers with
    richer patterns must fail here, not answer wrongly). With `prefix=True` the pattern
    need only match a prefix (`re.match`, as phonenumbers uses `leading_digits`).
    """

    ACCEPT: ClassVar[int] = 0

    def __init__(self, pattern: str, *, prefix: bool = False) -> None:
        self._text = pattern
        self._pos = 0
        # state -> (digits, target) for a digit edge, or (None, targets) for epsilon edges
        self.digit_edges: list[tuple[frozenset[int], int] | None] = [None]
        self.eps_edges: list[tuple[int, ...]] = [()]
        end = self.ACCEPT
        if prefix:  # after a match, any digits may follow
            end = self._new_eps(())
            self.eps_edges[end] = (self._new_digits(_ALL_DIGITS, end), self.ACCEPT)
        self.start = self._alternation(end)
        if self._pos != len(pattern):
            raise ValueError(f"unsupported pattern syntax at {self._pos}: {pattern!r}")

    def _new_digits(self, digits: frozenset[int], target: int) -> int:
        self.digit_edges.append((digits, target))
        self.eps_edges.append(())
        return len(self.digit_edges) - 1

    def _new_eps(self, targets: tuple[int, ...]) -> int:
        self.digit_edges.append(None)
        self.eps_edges.append(targets)
        return len(self.digit_edges) - 1

    def _peek(self) -> str:
        return self._text[self._pos : self._pos + 1]

    # Built right to left: each piece is compiled knowing the state that follows it, so
    # an alternation's branches share one continuation.
    def _alternation(self, then: int) -> int:
        branches = [self._sequence(then)]
        while self._peek() == "|":
            self._pos += 1
            branches.append(self._sequence(then))
        return branches[0] if len(branches) == 1 else self._new_eps(tuple(branches))

    def _sequence(self, then: int) -> int:
        atoms: list[tuple[int, int]] = []  # (start offset of the atom's text, repeat count)
        while self._peek() not in ("", "|", ")"):
            start = self._pos
            self._skip_atom()
            count = 1
            if self._peek() == "{":
                close = self._text.index("}", self._pos)
                count_text = self._text[self._pos + 1 : close]
                if not count_text.isdigit():
                    raise ValueError(f"unsupported pattern repeat {{{count_text}}}: {self._text!r}")
                count = int(count_text)
                self._pos = close + 1
            atoms.append((start, count))
        end = self._pos
        state = then
        for start, count in reversed(atoms):
            for _ in range(count):
                self._pos = start
                state = self._atom(state)
        self._pos = end
        return state

    def _skip_atom(self) -> None:
        char = self._peek()
        if char == "(":
            depth = 0
            for i in range(self._pos, len(self._text)):
                depth += {"(": 1, ")": -1}.get(self._text[i], 0)
                if depth == 0:
                    self._pos = i + 1
                    return
            raise ValueError(f"unbalanced pattern: {self._text!r}")
        if char == "[":
            self._pos = self._text.index("]", self._pos) + 1
        else:
            self._pos += 2 if char == "\\" else 1

    def _atom(self, then: int) -> int:
        text, pos = self._text, self._pos
        if text.startswith("(?:", pos):
            self._pos = pos + 3
            state = self._alternation(then)
            if self._peek() != ")":
                raise ValueError(f"unbalanced pattern: {text!r}")
            return state
        if text[pos] == "[":
            close = text.index("]", pos)
            return self._new_digits(_digit_class(text[pos + 1 : close], text), then)
        token = text[pos : pos + 2] if text[pos] == "\\" else text[pos]
        return self._new_digits(_single(token, text), then)

    def closure(self, states: frozenset[int] | tuple[int, ...]) -> frozenset[int]:
        """The states reachable through epsilon edges, kept: digit states and ACCEPT."""
        out: set[int] = set()
        todo = list(states)
        seen: set[int] = set()
        while todo:
            state = todo.pop()
            if state in seen:
                continue
            seen.add(state)
            if self.eps_edges[state]:
                todo.extend(self.eps_edges[state])
            else:
                out.add(state)
        return frozenset(out)

    def step(self, states: frozenset[int], digit: int) -> frozenset[int]:
        targets = []
        for state in states:
            edge = self.digit_edges[state]
            if edge is not None and digit in edge[0]:
                targets.append(edge[1])
        return self.closure(tuple(targets))


def _single(token: str, pattern: str) -> frozenset[int]:
    if token == "\\d":
        return _ALL_DIGITS
    if token.isdigit() and len(token) == 1:
        return frozenset({int(token)})
    raise ValueError(f"unsupported pattern syntax {token!r}: {pattern!r}")


def _digit_class(body: str, pattern: str) -> frozenset[int]:
    """The digits of a bracket expression body ('2-57-9', '\\d')."""
    digits: set[int] = set()
    i = 0
    while i < len(body):
        if body.startswith("\\d", i):
            digits |= _ALL_DIGITS
            i += 2
        elif i + 2 < len(body) and body[i + 1] == "-":
            digits |= set(range(int(body[i]), int(body[i + 2]) + 1))
            i += 3
        else:
            digits |= _single(body[i], pattern)
            i += 1
    return frozenset(digits)


# -- every NANP pattern at once ---------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class NanpClass:
    """What phonenumbers says of every number that ends in one product state."""

    valid: bool  # is_valid_number
    region: str  # region_code_for_number ("" for none)
    kind: int  # number_type (a PhoneNumberType)
    zones: tuple[str, ...] | None  # time_zones_for_number; None: by prefix (geographic types)
    country_name: str  # geocoder.country_name_for_number, the geocoder's fallback


def _patterns() -> list[_Nfa]:
    """Every pattern phonenumbers may test a NANP national number against (duplicates once)."""
    found: dict[tuple[str, bool], _Nfa] = {}
    for region in phonenumbers.region_codes_for_country_code(NANP_CC):
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None:
            continue
        if metadata.leading_digits:
            key = (metadata.leading_digits, True)
            found.setdefault(key, _Nfa(key[0], prefix=True))
        for desc in vars(metadata).values():
            if not (isinstance(desc, PhoneNumberDesc) and desc.national_number_pattern):
                continue
            if desc.possible_length and NATIONAL_LENGTH not in desc.possible_length:
                continue  # never matches ten digits: phonenumbers checks the length first
            key = (desc.national_number_pattern, False)
            found.setdefault(key, _Nfa(key[0]))
    return list(found.values())


_NONE, _ALL, _MIXED = 0, 1, 2  # how many completions of a prefix a pattern matches


class _Dfa:
    """One pattern's automaton made deterministic as far as numbers take it: state sets are
    numbered, and steps and outcomes are remembered."""

    def __init__(self, nfa: _Nfa) -> None:
        self._nfa = nfa
        self._ids: dict[frozenset[int], int] = {}
        self._sets: list[frozenset[int]] = []
        self._steps: dict[tuple[int, int], int] = {}
        self._outcomes: dict[tuple[int, int], int] = {}
        self.start = self._id(nfa.closure((nfa.start,)))

    def _id(self, states: frozenset[int]) -> int:
        found = self._ids.get(states)
        if found is None:
            found = self._ids[states] = len(self._sets)
            self._sets.append(states)
        return found

    def step(self, state: int, digit: int) -> int:
        found = self._steps.get((state, digit))
        if found is None:
            found = self._steps[state, digit] = self._id(self._nfa.step(self._sets[state], digit))
        return found

    def outcome(self, state: int, remaining: int) -> int:
        """_ALL, _NONE or _MIXED: whether the pattern matches every, no or some of the ways
        to go on with `remaining` more digits from `state`."""
        found = self._outcomes.get((state, remaining))
        if found is None:
            if remaining == 0:
                found = _ALL if _Nfa.ACCEPT in self._sets[state] else _NONE
            else:
                seen = {self.outcome(self.step(state, d), remaining - 1) for d in range(10)}
                found = seen.pop() if len(seen) == 1 else _MIXED
            self._outcomes[state, remaining] = found
        return found


class Classifier:
    """`classify(national)`: phonenumbers' class of a ten-digit NANP national number.

    A product state is (digits read, each pattern's state). Once no pattern's outcome can
    change any more ("decided": for most US and Canadian numbers after the area code and
    one more digit) the state loops to itself, which keeps the states few (some 800 with
    phonenumbers 9.0, built in about 0.2 s at start).
    """

    def __init__(self) -> None:
        self._dfas = [_Dfa(nfa) for nfa in _patterns()]
        self._ids: dict[tuple[int, tuple[int, ...]], int] = {}
        self._members: list[tuple[int, ...]] = []  # state -> each pattern's state
        self._next: list[int] = []  # [state * 10 + digit] -> state
        self._classes: dict[int, NanpClass] = {}  # decided state -> class
        todo = [(self._state_id(0, tuple(dfa.start for dfa in self._dfas)), "")]
        while todo:
            state, prefix = todo.pop()
            depth, members = len(prefix), self._members[state]
            if all(
                dfa.outcome(member, NATIONAL_LENGTH - depth) != _MIXED
                for dfa, member in zip(self._dfas, members, strict=True)
            ):
                self._next[state * 10 : state * 10 + 10] = [state] * 10
                # every pattern's outcome is fixed for all numbers from here: ask
                # phonenumbers about one of them on behalf of all
                self._classes[state] = _ask_phonenumbers(prefix.ljust(NATIONAL_LENGTH, "0"))
                continue
            for digit in range(10):
                known = len(self._members)
                target = self._state_id(
                    depth + 1,
                    tuple(dfa.step(m, digit) for dfa, m in zip(self._dfas, members, strict=True)),
                )
                if target == known:  # new: walk on from it
                    todo.append((target, prefix + str(digit)))
                self._next[state * 10 + digit] = target

    def _state_id(self, depth: int, members: tuple[int, ...]) -> int:
        found = self._ids.get((depth, members))
        if found is None:
            found = self._ids[depth, members] = len(self._members)
            self._members.append(members)
            self._next.extend([-1] * 10)  # until built
        return found

    def classify(self, national: str) -> NanpClass:
        """The class of ten ASCII digits (the caller checks), e.g. '2125551234'."""
        state = 0
        table = self._next
        for byte in national.encode():
            state = table[state * 10 + byte - 48]
        return self._classes[state]

    def settled(self, prefix: str) -> NanpClass | None:
        """The class of every number that starts with `prefix` (ASCII digits, fewer than
        ten), when those digits decide it already; None when the rest may change it."""
        try:
            return self.classify(prefix)  # a whole number's walk, cut short
        except KeyError:  # it stopped on a state not decided yet
            return None

    def state_count(self) -> int:
        return len(self._members)


def _ask_phonenumbers(national: str) -> NanpClass:
    parsed = phonenumbers.parse(f"+{NANP_CC}{national}", None)
    kind = phonenumbers.number_type(parsed)
    geographic = phonenumbers.is_number_type_geographical(kind, NANP_CC)
    return NanpClass(
        valid=phonenumbers.is_valid_number(parsed),
        region=phonenumbers.region_code_for_number(parsed) or "",
        kind=kind,
        zones=None if geographic else tuple(timezone.time_zones_for_number(parsed)),
        country_name=geocoder.country_name_for_number(parsed, "en"),
    )


class PrefixTable(Generic[T]):
    """Longest-prefix lookup, as phonenumbers does in its prefix tables."""

    __slots__ = ("_inner", "_lengths", "_table")

    def __init__(self, table: dict[str, T]) -> None:
        self._table = table
        self._lengths = tuple(sorted({len(key) for key in table}, reverse=True))
        self._inner = frozenset(key[:n] for key in table for n in range(len(key)))

    def decides(self, prefix: str) -> bool:
        """Whether `get` answers the same for every key that starts with `prefix` (no entry
        is longer and starts with it): `get(prefix)` is then their answer."""
        return prefix not in self._inner

    def get(self, key: str) -> T | None:
        table = self._table
        for length in self._lengths:
            found = table.get(key[:length])
            if found is not None:
                return found
        return None


class NanpTables:
    """phonenumbers' answers for NANP national numbers (ten ASCII digits: the caller checks)."""

    def __init__(self) -> None:
        cc = str(NANP_CC)
        self.classifier = Classifier()
        # timezone.time_zones_for_geographical_number's table, keys without the '1'
        self._zones = PrefixTable(
            {key[len(cc) :]: tuple(z) for key, z in TIMEZONE_DATA.items() if key.startswith(cc)}
        )
        # the geocoder's English descriptions, keys without the '1'; a key without English
        # text is left out, as the geocoder then falls back to a shorter prefix
        self._places = PrefixTable(
            {
                key[len(cc) :]: names["en"]
                for key, names in GEOCODE_DATA.items()
                if key.startswith(cc) and "en" in names
            }
        )

    def valid(self, national: str) -> bool:
        """phonenumbers.is_valid_number."""
        return self.classifier.classify(national).valid

    def facts(self, national: str) -> tuple[NanpClass, tuple[str, ...], str]:
        """The class, timezone.time_zones_for_number and
        geocoder.description_for_valid_number(number, "en")."""
        kind = self.classifier.classify(national)
        zones = kind.zones
        if zones is None:
            zones = self._zones.get(national) or _UNKNOWN_ZONES
        return kind, zones, self._places.get(national) or kind.country_name

    def settled_facts(self, prefix: str) -> tuple[NanpClass, tuple[str, ...], str] | None:
        """`facts` of every number that starts with `prefix` (digits, fewer than ten), when
        those digits decide them all; None when the digits after it may change one."""
        kind = self.classifier.settled(prefix)
        if kind is None or not self._places.decides(prefix):
            return None
        zones = kind.zones
        if zones is None:
            if not self._zones.decides(prefix):
                return None
            zones = self._zones.get(prefix) or _UNKNOWN_ZONES
        return kind, zones, self._places.get(prefix) or kind.country_name


@cache
def tables() -> NanpTables:
    """Built once, in about 0.5 s (`Numbers` asks for them at start)."""
    return NanpTables()
