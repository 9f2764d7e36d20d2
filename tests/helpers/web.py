"""The web side of a test: this run's id, CSRF tokens, signing in, and the isolated test client."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

from flask import has_app_context
from flask.testing import FlaskClient

RUN_ID = uuid.uuid4().hex[:10]       # names this run's database and Redis namespace

CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)


def login(client, email, password="correct-horse-battery", *, remember=False, complete_mfa=True):
    """Sign in as a browser would. When the account has an authenticator (staff made by the
    factories do) and the answer sends to the code step, give the code the authenticator shows now
    (by the app's clock), unless ``complete_mfa=False``: then the code step's redirect is returned."""
    html = client.get("/login").get_data(as_text=True)
    data = {"email": email, "password": password}
    if remember:
        data["remember"] = "y"
    if CSRF_RE.search(html):          # absent only where a test turned CSRF off
        data["csrf_token"] = csrf_from(html)
    response = client.post("/login", data=data)
    if complete_mfa and response.status_code == 303 and response.location.endswith("/login/mfa"):
        response = submit_mfa_code(client, current_code(client.application, email))
    return response


def submit_mfa_code(client, code, url="/login/mfa"):
    html = client.get(url).get_data(as_text=True)
    data = {"code": code}
    if CSRF_RE.search(html):
        data["csrf_token"] = csrf_from(html)
    return client.post(url, data=data)


def current_code(app, email) -> str:
    """The code the account's authenticator shows now (the app's clock, so a frozen test clock
    works), for a step not yet used: sign-ins a moment apart take the current step, then the next
    (both accepted for clock drift). A third within one step of a frozen clock clears the account's
    replay guard first (a test convenience: the guard itself is tested in tests/accounts/test_mfa.py)."""
    from sqlalchemy import select

    from app.extensions import db as sqla
    from app.models import User
    from app.services import mfa

    with app.app_context():
        user = sqla.session.scalar(select(User).where(User.email == email.strip().lower()))
        assert user is not None and user.mfa_secret, f"{email} has no authenticator"
        at = app.extensions["clock"].now()
        step = int(at.timestamp()) // mfa.STEP
        for candidate in (step, step + 1):
            if user.mfa_last_step is None or candidate > user.mfa_last_step:
                return mfa.code_at(user.mfa_secret, datetime.fromtimestamp(candidate * mfa.STEP, timezone.utc))
        user.mfa_last_step = step - 1
        sqla.session.commit()
        return mfa.code_at(user.mfa_secret, at)


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
