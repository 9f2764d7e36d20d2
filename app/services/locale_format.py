"""Dates, times and money for a language (issue 17): English exactly as before (strftime, "$1,234.56");
Spanish through Babel (CLDR) in the US variant (``es_US``: the clinics are in the US, their prices in
dollars: "$1,234.56", "domingo, 29 de noviembre, 2:10 p.m.").

Templates pass strftime formats (``{{ at|local("%A, %B %-d at %-I:%M %p") }}``); for Spanish the
format is turned into a CLDR pattern: directives become fields, the English word order of dates
("November 29, 2026") becomes the Spanish one ("29 de noviembre de 2026") and the English joining
words (" at ", " on ") become a comma. Pure functions (the caller says which language), but for ``current_language``.
"""
from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from babel.dates import format_datetime
from babel.numbers import format_currency

# The Babel locale used to format for each language the portal speaks ("en" keeps strftime).
FORMAT_LOCALES = {"es": "es_US"}

# strftime directive -> CLDR field
_FIELDS = {"A": "EEEE", "a": "EEE", "B": "MMMM", "b": "MMM", "d": "dd", "-d": "d", "Y": "y", "y": "yy",
           "m": "MM", "-m": "M", "H": "HH", "-H": "H", "I": "hh", "-I": "h", "M": "mm", "S": "ss",
           "p": "a", "Z": "z", "z": "xx", "j": "D", "e": "d"}

# English date orders -> Spanish ones, applied to the strftime format before translating it.
_REORDER = [
    (re.compile(r"%B %-?d, %Y"), "%-d de %B de %Y"),
    (re.compile(r"%B %-?d %Y"), "%-d de %B de %Y"),
    (re.compile(r"%B %-?d"), "%-d de %B"),
    (re.compile(r"%a %b %-?d, %Y"), "%a, %-d %b %Y"),
    (re.compile(r"%a %b %-?d %Y"), "%a, %-d %b %Y"),
    (re.compile(r"%a %b %-?d"), "%a, %-d %b"),
    (re.compile(r"%b %-?d, %Y"), "%-d %b %Y"),
    (re.compile(r"%b %-?d %Y"), "%-d %b %Y"),
    (re.compile(r"%b %-?d"), "%-d %b"),
    (re.compile(r" at "), ", "),
    (re.compile(r" on "), ", "),
]
_DIRECTIVE = re.compile(r"%(-?[A-Za-z%])")


def format_locale(language: str | None) -> str | None:
    """The Babel locale for a language, or None when strftime/English formatting applies."""
    return FORMAT_LOCALES.get((language or "").split("_")[0])


def cldr_pattern(fmt: str) -> str:
    """A strftime format as a Spanish CLDR pattern (literal text quoted)."""
    for pattern, replacement in _REORDER:
        fmt = pattern.sub(replacement, fmt)
    out: list[str] = []
    pos = 0
    for match in _DIRECTIVE.finditer(fmt):
        out.append(_quote(fmt[pos:match.start()]))
        code = match.group(1)
        out.append("%" if code == "%" else _FIELDS.get(code, _FIELDS.get(code.lstrip("-"), "")))
        pos = match.end()
    out.append(_quote(fmt[pos:]))
    return "".join(out)


def _quote(literal: str) -> str:
    if not literal:
        return ""
    if not re.search(r"[A-Za-z']", literal):
        return literal
    return "'" + literal.replace("'", "''") + "'"


def format_local(at: datetime, fmt: str, language: str | None) -> str:
    """``at`` (already in the viewer's zone) in ``fmt`` (strftime) for the language."""
    locale = format_locale(language)
    if locale is None:
        return at.strftime(fmt)
    return format_datetime(at, cldr_pattern(fmt), tzinfo=at.tzinfo, locale=locale)


def format_money(cents: int, language: str | None) -> str:
    """Integer cents as dollars for the language."""
    locale = format_locale(language)
    if locale is None:
        sign = "-" if cents < 0 else ""
        return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"
    return format_currency(Decimal(cents) / 100, "USD", locale=locale)


def current_language() -> str | None:
    """The language being rendered — a request's, or the one ``force_locale`` set for a message or
    a PDF — or None outside any (then English). Flask-Babel's locale, not Flask's request."""
    from flask_babel import get_locale

    try:
        locale = get_locale()
    except RuntimeError:
        return None
    return locale.language if locale is not None else None
