"""Development only (registered only when APP_ENV=development, and then only for a signed-in
admin: it lists recipients' addresses and numbers): the message outbox.

Every SMS and email the portal sent while Twilio / SMTP are not configured,
newest first, with their links clickable."""
import re

from flask import Blueprint
from markupsafe import Markup, escape
from sqlalchemy import select

from app.access import access
from app.extensions import db
from app.models import Notification
from app.web import render

bp = Blueprint("dev", __name__, url_prefix="/dev")
URL = re.compile(r"(https?://[^\s<]+)")


def linkify(text: str | None) -> Markup:
    return Markup(URL.sub(lambda m: f'<a href="{m.group(1)}">{m.group(1)}</a>', str(escape(text or ""))))


@bp.get("/outbox")
@access("admin", phi="outbox")   # development only, and then only for a signed-in admin
def outbox():
    rows = db.session.scalars(select(Notification).where(Notification.provider == "outbox")
                              .order_by(Notification.id.desc()).limit(200)).all()
    return render("dev/outbox.html", rows=rows, linkify=linkify)
