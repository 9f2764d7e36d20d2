"""Plain error pages: never a stack trace.

When the database is away (connection refused, a restart, the pool exhausted) or a deadlock /
serialization failure outlasted its retries (``app/services/retry.py``), the answer is a 503 with
``Retry-After``: the friendly page for pages, a redirect to reload the current page for htmx (htmx
does not swap a 503), and JSON for the checkout's fetch endpoints and the webhooks (Stripe retries a
non-2xx). The log line names the error class and SQLSTATE only: a database error's text carries the
statement's parameters, which may be PHI.
"""
from urllib.parse import urlsplit

import psycopg
from flask import Flask, current_app, flash, g, jsonify, request
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import exc as sa_exc

from app.extensions import db
from app.services.retry import is_transient, sqlstate
from app.web import is_htmx, render

# Lazy (issue 17): made in the viewer's language when shown; str() them before flash() or JSON.
MESSAGES = {
    400: (_l("Something was wrong with that request"), _l("Go back, check the form and try again.")),
    403: (_l("You can't open this page"), _l("Your account does not have access to it.")),
    404: (_l("Page not found"), _l("The page you asked for does not exist or is not yours.")),
    405: (_l("Not allowed"), _l("That action is not available here.")),
    429: (_l("Too many attempts"), _l("Please wait a minute and try again.")),
    500: (_l("Something went wrong on our side"), _l("Nothing was lost. Please try again in a moment; "
          "if it keeps happening, call the clinic.")),
    503: (_l("The portal is temporarily unavailable"), _l("We can't reach our records just now. Please try again "
          "in a minute; if it is urgent, call the clinic.")),
}
BUSY = _l("The portal is very busy and could not finish that just now. Please try again in a moment.")

# What a 503 means to each kind of caller, and when to ask again (seconds).
UNAVAILABLE_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                      sa_exc.DisconnectionError, psycopg.OperationalError, psycopg.InterfaceError)
RETRY_AFTER_OUTAGE = 30
RETRY_AFTER_BUSY = 5
# Endpoints called by fetch() that read JSON (app/static/js/checkout.js), and the webhooks.
JSON_ENDPOINTS = frozenset({"checkout.complete", "checkout.pay_saved", "checkout.save_card"})
JSON_BLUEPRINTS = frozenset({"webhooks", "fhir"})


def _page(code: int, detail: str | None = None):
    title, message = MESSAGES[code]
    return render("errors/error.html", status=code, code=code, title=str(title),
                  message=str(detail or message))


def register(app: Flask) -> None:
    for code in (400, 403, 404, 405, 429):
        app.register_error_handler(code, lambda error, code=code: _page(code))

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return _page(400, _l("Your form expired or was sent from elsewhere. Reload the page and try again."))

    @app.errorhandler(500)
    def server_error(error):
        db.session.rollback()
        return _page(500)

    for error_class in UNAVAILABLE_ERRORS:
        app.register_error_handler(error_class, unavailable)


def wants_json() -> bool:
    if request.endpoint in JSON_ENDPOINTS or request.blueprint in JSON_BLUEPRINTS:
        return True
    return request.accept_mimetypes.best_match(("text/html", "application/json")) == "application/json"


def unavailable(error):
    """503: the database is away, or a deadlock / serialization failure outlasted its retries."""
    busy = is_transient(error)
    current_app.logger.warning("503 on %s: %s (sqlstate %s)", request.endpoint, type(error).__name__,
                               sqlstate(error) or "-")
    try:
        db.session.rollback()
    except Exception:        # the connection is gone: the session is discarded at teardown anyway
        pass
    _anonymous_if_unloadable()
    retry_after = RETRY_AFTER_BUSY if busy else RETRY_AFTER_OUTAGE
    message = str(BUSY if busy else MESSAGES[503][1])
    if wants_json():
        if request.blueprint in JSON_BLUEPRINTS:
            body = {"error": "temporarily unavailable", "retry_after": retry_after}
        else:
            body = {"state": "error", "error": "temporarily unavailable", "message": message}
            if request.endpoint == "checkout.complete":
                # The page keeps asking while it says so: Stripe may well have taken the card.
                body.update(state="pending", message=str(_l("We are confirming your payment…")))
        response = jsonify(body)
        response.status_code = 503
    elif is_htmx():
        # htmx does not swap a 503: reload the page the request came from (during an outage that
        # load answers this page in full; after a busy moment, the page with the message).
        flash(message, "error")
        response = current_app.response_class(status=503)
        response.headers["HX-Redirect"] = _same_site(request.headers.get("HX-Current-URL"))
    else:
        response = _page(503, None if not busy else message)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _anonymous_if_unloadable() -> None:
    """The page's header asks for the signed-in user; if loading them failed, render as anonymous."""
    try:
        current_user.is_authenticated
    except Exception:
        try:
            db.session.rollback()
        except Exception:
            pass
        g._login_user = current_app.login_manager.anonymous_user()


def _same_site(url: str | None) -> str:
    """Only the path and query of a URL the browser sent: never a redirect elsewhere."""
    if not url:
        return "/"
    parts = urlsplit(url)
    path = parts.path if parts.path.startswith("/") and not parts.path.startswith("//") else "/"
    return path + (f"?{parts.query}" if parts.query else "")
