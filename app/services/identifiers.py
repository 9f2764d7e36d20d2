"""The clinic's and its clinicians' public identifiers: the NPI (National Provider Identifier, 10 digits
whose last is a Luhn check digit computed over the prefix 80840 + the first nine, per CMS's "NPI check
digit" rule) and the TIN (the tax id: an EIN, 9 digits, written NN-NNNNNNN).

Pure functions, no session: forms and services both call them, so nothing malformed is ever stored.
"""
from __future__ import annotations

import re

NPI_PREFIX = "80840"          # the ISO 7812 issuer prefix for US health applications
_SEPARATORS = re.compile(r"[\s\-.]")


class InvalidIdentifier(ValueError):
    """The message is the sentence shown beside the field."""


def luhn_check_digit(digits: str) -> int:
    """The Luhn check digit of ``digits`` (the digit to append)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:            # the rightmost digit of the payload is doubled (the check digit follows it)
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def npi_is_valid(value: str) -> bool:
    return (isinstance(value, str) and len(value) == 10 and value.isascii() and value.isdigit()
            and luhn_check_digit(NPI_PREFIX + value[:9]) == int(value[9]))


def normalize_npi(text: str | None) -> str | None:
    """``text`` as a stored NPI (10 digits), None when empty; InvalidIdentifier otherwise.
    Spaces and dashes people type are ignored."""
    raw = _SEPARATORS.sub("", text or "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) != 10:
        raise InvalidIdentifier("An NPI is 10 digits.")
    if not npi_is_valid(raw):
        raise InvalidIdentifier("This is not a valid NPI: check the digits (its last digit does not match).")
    return raw


def normalize_tin(text: str | None) -> str | None:
    """``text`` as a stored TIN, written NN-NNNNNNN; None when empty; InvalidIdentifier otherwise."""
    raw = _SEPARATORS.sub("", text or "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) != 9:
        raise InvalidIdentifier("A tax id (TIN) is 9 digits, like 12-3456789.")
    return format_tin(raw)


def format_tin(value: str | None) -> str | None:
    """A TIN shown as NN-NNNNNNN (a stored value is already; 9 bare digits are formatted)."""
    if not value:
        return None
    digits = _SEPARATORS.sub("", value)
    if len(digits) == 9 and digits.isdigit():
        return f"{digits[:2]}-{digits[2:]}"
    return value
