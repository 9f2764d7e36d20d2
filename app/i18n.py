"""English and Spanish (issue 17): Flask-Babel with the gettext catalogues in app/translations.

- The patient's language: their profile's ``users.locale`` when signed in and set; else the ``lang``
  cookie (the language switch in the footer); else the browser's Accept-Language; else English.
  Staff pages stay English (their strings are not marked).
- Messages (SMS, email) and PDFs are made outside a request: they use ``force_locale(message_locale(user))``.
- The catalogues (``.po``) are the source, kept in the repository; the compiled ``.mo`` files are
  generated at start-up into the instance folder (never committed), rebuilt when a ``.po`` is newer.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, request
from flask_babel import Babel

from app.models.user import LOCALES      # the languages spoken (users.locale's values)

DEFAULT_LOCALE = "en"
LANG_COOKIE = "lang"
SOURCE_DIR = Path(__file__).parent / "translations"

babel = Babel()


def compile_catalogues(target: Path) -> Path:
    """Compile every app/translations/<lang>/LC_MESSAGES/*.po into ``target`` (same layout); atomic."""
    for po_path in SOURCE_DIR.glob("*/LC_MESSAGES/*.po"):
        rel = po_path.relative_to(SOURCE_DIR)
        mo_path = (target / rel).with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        with po_path.open("rb") as handle:
            catalog = read_po(handle, locale=rel.parts[0])
        fd, tmp = tempfile.mkstemp(dir=mo_path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            write_mo(out, catalog, use_fuzzy=False)
        os.replace(tmp, mo_path)
    return target


def choose_locale() -> str:
    from flask import has_request_context
    from flask_login import current_user

    if not has_request_context():        # a job or a test's app context: English unless force_locale says
        return DEFAULT_LOCALE
    user_locale = getattr(current_user, "locale", None) if getattr(current_user, "is_authenticated", False) else None
    if user_locale in LOCALES:
        return user_locale
    cookie = request.cookies.get(LANG_COOKIE)
    if cookie in LOCALES:
        return cookie
    return request.accept_languages.best_match(LOCALES) or DEFAULT_LOCALE


def page_locale() -> str:
    """The language of the page being rendered ("en" or "es")."""
    from app.services.locale_format import current_language

    language = current_language()
    return language if language in LOCALES else DEFAULT_LOCALE


def N_(message: str) -> str:
    """Mark a string for the catalogue without translating it here: it is kept as written (e.g. a
    payment consent's wording, stored as evidence in English); the page shows ``gettext(message)``."""
    return message


def message_locale(user) -> str:
    """The language of a message or PDF for this user: their profile's, else English."""
    value = getattr(user, "locale", None)
    return value if value in LOCALES else DEFAULT_LOCALE


def init_app(app: Flask) -> None:
    compiled = compile_catalogues(Path(app.instance_path) / "translations")
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(compiled)
    babel.init_app(app, locale_selector=choose_locale)
