"""The admin's access review: who looked at a patient, everything one user opened, and the
break-glass accesses to review. Each page and export is itself a PHI view (audited like any other,
app/phi.py)."""
from __future__ import annotations

from flask import abort, make_response, request

from app import phi
from app.access import access
from app.blueprints.admin import bp
from app.extensions import db
from app.models import Patient, User
from app.services import access_log, patients
from app.web import render


def _csv(body: str, filename: str):
    response = make_response(body)
    response.mimetype = "text/csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/access")
@access("admin", phi="patients")
def access_review():
    query = request.args.get("q", "")[:100]
    found = patients.find(db.session, query) if query else []
    flagged = access_log.break_glass_report(db.session, limit=50)
    phi.shown(patient_ids=[p.id for p in found] + [row.patient_id for row in flagged])
    return render("admin/access.html", query=query, found=found, flagged=flagged)


def _patient_or_404(patient_id: int) -> Patient:
    patient = db.session.get(Patient, patient_id)
    if patient is None:
        abort(404)
    phi.shown(patient_id=patient.id)
    return patient


@bp.get("/access/patients/<int:patient_id>")
@access("admin", phi="access_report")
def patient_access(patient_id: int):
    patient = _patient_or_404(patient_id)
    rows = access_log.patient_report(db.session, patient.id)
    return render("admin/patient_access.html", patient=patient, rows=rows)


@bp.get("/access/patients/<int:patient_id>.csv")
@access("admin", phi="access_report")
def patient_access_csv(patient_id: int):
    patient = _patient_or_404(patient_id)
    return _csv(access_log.to_csv(access_log.patient_report(db.session, patient.id)),
                f"patient-{patient.id}-access.csv")


def _user_report(user_id: int):
    """The user (or 404) and their rows; the patients those rows name are what this view shows."""
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    rows = access_log.user_report(db.session, user.id)
    ids = {row.patient_id for row in rows if row.patient_id is not None}
    for row in rows:
        ids.update(row.patient_ids)
    phi.shown(patient_ids=ids, record={"user_id": user.id})
    return user, rows


@bp.get("/access/users/<int:user_id>")
@access("admin", phi="access_report")
def user_access(user_id: int):
    user, rows = _user_report(user_id)
    return render("admin/user_access.html", user=user, rows=rows)


@bp.get("/access/users/<int:user_id>.csv")
@access("admin", phi="access_report")
def user_access_csv(user_id: int):
    user, rows = _user_report(user_id)
    return _csv(access_log.to_csv(rows), f"user-{user.id}-access.csv")
