"""Helpers for views: render a page or one of its fragment blocks, redirect
for htmx or a plain form post, and the clinic's current actor/context."""
from __future__ import annotations

from flask import make_response, redirect, render_template, request
from jinja2_fragments.flask import render_block


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def render(template: str, *, block: str | None = None, status: int = 200, **context):
    """The named block for an htmx request (when given), the whole page otherwise."""
    if block and is_htmx():
        body = render_block(template, block, **context)
    else:
        body = render_template(template, **context)
    response = make_response(body, status)
    response.headers.add("Vary", "HX-Request")
    return response


def redirect_htmx(location: str):
    """After a successful post, go to a whole page: HX-Redirect for htmx, 303 See Other otherwise.

    Not HX-Location: htmx follows that with an htmx GET (HX-Request: true), so ``render(...,
    block=...)`` answers with the fragment alone and htmx swaps it into <body>, losing the
    header, the navigation and the flash message. HX-Redirect makes the browser load the page.
    """
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = location
        return response
    return redirect(location, code=303)


def client_ip() -> str | None:
    return request.remote_addr


def now():
    """The app's clock (a FrozenClock in tests)."""
    from flask import current_app

    return current_app.extensions["clock"].now()


def actor():
    from flask_login import current_user

    from app.services.audit import Actor

    return Actor.of(current_user)


def not_found_audited(appointment_id: int, actor_=None):
    """Refuse someone else's appointment as if it did not exist (404), and audit the attempt."""
    from flask import abort

    from app.extensions import db
    from app.services import audit

    audit.record(db.session, actor=actor_ or actor(), action="access.denied", outcome="failure",
                 details={"appointment_id": appointment_id, "path": request.path})
    db.session.commit()
    abort(404)
