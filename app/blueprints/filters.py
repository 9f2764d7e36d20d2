"""Template filters: times in the viewer's zone, money from cents."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask
from flask_login import current_user


def viewer_tz() -> str:
    if getattr(current_user, "is_authenticated", False):
        return current_user.timezone
    return "UTC"


def local(dt: datetime | None, fmt: str = "%a %b %-d, %-I:%M %p", tz: str | None = None) -> str:
    """A UTC instant shown in the viewer's (or the given) timezone."""
    if dt is None:
        return ""
    return dt.astimezone(ZoneInfo(tz or viewer_tz())).strftime(fmt)


def money(cents: int | None) -> str:
    if cents is None:
        return ""
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def register(app: Flask) -> None:
    app.add_template_filter(local, "local")
    app.add_template_filter(money, "money")
    app.add_template_global(viewer_tz, "viewer_tz")
