"""Dates, times and money for the page's language (issue 17): the ``local`` and ``money`` filters.

English is exactly what it was (strftime, "$1,234.56": many tests compare it); Spanish comes from
Babel in the US variant (es_US): Spanish day and month names in the Spanish order, "p.m.", and the
dollar amounts as US Spanish writes them.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from flask import render_template_string
from flask_babel import force_locale

from app.blueprints.filters import local, money
from app.services.locale_format import cldr_pattern, format_local, format_money

AT = datetime(2026, 11, 29, 19, 10, tzinfo=timezone.utc)          # Sunday 2:10 PM in New York
NY = "America/New_York"
FORMATS = ["%a %b %-d, %-I:%M %p", "%A, %B %-d at %-I:%M %p", "%A, %B %-d", "%B %-d, %Y", "%b %-d, %Y",
           "%-I:%M %p", "%Y-%m-%d", "%a %b %-d, %Y %-I:%M %p %Z", "%-I:%M %p on %A, %B %-d",
           "%A, %B %-d, %Y at %-I:%M %p", "%b %-d %Y %-I:%M:%S %p", "%a %-I:%M %p"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_english_is_strftime_byte_for_byte(app, fmt):
    with app.test_request_context(headers={"Accept-Language": "en-US"}):
        assert local(AT, fmt, tz=NY) == AT.astimezone(__import__("zoneinfo").ZoneInfo(NY)).strftime(fmt)


@pytest.mark.parametrize("fmt, spanish", [
    ("%a %b %-d, %-I:%M %p", "dom, 29 nov, 2:10 p.m."),
    ("%A, %B %-d at %-I:%M %p", "domingo, 29 de noviembre, 2:10 p.m."),
    ("%A, %B %-d", "domingo, 29 de noviembre"),
    ("%B %-d, %Y", "29 de noviembre de 2026"),
    ("%b %-d, %Y", "29 nov 2026"),
    ("%-I:%M %p", "2:10 p.m."),
    ("%Y-%m-%d", "2026-11-29"),
    ("%a %b %-d, %Y %-I:%M %p %Z", "dom, 29 nov 2026 2:10 p.m. EST"),
    ("%-I:%M %p on %A, %B %-d", "2:10 p.m., domingo, 29 de noviembre"),
    ("%A, %B %-d, %Y at %-I:%M %p", "domingo, 29 de noviembre de 2026, 2:10 p.m."),
])
def test_spanish_dates_and_times(app, fmt, spanish):
    with app.test_request_context(headers={"Accept-Language": "es-MX,es;q=0.9"}):
        assert local(AT, fmt, tz=NY) == spanish


def test_every_strftime_directive_the_templates_use_has_a_spanish_field():
    import re
    from pathlib import Path

    templates = Path(__file__).resolve().parents[2] / "app" / "templates"
    used = set()
    for path in templates.rglob("*.html"):
        for fmt in re.findall(r"""local\(\s*["']([^"']+)["']""", path.read_text(encoding="utf-8")):
            used.add(fmt)
    assert used, "no local(...) formats found"
    for fmt in used:
        pattern = cldr_pattern(fmt)
        assert "%" not in pattern, (fmt, pattern)
        format_local(AT.astimezone(__import__("zoneinfo").ZoneInfo(NY)), fmt, "es")     # no error


@pytest.mark.parametrize("cents, english, spanish", [
    (0, "$0.00", "$0.00"), (2500, "$25.00", "$25.00"), (123456, "$1,234.56", "$1,234.56"),
    (-5, "-$0.05", "-$0.05"), (100000000, "$1,000,000.00", "$1,000,000.00"),
])
def test_money_in_both_languages(app, cents, english, spanish):
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert money(cents) == english
    with app.test_request_context(headers={"Accept-Language": "es"}):
        assert money(cents) == spanish
    assert format_money(cents, "es") == spanish          # es_US: the dollar as US Spanish writes it
    assert format_money(cents, None) == english
    assert money(None) == ""


def test_the_filters_follow_a_forced_locale_outside_requests(app):
    """A message or PDF (a job: no request) is formatted in the locale it is rendered under."""
    with app.app_context():
        with force_locale("es"):
            assert render_template_string('{{ at|local("%A, %B %-d", tz="America/New_York") }}', at=AT) \
                == "domingo, 29 de noviembre"
        assert render_template_string('{{ at|local("%A, %B %-d", tz="America/New_York") }}', at=AT) == "Sunday, November 29"


def test_the_page_declares_its_language(app, client):
    assert '<html lang="es">' in client.get("/login", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert '<html lang="en">' in client.get("/login", headers={"Accept-Language": "en"}).get_data(as_text=True)
