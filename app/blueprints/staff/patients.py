"""A patient's summary for staff, and break-glass.

A provider opens the patients on their schedule directly. Anyone else's record asks for a reason
first: the access is allowed, audited as ``phi.break_glass`` (flagged on the admin's access review,
app/blueprints/admin/access.py) and lasts BREAK_GLASS_MINUTES for that patient in this browser
session. Admins open any patient. Billing staff see patients through payments, not here."""
from __future__ import annotations

import time

from flask import abort, current_app, request, session, url_for
from flask_login import current_user

from app import phi
from app.access import access
from app.blueprints.staff import bp
from app.blueprints.staff.common import own_provider
from app.blueprints.staff.forms import BreakGlassForm
from app.extensions import db
from app.services import access_log, patients
from app.web import actor, now, redirect_htmx, render

GRANTS = "break_glass"            # {patient id: granted at (epoch seconds)} in the cookie session


def _window() -> float:
    return current_app.config["SETTINGS"].BREAK_GLASS_MINUTES * 60


def _granted(patient_id: int) -> bool:
    granted_at = (session.get(GRANTS) or {}).get(str(patient_id))
    return granted_at is not None and time.time() - granted_at < _window()


def _grant(patient_id: int) -> None:
    live = {k: v for k, v in (session.get(GRANTS) or {}).items() if time.time() - v < _window()}
    live[str(patient_id)] = time.time()
    session[GRANTS] = dict(sorted(live.items(), key=lambda kv: kv[1])[-20:])


def _needs_reason(patient_id: int) -> bool:
    if current_user.role != "provider":
        return False
    provider = own_provider()
    if provider is not None and patients.on_schedule(db.session, provider_id=provider.id, patient_id=patient_id):
        return False
    return not _granted(patient_id)


def _ask(patient_id: int, form: BreakGlassForm, status: int = 200):
    phi.withheld()           # the form names no one: nothing shown, nothing to audit as a view
    return render("staff/break_glass.html", status=status, patient_id=patient_id, form=form)


@bp.get("/patients/<int:patient_id>")
@access("provider", "admin", phi="patient")
def patient(patient_id: int):
    found = patients.summary(db.session, patient_id)
    if found is None:
        abort(404)
    if _needs_reason(patient_id):
        return _ask(patient_id, BreakGlassForm())
    phi.shown(patient_id=patient_id, record={"break_glass": True} if _granted(patient_id) else None)
    return render("staff/patient.html", summary=found, patient=found.patient, now=now())


@bp.post("/patients/<int:patient_id>/break-glass")
@access("provider", "admin", phi="patient")
def break_glass(patient_id: int):
    if patients.summary(db.session, patient_id) is None:
        abort(404)
    form = BreakGlassForm()
    if not form.validate_on_submit():
        return _ask(patient_id, form, status=422)
    access_log.record_break_glass(db.session, actor=actor(), patient_id=patient_id, reason=form.reason.data.strip(),
                                  endpoint=request.endpoint, at=now())
    db.session.commit()
    _grant(patient_id)
    return redirect_htmx(url_for("staff.patient", patient_id=patient_id))
