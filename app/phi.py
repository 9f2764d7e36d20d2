"""The web edge of the PHI access audit: one audit event per view of a page that shows PHI.

A route declares what it shows (``@access(..., phi="appointment")``, app/access.py). The view
names the patient and record it showed with ``shown(...)``; after the view, ``audit_view`` (an
after_request hook) writes one ``phi.viewed`` row (app/services/access_log.py) and commits it:
if that commit fails the page is not sent (the error page is). A route that forgot its
declaration is treated as showing PHI (the route-table test fails for it too).

What counts as a view: a GET (or HEAD) whose answer carries the page (2xx other than 204, and
400 / 409 / 410 / 422 pages that still show the record). Redirects, 204, 401, 403, 404, 405,
413, 429 and 5xx show nothing. POSTs are actions, audited by their own rows. A patient's own pages default to the signed-in
patient when the view names no one.
"""
from __future__ import annotations

from flask import Flask, current_app, g, request
from flask_login import current_user

from app.access import UNDECLARED, phi_for

SHOWS_NOTHING = frozenset({204, 401, 403, 404, 405, 413, 429})
# A view is a GET (or HEAD). A POST is an action: its own audit rows say who did what to which
# record (and a form it re-renders shows what the GET before it showed and audited).
VIEW_METHODS = frozenset({"GET", "HEAD"})


def shown(*, appointment=None, patient_id: int | None = None, appointment_id: int | None = None,
          patient_ids=None, record: dict | None = None, actor=None) -> None:
    """Name what this request's page shows (called by the view; the last call wins, except that
    patient ids add up). ``actor``: who views, when not the signed-in user (a one-click link's
    patient)."""
    subject = g.setdefault("phi_subject", {})
    if actor is not None:
        g.phi_actor = actor
    if appointment is not None:
        patient_id = appointment.patient_id if patient_id is None else patient_id
        appointment_id = appointment.id if appointment_id is None else appointment_id
    if patient_id is not None:
        subject["patient_id"] = patient_id
    if appointment_id is not None:
        subject["appointment_id"] = appointment_id
    if patient_ids is not None:
        subject.setdefault("patient_ids", set()).update(i for i in patient_ids if i is not None)
    if record:
        subject.setdefault("record", {}).update(record)


def withheld() -> None:
    """This answer of a PHI route shows no one (a break-glass form): not a view."""
    g.phi_recorded = True


def recorded() -> None:
    """The view wrote this view's audit event itself (the audit chain page): nothing more to write."""
    g.phi_recorded = True


def _kind() -> str | None:
    if request.endpoint is None:
        return None
    kind = phi_for(current_app, request.endpoint)
    if kind is False:
        return None
    return "undeclared" if kind is UNDECLARED else kind


def audit_view(response):
    if request.method not in VIEW_METHODS:
        return response
    status = response.status_code
    if status in SHOWS_NOTHING or 300 <= status < 400 or status >= 500 or g.get("phi_recorded"):
        return response
    kind = _kind()
    if kind is None:
        return response
    from app.extensions import db
    from app.services import access_log
    from app.web import actor, now

    subject = g.get("phi_subject") or {}
    patient_id = subject.get("patient_id")
    if (patient_id is None and not subject.get("patient_ids") and current_user.is_authenticated
            and current_user.role == "patient" and current_user.patient is not None):
        patient_id = current_user.patient.id
    access_log.record_view(db.session, actor=g.get("phi_actor") or actor(), kind=kind, endpoint=request.endpoint,
                           patient_id=patient_id, appointment_id=subject.get("appointment_id"),
                           patient_ids=subject.get("patient_ids"), record=subject.get("record"), at=now())
    db.session.commit()
    return response


def init_app(app: Flask) -> None:
    app.after_request(audit_view)
