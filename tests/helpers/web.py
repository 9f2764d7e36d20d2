"""The web side of a test: this run's id, CSRF tokens, signing in, and the isolated test client."""
from __future__ import annotations

import re
import uuid

from flask import has_app_context
from flask.testing import FlaskClient

RUN_ID = uuid.uuid4().hex[:10]       # names this run's database and Redis namespace

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)


def login(client, email, password="correct-horse-battery"):
    html = client.get("/login").get_data(as_text=True)
    data = {"email": email, "password": password}
    if CSRF_RE.search(html):          # absent only where a test turned CSRF off
        data["csrf_token"] = csrf_from(html)
    return client.post("/login", data=data)


class IsolatedClient(FlaskClient):
    """Each request in its own app context (own ``g``, own session), as in production,
    even while the test holds an app context for its ``db`` session."""

    def open(self, *args, **kwargs):
        from app.extensions import db as sqla

        with self.application.app_context():
            response = super().open(*args, **kwargs)
        if has_app_context():
            sqla.session.expire_all()      # the test sees what the request committed
        return response
