"""Step-up MFA and the staff enrolment gate: the checks other views call.

``require_recent_mfa`` guards a sensitive action (issuing a refund today; signing a clinical note
next): when the current session last proved the second factor more than ``STEP_UP_MAX_AGE``
(15 minutes) ago, the action is refused, changes nothing, and the user is asked for a code
(``auth.step_up``); after a right code they retry the action. Use it under ``@access``::

    @bp.post("/notes/<int:note_id>/sign")
    @access("provider", phi="note")
    @require_recent_mfa                      # or @require_recent_mfa(max_age=timedelta(minutes=5))
    def sign_note(note_id): ...

or inline, where the check depends on the input: ``if (refusal := step_up_needed()) is not None:
return refusal``. The answer is htmx-friendly: an htmx request gets ``HX-Redirect`` to the code
page (which comes back to the page the action was on); a plain post gets the code page itself
(403). The last verification time lives on the server-side session row
(``UserSession.mfa_verified_at``), so a copied cookie does not carry it anywhere else.

``enrolment_gate`` (a before_request, after the access rules) keeps a signed-in staff member who
has not enrolled an authenticator on the enrolment page: every other page answers with a redirect
there, except sign-out and the static files.
"""
from __future__ import annotations

import functools
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, g, redirect, request, url_for
from flask_login import current_user

from app.web import is_htmx, now, redirect_htmx, render

# Endpoints an unenrolled staff member may still use.
ENROLMENT_OPEN = frozenset({"auth.mfa_setup", "auth.logout", "auth.login", "static", "assets.htmx"})


def current_session():
    """The server-side session row of this request (set by the user loader), or None."""
    return g.get("user_session")


def mfa_age() -> timedelta | None:
    row = current_session()
    if row is None or row.mfa_verified_at is None:
        return None
    return now() - row.mfa_verified_at


def has_recent_mfa(max_age: timedelta | None = None) -> bool:
    limit = max_age or current_app.config["SETTINGS"].STEP_UP_MAX_AGE
    age = mfa_age()
    # A verification "in the future" (a test clock moved back) counts as fresh.
    return age is not None and age <= limit


def _return_to() -> str:
    """Where to come back after the code: the page the action was on (same-origin Referer), or
    the action's own URL for a GET."""
    if request.method == "GET":
        return request.full_path.rstrip("?")
    referrer = request.headers.get("HX-Current-URL") or request.referrer or ""
    parts = urlsplit(referrer)
    if not parts.path or (parts.netloc and parts.netloc != request.host):
        return "/"                         # home: the code page sends each role to its own
    path = parts.path
    return path + (f"?{parts.query}" if parts.query else "")


def step_up_needed(max_age: timedelta | None = None):
    """None when the last code is recent enough; otherwise the refusal to return."""
    if has_recent_mfa(max_age):
        return None
    back = _return_to()
    if is_htmx():
        return redirect_htmx(url_for("auth.step_up", next=back))
    from app.blueprints.auth.views import CodeForm

    return render("auth/step_up.html", status=403, form=CodeForm(formdata=None), next=back,
                  enrolled=current_user.mfa_enrolled, error=None)


def require_recent_mfa(view=None, *, max_age: timedelta | None = None):
    """Decorator: refuse the view unless the session's last MFA is within ``max_age``
    (default ``STEP_UP_MAX_AGE``). Put it below ``@access`` so the rules stay on the outer view."""
    def wrap(fn):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            refusal = step_up_needed(max_age)
            if refusal is not None:
                return refusal
            return fn(*args, **kwargs)
        return guarded
    return wrap(view) if view is not None else wrap


def enrolment_gate():
    """before_request: staff without an authenticator reach only the enrolment page."""
    if request.endpoint is None or request.endpoint in ENROLMENT_OPEN:
        return None
    if not current_user.is_authenticated or not current_user.is_staff or current_user.mfa_enrolled:
        return None
    target = url_for("auth.mfa_setup")
    if is_htmx():
        response = current_app.response_class(status=401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)
