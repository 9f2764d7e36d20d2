"""The provider's notes (the basic EMR): the unsigned-notes worklist, the encounter editor (SOAP
draft autosaved with a version number, diagnoses, billing lines, a live total), the review and the
signing (step-up), the signed note and its addenda.

A provider sees and edits their own encounters only (another provider's answers 404); an admin may
read a note (read-only). Every route shows PHI (``phi="encounter"``): pages are never cached
(``Cache-Control: no-store``, app/__init__.py) and each view is audited (app/phi.py).

The autosave: the SOAP form posts on ``input`` (debounced 800 ms) and on ``change`` with the
draft's version in a hidden field; the answer swaps only ``#draft-status`` (the new version and
"Saved 10:42 AM"), never the textareas, so typing is never interrupted. When another tab saved
first the answer is 409 with a banner and the version left as it was: the typed text stays in the
page and every later save keeps answering 409 until the provider reloads. The diagnosis and line
forms send the same version (``hx-include="#draft-version"``) and share one request queue with the
autosave (``hx-sync="#editor:queue all"``), so a tab never conflicts with itself.
"""
from __future__ import annotations

import threading

from flask import abort, redirect, request, url_for
from flask_login import current_user
from jinja2_fragments.flask import render_block

from app import input_guard, phi
from app.access import access
from app.blueprints.staff import bp
from app.blueprints.staff.common import own_provider
from app.blueprints.stepup import require_recent_mfa
from app.extensions import db
from app.models import Appointment, BillingCode, Encounter
from app.models.emr import SOAP_FIELDS
from app.models.state import Ignored, InvalidTransition
from app.services import booking, codes, emr
from app.web import actor, is_htmx, now, redirect_htmx, render

EDITOR = "staff/encounter.html"
SEARCH_LIMIT = 15


# -- finding what the user may see -------------------------------------------------------------------

def _own_provider_or_404():
    provider = own_provider()
    if provider is None:
        abort(404)
    return provider


def _encounter_or_404(encounter_id: int) -> Encounter:
    encounter = emr.get(db.session, encounter_id)
    if encounter is None:
        abort(404)
    if current_user.role == "provider":
        provider = own_provider()
        if provider is None or encounter.provider_id != provider.id:
            abort(404)
    elif current_user.role != "admin":
        abort(404)
    phi.shown(appointment=encounter.appointment, record={"encounter_id": encounter.id})
    return encounter


def _appointment_or_404(appointment_id: int) -> Appointment:
    appointment = db.session.get(Appointment, appointment_id)
    provider = _own_provider_or_404()
    if appointment is None or appointment.provider_id != provider.id:
        abort(404)
    phi.shown(appointment=appointment)
    return appointment


def _version(name: str = "version") -> int | None:
    raw = request.form.get(name)
    if raw is None or raw == "":
        return None
    try:
        return input_guard.parse_int(raw, what="The note's version", minimum=1)
    except input_guard.BadValue as error:
        input_guard.refuse(str(error))


@bp.app_template_global("encounter_of")
def encounter_of(appointment):
    """The appointment's encounter (or None), for the day view's cards."""
    return emr.find_for_appointment(db.session, appointment.id)


@bp.app_template_global("notes_to_sign")
def notes_to_sign() -> int:
    """How many of the signed-in provider's notes are unsigned (the home page's link)."""
    provider = own_provider() if current_user.is_authenticated and current_user.role == "provider" else None
    return emr.unsigned_count(db.session, provider_id=provider.id) if provider else 0


@bp.app_template_filter("age_label")
def age_label(age) -> str:
    return emr.age_label(age)


# -- the worklist ----------------------------------------------------------------------------------

@bp.get("/encounters")
@access("provider", phi="encounter")
def encounters():
    provider = own_provider()
    items = emr.worklist(db.session, provider_id=provider.id, now=now()) if provider else []
    phi.shown(patient_ids=[item.appointment.patient_id for item in items],
              record={"provider_id": provider.id if provider else None})
    return render("staff/encounter_worklist.html", provider=provider, items=items)


# -- opening -----------------------------------------------------------------------------------------

@bp.route("/appointments/<int:appointment_id>/encounter", methods=["GET", "POST"])
@access("provider", phi="encounter")
def encounter_for_appointment(appointment_id: int):
    """GET: the visit's note (or the button that starts it); POST: start it (checks a confirmed
    visit in) and go to the editor."""
    appointment = _appointment_or_404(appointment_id)
    existing = emr.find_for_appointment(db.session, appointment.id)
    if existing is not None:
        return redirect_htmx(url_for("staff.encounter", encounter_id=existing.id))
    if request.method == "GET":
        return render("staff/encounter_start.html", appt=appointment, provider=appointment.provider,
                      openable=appointment.status in emr.OPENABLE)
    try:
        encounter = emr.open_encounter(db.session, appointment, actor=actor(), user=current_user, now=now(),
                                       source="day_view")
    except (emr.EncounterError, booking.BookingRuleError, InvalidTransition, Ignored) as error:
        db.session.rollback()
        message = str(error) if isinstance(error, emr.EncounterError) else \
            "A note can be started only for a confirmed, checked-in or completed visit."
        return render("staff/encounter_start.html", status=409, appt=appointment, provider=appointment.provider,
                      openable=False, notice=message)
    db.session.commit()
    return redirect_htmx(url_for("staff.encounter", encounter_id=encounter.id))


# -- the editor ------------------------------------------------------------------------------------

def _diagnosis_results(query: str):
    return codes.search_diagnoses(query, limit=SEARCH_LIMIT) if query else []


def _code_results(query: str) -> list[BillingCode]:
    if not query:
        return []
    return [c for c in codes.list_codes(db.session, query=query, limit=SEARCH_LIMIT * 3) if c.active][:SEARCH_LIMIT]


def _descriptions(encounter: Encounter) -> dict[str, str]:
    out = {}
    for d in encounter.diagnoses:
        found = codes.diagnosis(d.code)
        out[d.code] = found.description if found else ""
    return out


def _context(encounter: Encounter, **extra) -> dict:
    preview = emr.preview_total(db.session, encounter)
    can_edit = current_user.role == "provider" and not encounter.is_signed
    context = dict(enc=encounter, appt=encounter.appointment, provider=encounter.appointment.provider,
                   can_edit=can_edit, soap=emr.soap_of(encounter), labels=emr.SOAP_LABELS, fields=SOAP_FIELDS,
                   version=encounter.version, saved_at=None, conflict=None, preview=preview,
                   problems=emr.sign_problems(db.session, encounter, preview) if not encounter.is_signed else [],
                   descriptions=_descriptions(encounter), dx_query="", dx_results=[], code_query="",
                   code_results=[], coding_error=None, text_max=emr.TEXT_MAX, oob=False,
                   signer=None, addendum_error=None)
    if encounter.is_signed:
        from app.models import User

        context["signer"] = db.session.get(User, encounter.signed_by_id)
        context["addendum_authors"] = {a.id: db.session.get(User, a.signed_by_id) for a in encounter.addenda}
    context.update(extra)
    return context


_warming = threading.Lock()
_warmed = False


def _warm_diagnosis_index() -> None:
    """The ICD-10-CM index takes a few seconds to build, once per process (app/services/codes.py):
    opening an editor starts it in the background, so the provider's first search is quick."""
    global _warmed
    with _warming:
        if _warmed:
            return
        _warmed = True
    threading.Thread(target=codes.search_diagnoses, args=("A00",), name="icd10-index", daemon=True).start()


@bp.get("/encounters/<int:encounter_id>")
@access("provider", "admin", phi="encounter")
def encounter(encounter_id: int):
    enc = _encounter_or_404(encounter_id)
    if not enc.is_signed and current_user.role == "provider":
        _warm_diagnosis_index()
    if enc.is_signed:
        return render("staff/encounter_signed.html", **_context(enc))
    dx_query = request.args.get("dx", "")[:codes.QUERY_MAX]
    code_query = request.args.get("cq", "")[:100]
    return render(EDITOR, **_context(enc, dx_query=dx_query, dx_results=_diagnosis_results(dx_query),
                                     code_query=code_query, code_results=_code_results(code_query)))


def _editor_url(enc: Encounter) -> str:
    return url_for("staff.encounter", encounter_id=enc.id)


@bp.post("/encounters/<int:encounter_id>/draft")
@access("provider", phi="encounter")
def save_draft(encounter_id: int):
    enc = _encounter_or_404(encounter_id)
    # "Keep my text as the note" (after a conflict): the saved version the banner showed is replaced.
    expected = _version("conflict_version") if request.form.get("overwrite") == "1" else _version()
    if expected is None:
        input_guard.refuse("The note's version is missing: reload the page.")
    fields = {name: request.form[name] for name in SOAP_FIELDS if name in request.form}
    try:
        enc = emr.save_draft(db.session, enc.id, expected_version=expected, fields=fields, actor=actor(), now=now())
    except emr.DraftConflict as conflict:
        db.session.rollback()
        # The version stays the one this tab had: every later save conflicts too, nothing is overwritten.
        context = _context(emr.get(db.session, encounter_id), version=expected, conflict=conflict,
                           soap={**emr.soap_of(enc), **fields})
        return render(EDITOR, block="draft_status", status=409, **context)
    except emr.EncounterSigned as signed:
        db.session.rollback()
        context = _context(emr.get(db.session, encounter_id), version=expected, signed_notice=str(signed),
                           soap={**emr.soap_of(enc), **fields})
        return render(EDITOR, block="draft_status", status=409, **context)
    except emr.EncounterError as error:
        db.session.rollback()
        context = _context(emr.get(db.session, encounter_id), version=expected, draft_error=str(error),
                           soap={**emr.soap_of(enc), **fields})
        return render(EDITOR, block="draft_status", status=422, **context)
    db.session.commit()
    if not is_htmx():
        return redirect(_editor_url(enc), code=303)
    return render(EDITOR, block="draft_status", **_context(enc, saved_at=now()))


# -- diagnoses and lines -----------------------------------------------------------------------------

def _coding_answer(enc: Encounter, *, status: int = 200, **extra):
    """The coding section, and (out of band) the draft status carrying the new version."""
    if not is_htmx():
        if status >= 400:
            return render(EDITOR, status=status, **_context(enc, **extra))
        return redirect(_editor_url(enc) + "#coding", code=303)
    context = _context(enc, **extra)
    body = render_block(EDITOR, "coding", **context) + render_block(EDITOR, "draft_status", **{**context, "oob": True})
    from flask import make_response

    response = make_response(body, status)
    response.headers.add("Vary", "HX-Request")
    return response


def _coding_change(encounter_id: int, change):
    enc = _encounter_or_404(encounter_id)
    expected = _version()
    try:
        change(enc, expected)
    except emr.DraftConflict as conflict:
        db.session.rollback()
        return _coding_answer(emr.get(db.session, encounter_id), status=409, conflict=conflict,
                              version=expected if expected is not None else enc.version)
    except emr.EncounterError as error:
        db.session.rollback()
        fresh = emr.get(db.session, encounter_id)
        return _coding_answer(fresh, status=409 if fresh.is_signed else 422, coding_error=str(error))
    db.session.commit()
    return _coding_answer(emr.get(db.session, encounter_id))


@bp.get("/encounters/<int:encounter_id>/diagnoses/search")
@access("provider", phi="encounter")
def search_diagnoses(encounter_id: int):
    enc = _encounter_or_404(encounter_id)
    query = request.args.get("dx", "")[:codes.QUERY_MAX]
    if enc.is_signed:
        return redirect(_editor_url(enc), code=303)
    return render(EDITOR, block="dx_results", **_context(enc, dx_query=query, dx_results=_diagnosis_results(query)))


@bp.post("/encounters/<int:encounter_id>/diagnoses")
@access("provider", phi="encounter")
def add_diagnosis(encounter_id: int):
    code = request.form.get("code", "")
    return _coding_change(encounter_id, lambda enc, expected: emr.add_diagnosis(
        db.session, enc.id, code, actor=actor(), now=now(), expected_version=expected))


@bp.post("/encounters/<int:encounter_id>/diagnoses/<int:diagnosis_id>/delete")
@access("provider", phi="encounter")
def remove_diagnosis(encounter_id: int, diagnosis_id: int):
    return _coding_change(encounter_id, lambda enc, expected: emr.remove_diagnosis(
        db.session, enc.id, diagnosis_id, actor=actor(), now=now(), expected_version=expected))


@bp.get("/encounters/<int:encounter_id>/codes/search")
@access("provider", phi="encounter")
def search_codes(encounter_id: int):
    enc = _encounter_or_404(encounter_id)
    query = request.args.get("cq", "")[:100]
    if enc.is_signed:
        return redirect(_editor_url(enc), code=303)
    return render(EDITOR, block="code_results", **_context(enc, code_query=query, code_results=_code_results(query)))


@bp.post("/encounters/<int:encounter_id>/lines")
@access("provider", phi="encounter")
def add_line(encounter_id: int):
    form = request.form
    try:
        code_id = input_guard.parse_int(form.get("code_id", ""), what="The code") if form.get("code_id") else None
    except input_guard.BadValue:
        code_id = None
    units = form.get("units", "1").strip()[:4] or "1"
    pointers = form.getlist("pointers")[:12]
    return _coding_change(encounter_id, lambda enc, expected: emr.add_line(
        db.session, enc.id, code_id=code_id, modifier=form.get("modifier", "")[:4], units=units,
        pointers=pointers, actor=actor(), now=now(), expected_version=expected))


@bp.post("/encounters/<int:encounter_id>/lines/<int:line_id>/delete")
@access("provider", phi="encounter")
def remove_line(encounter_id: int, line_id: int):
    return _coding_change(encounter_id, lambda enc, expected: emr.remove_line(
        db.session, enc.id, line_id, actor=actor(), now=now(), expected_version=expected))


# -- review, signing, addenda ---------------------------------------------------------------------------

@bp.get("/encounters/<int:encounter_id>/review")
@access("provider", phi="encounter")
def review(encounter_id: int):
    enc = _encounter_or_404(encounter_id)
    if enc.is_signed:
        return redirect(_editor_url(enc), code=303)
    return render("staff/encounter_review.html", **_context(enc))


@bp.post("/encounters/<int:encounter_id>/sign")
@access("provider", phi="encounter")
@require_recent_mfa                 # step-up: a code from the last STEP_UP_MAX_AGE (app/blueprints/stepup.py)
def sign(encounter_id: int):
    enc = _encounter_or_404(encounter_id)
    expected = _version()
    if expected is None:
        input_guard.refuse("The note's version is missing: reload the page.")
    try:
        emr.sign(db.session, enc.id, expected_version=expected, user=current_user, actor=actor(), now=now())
    except emr.DraftConflict:
        db.session.rollback()
        fresh = emr.get(db.session, encounter_id)
        return render("staff/encounter_review.html", status=409, **_context(
            fresh, notice="The note changed after this review was opened (another tab or window): "
                          "check the lines and total below, then sign again."))
    except (emr.EncounterError, booking.BookingRuleError, InvalidTransition) as error:
        db.session.rollback()
        fresh = emr.get(db.session, encounter_id)
        return render("staff/encounter_review.html", status=409 if fresh.is_signed else 422,
                      **_context(fresh, notice=str(error)))
    db.session.commit()
    return redirect_htmx(_editor_url(enc))


@bp.post("/encounters/<int:encounter_id>/addenda")
@access("provider", phi="encounter")
def add_addendum(encounter_id: int):
    enc = _encounter_or_404(encounter_id)
    try:
        emr.add_addendum(db.session, enc.id, text=request.form.get("text", ""), user=current_user, actor=actor(),
                         now=now())
    except emr.EncounterError as error:
        db.session.rollback()
        fresh = emr.get(db.session, encounter_id)
        if not fresh.is_signed:
            return redirect(_editor_url(fresh), code=303)
        return render("staff/encounter_signed.html", status=422,
                      **_context(fresh, addendum_error=str(error), addendum_text=request.form.get("text", "")))
    db.session.commit()
    return redirect_htmx(_editor_url(enc) + "#addenda")
