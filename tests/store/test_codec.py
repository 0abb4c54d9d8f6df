"""Number keys (store/codec.py): exactly the E.164 strings map to keys, whatever int()
would also accept."""

from __future__ import annotations

import itertools

import pytest

from sipguard.store.codec import key_number, number_key


def strict_key(e164: str) -> int | None:
    """The definition: '+', 1 to 15 ASCII digits, no leading 0."""
    digits = e164[1:]
    if e164[:1] != "+" or not (digits.isdigit() and digits.isascii()) or digits[0] == "0":
        return None
    return int(digits) if len(digits) <= 15 else None


@pytest.mark.parametrize("text", [
    "+12125551234", "+1", "+9", "+123456789012345", "+447911123456",
    "", "+", "1", "12125551234", "+0", "+00", "+012125551234", "+1234567890123456",
    "+1_2", "+12 ", " +12", "+ 12", "+12\n", "++1", "+-1", "-1", "+1e5", "+1.0",
    "+١٢", "+1٣", "+𝟙2", "+12\u3000", "+0x12",
])
def test_number_key_accepts_exactly_e164(text: str) -> None:
    assert number_key(text) == strict_key(text)


def test_number_key_agrees_with_the_definition_on_every_short_string() -> None:
    for length in range(1, 7):
        for chars in itertools.product("+01 _-٣", repeat=length):
            text = "".join(chars)
            assert number_key(text) == strict_key(text), text


def test_keys_and_numbers_round_trip() -> None:
    for text in ("+1", "+12125551234", "+999999999999999"):
        key = number_key(text)
        assert key is not None and key_number(key) == text
