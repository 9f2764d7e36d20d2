"""Patient intake pages (phone first): About you, Reason (+ the type's questionnaire), Insurance,
Consents, Review and submit; each step a plain form that saves its section (save and come back).

- ``GET /intake/start?type_id=&provider_id=``: resume the draft for that visit type, or start one
  prefilled from the last submitted intake (the hybrid booking page sends patients here first).
- ``GET /appointments/<id>/intake``: the intake of a booked visit (the link on the confirmation).
- ``GET|POST /intake/<id>/<step>``: each step; a save carries the version the page was opened with
  (two tabs: 409 with what was typed still in the form).
- ``POST /intake/<id>/submit``: submit; a hybrid intake gets its estimate (``estimates.build``) in the
  same transaction and the patient goes to ``/intake/<id>/estimate`` (app/blueprints/intake/estimate.py).
- ``GET /coverages/<id>/card-<side>``: a card photo, for its patient and staff; each view audited,
  never cached.
- ``GET /staff/appointments/<id>/intake``: the staff view, with what changed since the last intake.
"""
from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from app import input_guard, phi
from app.access import access
from app.extensions import db
from app.models import Appointment, AppointmentType, Provider
from app.models.insurance import Coverage, Intake
from app.models.state import Ignored
from app.services import audit
from app.services import intake as intakes
from app.web import actor, now, redirect_htmx, render

log = logging.getLogger(__name__)
bp = Blueprint("intake", __name__)

EDIT_STEPS = ("about", "reason", "insurance", "consents")
UNREACHABLE = _l("We could not prepare your estimate just now. Nothing you entered was lost: please try "
                 "again in a moment.")


def _bad_request(message: str, status: int = 400):
    return input_guard.bad_request(message, status=status, title=_("Please check your choice"))


def _int_arg(name: str) -> int | None:
    raw = (request.values.get(name) or "").strip()
    if not raw:
        return None
    try:
        return input_guard.parse_int(raw, what=name.replace("_", " "))
    except input_guard.BadValue as error:
        input_guard.refuse(str(error))


def _patient():
    return current_user.patient


def _denied(intake_id: int):
    audit.record(db.session, actor=actor(), action="access.denied", outcome="failure",
                 details={"intake_id": intake_id, "path": request.path})
    db.session.commit()
    abort(404)


def _own(intake_id: int) -> Intake:
    """The signed-in patient's own intake, else 404 (audited)."""
    found = db.session.get(Intake, intake_id)
    if found is None or found.patient_id != _patient().id:
        _denied(intake_id)
    return found


def _shown(found: Intake) -> None:
    phi.shown(patient_id=found.patient_id, appointment_id=found.appointment_id, record={"intake_id": found.id})


# -- starting ------------------------------------------------------------------------------------

@bp.get("/intake/start")
@access("patient", phi=False)
def start():
    type_id = _int_arg("type_id")
    provider_id = _int_arg("provider_id")
    if type_id is None:
        return _bad_request(_("Choose a visit type first."))
    appointment_type = db.session.get(AppointmentType, type_id)
    if appointment_type is None or not appointment_type.is_active:
        return _bad_request(_("Choose a visit type from the list."))
    if provider_id is not None:
        provider = db.session.get(Provider, provider_id)
        if provider is None or not provider.is_active or not provider.offers(appointment_type):
            provider_id = None
    found = intakes.start(db.session, patient=_patient(), appointment_type=appointment_type, now=now(),
                          actor=actor())
    if provider_id is not None:
        intakes.remember_provider(found, provider_id)
    db.session.commit()
    return redirect(url_for("intake.step", intake_id=found.id, step=found.step or "about"), code=303)


@bp.get("/appointments/<int:appointment_id>/intake")
@access("patient", phi=False)
def for_appointment(appointment_id: int):
    appointment = db.session.get(Appointment, appointment_id)
    if appointment is None or appointment.patient_id != _patient().id:
        from app.web import not_found_audited

        not_found_audited(appointment_id)
    existing = intakes.for_appointment(db.session, appointment.id)
    if existing is not None and existing.status == "submitted":
        return redirect(url_for("intake.step", intake_id=existing.id, step="review"), code=303)
    if appointment.status not in ("held", "confirmed", "checked_in"):
        return _bad_request(_("This visit is not coming up, so it needs no intake."), status=409)
    found = intakes.start(db.session, patient=_patient(), appointment_type=appointment.type,
                          appointment=appointment, now=now(), actor=actor())
    db.session.commit()
    return redirect(url_for("intake.step", intake_id=found.id, step=found.step or "about"), code=303)


@bp.get("/intake/<int:intake_id>")
@access("patient", phi=False)
def resume(intake_id: int):
    found = _own(intake_id)
    step = "review" if found.status == "submitted" else (found.step or "about")
    return redirect(url_for("intake.step", intake_id=found.id, step=step), code=303)


# -- the steps ------------------------------------------------------------------------------------

def _form_values(found: Intake, step: str) -> dict:
    """What the step's form shows when opened: the saved answers (prefilled at start)."""
    values = intakes.data(found)
    if step == "about":
        return dict(values["demographics"])
    if step == "reason":
        return {"reason": values["reason"], **{f"q_{k}": v for k, v in values["answers"].items()}}
    if step == "insurance":
        coverages = intakes.coverages_of(db.session, found) or intakes.active_coverages(db.session, found.patient_id)
        out = {}
        if values["self_pay"] is True:
            out["coverage_choice"] = "self_pay"
        elif coverages:
            out["coverage_choice"] = "insurance"
        for rank, coverage in coverages.items():
            for name in intakes.COVERAGE_FIELDS:
                out[f"{rank}_{name}"] = getattr(coverage, name) or ""
        if "secondary" in coverages:
            out["has_secondary"] = "1"
        return out
    return {}


def _page(found: Intake, step: str, *, values: dict | None = None, errors: dict | None = None, status: int = 200,
          notice: str | None = None, version: int | None = None):
    appointment_type = db.session.get(AppointmentType, found.appointment_type_id)
    context = dict(intake=found, step=step, steps=intakes.STEPS, titles=intakes.STEP_TITLES,
                   appointment_type=appointment_type, required=intakes.required_sections(appointment_type),
                   values=values if values is not None else _form_values(found, step),
                   # plain str (lazy messages would skip autoescaping): in the page's language
                   errors={key: str(message) for key, message in (errors or {}).items()},
                   notice=str(notice) if notice is not None else None, version=version if version is not None else found.version,
                   saved=intakes.data(found)["saved"], labels=intakes.LABELS)
    if step == "reason":
        context["questions"] = intakes.questions(appointment_type)
    if step in ("insurance", "consents", "review"):
        context["coverages"] = (intakes.coverages_of(db.session, found)
                                or (intakes.active_coverages(db.session, found.patient_id)
                                    if step == "insurance" else {}))
        context["checks"] = _checks(context["coverages"])
    if step == "insurance":
        context["payer_options"] = [(p.id, p.name) for p in intakes.payers(db.session)]
        context["relationships"] = intakes.RELATIONSHIP_LABELS
    if step in ("consents", "review"):
        context["consent_kinds"] = intakes.consent_kinds(appointment_type)
        context["consents"] = intakes.CONSENTS
        context["signed"] = intakes.consents_of(db.session, found.id)
        context["legal_name"] = intakes.data(found)["demographics"].get("legal_name")
    if step == "about":
        context["sexes"] = intakes.SEX_LABELS
    if step == "review":
        context["summary"] = intakes.snapshot(db.session, found)
        context["missing"] = ({key: str(message) for key, message in intakes.missing(db.session, found, appointment_type).items()}
                              if found.status == "draft" else {})
        context["self_pay"] = intakes.self_pay(found)
        context["estimate_url"] = (url_for("intake.estimate", intake_id=found.id,
                                           provider_id=intakes.provider_id(found))
                                   if appointment_type.payment_timing == "hybrid" and found.status == "submitted"
                                   else None)
        context["appointment"] = db.session.get(Appointment, found.appointment_id) if found.appointment_id else None
    return render(f"intake/{step}.html", status=status, **context)


def _checks(coverages: dict) -> dict:
    """{rank: (status, plain words)} of each coverage's newest eligibility check."""
    from app.services import eligibility

    out = {}
    for rank, coverage in coverages.items():
        row = eligibility.latest(db.session, coverage.id)
        out[rank] = (row.status if row else None, eligibility.plain_words(row))
    return out


@bp.get("/intake/<int:intake_id>/<any(about, reason, insurance, consents, review):step>")
@access("patient", phi="intake")
def step(intake_id: int, step: str):
    found = _own(intake_id)
    _shown(found)
    if found.status == "submitted" and step != "review":
        return redirect(url_for("intake.step", intake_id=found.id, step="review"), code=303)
    return _page(found, step)


def _version() -> int | None:
    raw = (request.form.get("version") or "").strip()
    if not raw:
        return None
    try:
        return input_guard.parse_int(raw, what="The intake's version", minimum=1)
    except input_guard.BadValue:
        return None


def _photos() -> dict[str, intakes.Photo]:
    out = {}
    for rank in intakes.RANKS_FORM:
        for side in ("front", "back"):
            name = f"{rank}_card_{side}"
            upload = request.files.get(name)
            if upload is None or not upload.filename:
                continue
            content = upload.stream.read(intakes.PHOTO_MAX_BYTES + 1)
            if content:
                out[name] = intakes.Photo(content, (upload.mimetype or "").lower())
    return out


def _typed() -> dict:
    return {key: value for key, value in request.form.items() if key not in ("csrf_token", "version")}


@bp.post("/intake/<int:intake_id>/<any(about, reason, insurance, consents):step>")
@access("patient", phi="intake")
def save(intake_id: int, step: str):
    found = _own(intake_id)
    _shown(found)
    expected = _version()
    if expected is None:
        return _page(found, step, values=_typed(), status=400,
                     notice=_("This page is out of date. Please check your entries and save again."))
    try:
        photos = _photos() if step == "insurance" else {}
        intakes.save_section(db.session, found, step, request.form, expected_version=expected, now=now(),
                             actor=actor(), photos=photos, user_id=current_user.id)
    except RequestEntityTooLarge:
        db.session.rollback()
        raise
    except intakes.IntakeInvalid as invalid:
        db.session.rollback()
        errors = dict(invalid.errors)
        if step == "insurance" and request.files:
            errors.setdefault("photos", _("Please choose the card photos again."))
        return _page(found, step, values=_typed(), errors=errors, status=422,
                     notice=_("Please check the highlighted fields."))
    except intakes.IntakeConflict as conflict:
        db.session.rollback()
        if found.status == "submitted":
            return redirect_htmx(url_for("intake.step", intake_id=found.id, step="review"))
        return _page(found, step, values=_typed(), status=409, version=conflict.current_version,
                     notice=_("This intake was changed in another tab or window since you opened this page. "
                              "What you typed is still below: check it and save again to keep it."))
    db.session.commit()
    if step == "insurance" and not intakes.self_pay(found):
        _check_eligibility(found)
    return redirect(url_for("intake.step", intake_id=found.id, step=found.step or "review"), code=303)


def _check_eligibility(found: Intake) -> None:
    """The entry eligibility check, after the save committed: it never blocks or undoes the save."""
    try:
        intakes.check_eligibility(db.session, found, now=now(), actor=actor())
        db.session.commit()
    except Exception:             # noqa: BLE001 (the save stands; the day-before recheck runs anyway)
        db.session.rollback()
        log.exception("entry eligibility check failed for intake %s", found.id)


@bp.post("/intake/<int:intake_id>/submit")
@access("patient", phi="intake")
def submit(intake_id: int):
    found = _own(intake_id)
    _shown(found)
    appointment_type = db.session.get(AppointmentType, found.appointment_type_id)
    try:
        intakes.submit(db.session, found, now=now(), actor=actor(), expected_version=_version())
        if appointment_type.payment_timing == "hybrid":
            from app.services import estimates

            service_date = now().date()
            if found.appointment_id:
                service_date = db.session.get(Appointment, found.appointment_id).starts_at.date()
            estimates.build(db.session, patient=found_patient(found), appointment_type=appointment_type,
                            intake=found, service_date=service_date, now=now(), actor=actor())
    except Ignored:
        db.session.rollback()
    except intakes.IntakeInvalid as invalid:
        db.session.rollback()
        return _page(found, "review", status=422, errors=invalid.errors,
                     notice=_("A few things are still missing before you can submit."))
    except intakes.IntakeConflict as conflict:
        db.session.rollback()
        return _page(found, "review", status=409, version=conflict.current_version,
                     notice=_("This intake was changed in another tab or window. Please check it and submit again."))
    except Exception:             # noqa: BLE001 (the estimate could not be made: the intake stays a draft)
        db.session.rollback()
        log.exception("submitting intake %s failed", found.id)
        return _page(found, "review", status=503, notice=UNREACHABLE)
    else:
        db.session.commit()
    db.session.refresh(found)
    if appointment_type.payment_timing == "hybrid":
        return redirect(url_for("intake.estimate", intake_id=found.id, provider_id=intakes.provider_id(found)),
                        code=303)
    flash(_("Thank you: your intake is submitted."), "success")
    if found.appointment_id:
        return redirect(url_for("booking.appointment", appointment_id=found.appointment_id), code=303)
    return redirect(url_for("intake.step", intake_id=found.id, step="review"), code=303)


def found_patient(found: Intake):
    from app.models import Patient

    return db.session.get(Patient, found.patient_id)


# -- card photos ------------------------------------------------------------------------------

def _may_see_patient(patient_id: int) -> bool:
    role = current_user.role
    if role == "patient":
        return current_user.patient is not None and current_user.patient.id == patient_id
    if role in ("billing", "admin"):
        return True
    if role == "provider":
        from app.blueprints.staff.common import own_provider
        from app.services import patients

        provider = own_provider()
        return provider is not None and patients.on_schedule(db.session, provider_id=provider.id,
                                                             patient_id=patient_id)
    return False


@bp.get("/coverages/<int:coverage_id>/card-<any(front, back):side>")
@access("patient", "provider", "billing", "admin", phi="card_photo")
def card_photo(coverage_id: int, side: str):
    coverage = db.session.get(Coverage, coverage_id)
    if coverage is None or not _may_see_patient(coverage.patient_id):
        audit.record(db.session, actor=actor(), action="access.denied", outcome="failure",
                     details={"coverage_id": coverage_id, "path": request.path})
        db.session.commit()
        abort(404)
    photo = intakes.card_photo(coverage, side)
    if photo is None:
        abort(404)
    phi.shown(patient_id=coverage.patient_id, record={"coverage_id": coverage.id, "card_side": side})
    response = current_app.response_class(photo.content, mimetype=photo.content_type)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Disposition"] = f'inline; filename="card-{side}"'
    return response


# -- staff ----------------------------------------------------------------------------------------

@bp.get("/staff/appointments/<int:appointment_id>/intake")
@access("provider", "billing", "admin", phi="intake")
def staff_view(appointment_id: int):
    from app.blueprints.staff.common import appointment_or_404

    appt = appointment_or_404(appointment_id)
    found = intakes.for_appointment(db.session, appt.id)
    context = dict(appt=appt, intake=found, summary=None, changes=[], previous=None, coverages={}, checks={},
                   signed={}, consents=intakes.CONSENTS)
    if found is not None:
        phi.shown(appointment=appt, record={"intake_id": found.id})
        context["summary"] = intakes.snapshot(db.session, found)
        previous = db.session.get(Intake, found.previous_intake_id) if found.previous_intake_id else None
        if previous is None and found.status == "draft":
            previous = intakes.last_submitted(db.session, found.patient_id, before_id=found.id)
        context["previous"] = previous
        if previous is not None:
            context["changes"] = intakes.diff(intakes.snapshot(db.session, previous), context["summary"])
        context["coverages"] = intakes.coverages_of(db.session, found)
        context["checks"] = _checks(context["coverages"])
        context["signed"] = intakes.consents_of(db.session, found.id)
        context["questions"] = intakes.questions(appt.type)
    return render("intake/staff.html", **context)


@bp.app_template_global("intake_link_for")
def intake_link_for(appointment: Appointment) -> dict | None:
    """For the patient's confirmation and appointment pages: the intake link and whether it is done."""
    if appointment.status not in ("confirmed", "checked_in"):
        return None
    found = intakes.for_appointment(db.session, appointment.id)
    return {"url": url_for("intake.for_appointment", appointment_id=appointment.id),
            "done": found is not None and found.status == "submitted"}


from app.blueprints.intake import estimate  # noqa: E402,F401  (H2's estimate page, on bp)
