"""Template filters: times in the viewer's zone, money from cents — both in the page's language
(English as ever; Spanish through Babel: app/services/locale_format.py)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask
from flask_login import current_user

from app.services.locale_format import current_language, format_local, format_money


def viewer_tz() -> str:
    if getattr(current_user, "is_authenticated", False):
        return current_user.timezone
    return "UTC"


def local(dt: datetime | None, fmt: str = "%a %b %-d, %-I:%M %p", tz: str | None = None) -> str:
    """A UTC instant shown in the viewer's (or the given) timezone."""
    if dt is None:
        return ""
    return format_local(dt.astimezone(ZoneInfo(tz or viewer_tz())), fmt, language())


def money(cents: int | None) -> str:
    if cents is None:
        return ""
    return format_money(cents, language())


# The language being rendered: the request's, or the one a message/PDF forces (None: English).
language = current_language


def register(app: Flask) -> None:
    app.add_template_filter(local, "local")
    app.add_template_filter(money, "money")
    app.add_template_global(viewer_tz, "viewer_tz")
    app.add_template_global(language, "page_language")
