"""Patient booking: search, a provider's slots, holds, and the patient's appointments."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from flask import Blueprint, abort, current_app, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from app import phi
from app import input_guard
from app.access import access
from app.extensions import db
from app.models import Appointment, AppointmentType, Provider
from app.services import booking, calendar, schedule
from app.services.booking import HoldPolicy
from app.services.intake import IntakeConflict, IntakeInvalid
from app.services.retry import retry_transient
from app.web import actor, is_htmx, not_found_audited, now, redirect_htmx, render

bp = Blueprint("booking", __name__)


class BadInput(Exception):
    pass


def _int_arg(name: str, required: bool = False) -> int | None:
    raw = request.values.get(name, "").strip()
    if not raw:
        if required:
            raise BadInput(f"Missing {name.replace('_', ' ')}.")
        return None
    try:
        return input_guard.parse_int(raw, what=name.replace("_", " "))
    except input_guard.BadValue as error:
        raise BadInput(str(error)) from None


def _date_arg(name: str) -> date | None:
    raw = request.values.get(name, "").strip()
    if not raw:
        return None
    try:
        return input_guard.parse_date(raw)
    except input_guard.BadValue as error:
        raise BadInput(str(error)) from None


def _instant_arg(name: str) -> datetime:
    try:
        return input_guard.parse_instant(request.values.get(name, ""))
    except input_guard.BadValue as error:
        raise BadInput(str(error)) from None


def _patient():
    return current_user.patient


def _own_appointment(appointment_id: int) -> Appointment:
    """The patient's own appointment, or 404 (another patient's is not even acknowledged)."""
    appointment = db.session.get(Appointment, appointment_id)
    if appointment is None or appointment.patient_id != _patient().id:
        not_found_audited(appointment_id)
    phi.shown(appointment=appointment)
    return appointment


def _policy() -> HoldPolicy:
    return HoldPolicy.from_settings(current_app.config["SETTINGS"])


def _type_or_default(type_id: int | None, types: list[AppointmentType] | None = None) -> AppointmentType | None:
    if types is None:
        types = schedule.bookable_types(db.session)
    if not types:
        return None
    if type_id is None:
        return types[0]
    for t in types:
        if t.id == type_id:
            return t
    raise BadInput(_("Choose a visit type from the list."))


def _bad_request(message: str):
    return input_guard.bad_request(message, title=_("Please check your choice"))    # shows no record


@bp.get("/book")
@access("patient", phi=False)
def search():
    try:
        type_id = _int_arg("type_id")
        specialty_id = _int_arg("specialty_id")
        on_date = _date_arg("date")
        modality = request.args.get("modality") or None
        if modality not in (None, "telehealth", "in_person"):
            raise BadInput(_("Choose telehealth or in person."))
        types = schedule.bookable_types(db.session)
        appointment_type = _type_or_default(type_id, types)
    except BadInput as error:
        return _bad_request(str(error))
    if appointment_type is None:
        return render("booking/search.html", block="results", results=[], first_available=[], providers={},
                      appointment_type=None, types=[], specialties=[], chosen={})
    # One time per provider is shown, so one is computed (the engine stops at it).
    results = schedule.search(db.session, now=now(), appointment_type=appointment_type,
                              specialty_id=specialty_id, modality=modality, on_date=on_date,
                              viewer_tz=current_user.timezone, per_provider=1)
    first = sorted((s for r in results for s in r.slots[:1]), key=lambda s: s.starts_at)[:5]
    providers = {r.provider.id: r.provider for r in results}
    return render("booking/search.html", block="results", results=results, first_available=first,
                  providers=providers, appointment_type=appointment_type, types=types,
                  specialties=[] if is_htmx() else schedule.specialties(db.session),
                  chosen={"type_id": appointment_type.id, "specialty_id": specialty_id,
                          "modality": modality, "date": on_date.isoformat() if on_date else ""})


def _hybrid_gate(provider: Provider, appointment_type: AppointmentType, intake_id: int | None = None) -> dict | None:
    """A hybrid type's times show only once the patient has a submitted intake with its estimate
    (issue 15): None for other timings; else {ready, intake, estimate, start_url}."""
    if appointment_type.payment_timing != "hybrid":
        return None
    from app.services import intake as intakes

    found = intakes.ready_for_booking(db.session, patient_id=_patient().id, appointment_type=appointment_type,
                                      now=now(), intake_id=intake_id)
    return {"ready": found is not None, "intake": found[0] if found else None,
            "estimate": found[1] if found else None,
            "start_url": url_for("intake.start", type_id=appointment_type.id, provider_id=provider.id)}


def _provider_page(provider: Provider, appointment_type: AppointmentType, *, status: int = 200,
                   notice: str | None = None, nearest=None, start: datetime | None = None,
                   intake_id: int | None = None):
    gate = _hybrid_gate(provider, appointment_type, intake_id)
    if gate is not None and not gate["ready"]:
        return render("booking/provider.html", block="slot_list", status=status, provider=provider,
                      appointment_type=appointment_type, days={}, notice=notice, nearest=[],
                      types=_online_types(provider), gate=gate)
    slots = schedule.provider_slots(db.session, provider=provider, appointment_type=appointment_type,
                                    now=now(), start=start, days=7)
    days: dict = {}
    for slot in slots:
        days.setdefault(slot.starts_at.astimezone(_tz()).date(), []).append(slot)
    return render("booking/provider.html", block="slot_list", status=status, provider=provider,
                  appointment_type=appointment_type, days=days, notice=notice, nearest=nearest or [],
                  types=_online_types(provider), gate=gate)


def _online_types(provider: Provider) -> list[AppointmentType]:
    return [t for t in provider.types if t.is_active and provider.offers(t)
            and t.payment_timing in schedule.ONLINE_TIMINGS]


def _tz():
    from zoneinfo import ZoneInfo

    return ZoneInfo(current_user.timezone)


@bp.get("/book/providers/<int:provider_id>")
@access("patient", phi=False)
def provider(provider_id: int):
    found = db.session.get(Provider, provider_id)
    if found is None or not found.is_active:
        abort(404)
    try:
        appointment_type = _type_or_default(_int_arg("type_id"))
        start_date = _date_arg("from")
    except BadInput as error:
        return _bad_request(str(error))
    if appointment_type is None or not found.offers(appointment_type):
        offered = _online_types(found)
        if not offered:
            abort(404)
        appointment_type = offered[0]
    start = None
    if start_date:
        start = datetime.combine(start_date, datetime.min.time(), _tz()).astimezone(timezone.utc)
    try:
        intake_id = _int_arg("intake_id")
    except BadInput:
        intake_id = None              # a stale or mangled link: the patient's newest intake is used
    return _provider_page(found, appointment_type, start=start, intake_id=intake_id)


@bp.post("/book/providers/<int:provider_id>/holds")
@access("patient", phi=False)
def take_hold(provider_id: int):
    try:
        type_id = _int_arg("type_id", required=True)
        starts_at = _instant_arg("starts_at")
    except BadInput as error:
        if db.session.get(Provider, provider_id) is None:
            abort(404)
        return _bad_request(str(error))
    patient = _patient()
    # The provider (with its types) and the patient's recent holds in one statement; the service
    # uses the same objects, so nothing is read twice.
    target = booking.hold_target(db.session, provider_id=provider_id, type_id=type_id, patient=patient,
                                 now=now())
    if target.provider is None:
        abort(404)
    online = target.appointment_type or db.session.get(AppointmentType, type_id)
    if online is None or online.payment_timing not in schedule.ONLINE_TIMINGS:
        return _bad_request(_("That kind of visit cannot be booked online yet. Please call the clinic."))
    gate = None
    if online.payment_timing == "hybrid":     # intake and its estimate first (issue 15)
        try:
            intake_id = _int_arg("intake_id")
        except BadInput:
            intake_id = None
        gate = _hybrid_gate(target.provider, online, intake_id)
        if not gate["ready"]:
            return _provider_page(target.provider, online, status=409,
                                  notice=_("First, tell us about you and your insurance: then choose a time."))

    def hold_and_commit():     # one transaction: run again whole after a deadlock / serialization failure
        taken = booking.take_hold(db.session, now=now(), patient=patient, target=target, type_id=type_id,
                                  starts_at=starts_at, policy=_policy(), actor=actor())
        if gate is not None:   # the intake and its estimate go with the hold, in the hold's transaction
            from app.services import estimates, intake as intakes

            intakes.attach(db.session, gate["intake"], taken, actor=actor(), now=now())
            estimates.attach(db.session, gate["estimate"], taken, now=now(), actor=actor())
        db.session.commit()
        return taken

    try:
        hold = retry_transient(db.session, hold_and_commit)
    except booking.SlotTaken as taken:
        db.session.rollback()
        appointment_type = db.session.get(AppointmentType, type_id)
        return _provider_page(target.provider, appointment_type, status=409, nearest=taken.nearest,
                              notice=_("Sorry, that time was just taken. These are the nearest free times."))
    except booking.TooManyHolds as error:
        db.session.rollback()
        return render("errors/error.html", status=429, code=429, title=_("Too many attempts"), message=str(error))
    except booking.InvalidSlot as error:
        db.session.rollback()
        return _bad_request(str(error))
    except (IntakeConflict, IntakeInvalid):    # the intake went to another booking meanwhile (another tab)
        db.session.rollback()
        return _provider_page(target.provider, online, status=409,
                              notice=_("Your intake was just used for another booking. Please check it again."))
    return redirect_htmx(url_for("booking.review", appointment_id=hold.id))


@bp.get("/book/holds/<int:appointment_id>")
@access("patient", phi="appointment")
def review(appointment_id: int):
    appointment = _own_appointment(appointment_id)
    return render("booking/review.html", appointment=appointment, now=now(),
                  seconds_left=max(0, int((appointment.hold_expires_at - now()).total_seconds()))
                  if appointment.status == "held" and appointment.hold_expires_at else 0)


@bp.post("/book/holds/<int:appointment_id>/release")
@access("patient", phi="appointment")
def release(appointment_id: int):
    appointment = _own_appointment(appointment_id)
    if appointment.status == "held":
        booking.release(db.session, appointment, actor=actor(), now=now(), reason="released by the patient")
        db.session.commit()
    return redirect_htmx(url_for("booking.provider", provider_id=appointment.provider_id,
                                 type_id=appointment.type_id))


# -- the patient's appointments ------------------------------------------------------------

@bp.get("/appointments")
@access("patient", phi="appointments")
def appointments():
    rows = db.session.scalars(select(Appointment).where(
        Appointment.patient_id == _patient().id,
        Appointment.status.in_(("held", "confirmed", "checked_in", "completed", "canceled", "no_show")))
        .order_by(Appointment.starts_at)).all()
    current = now()
    upcoming = [a for a in rows if a.ends_at >= current and a.status in ("held", "confirmed", "checked_in")]
    past = [a for a in rows if a not in upcoming]
    return render("booking/appointments.html", upcoming=upcoming, past=list(reversed(past)))


@bp.get("/appointments/<int:appointment_id>")
@access("patient", phi="appointment")
def appointment(appointment_id: int):
    found = _own_appointment(appointment_id)
    return render("booking/appointment.html", appointment=found, error=None,
                  late=booking.within_cancellation_window(found, now()))


@bp.post("/appointments/<int:appointment_id>/cancel")
@access("patient", phi="appointment")
def cancel(appointment_id: int):
    found = _own_appointment(appointment_id)
    reason = request.form.get("reason", "")
    try:
        booking.cancel(db.session, found, actor=actor(), now=now(), reason=reason, by_user_id=current_user.id)
    except booking.Ignored:           # already canceled (a double submit): nothing to do
        db.session.rollback()
        return redirect_htmx(url_for("booking.appointments"))
    except (booking.BookingRuleError, booking.InvalidTransition) as error:
        db.session.rollback()
        message = str(error) if isinstance(error, booking.BookingRuleError) else _("This visit can no longer be canceled.")
        return render("booking/appointment.html", block="cancel_form", status=422, appointment=found,
                      error=message, late=booking.within_cancellation_window(found, now()))
    db.session.commit()
    return redirect_htmx(url_for("booking.appointments"))


@bp.get("/appointments/<int:appointment_id>/reschedule")
@access("patient", phi="appointment")
def reschedule_form(appointment_id: int):
    found = _own_appointment(appointment_id)
    return _reschedule_page(found)


def _reschedule_page(found: Appointment, *, status: int = 200, notice: str | None = None, nearest=None):
    slots = [] if found.status != "confirmed" else _slots_excluding(found)
    days: dict = {}
    for slot in slots:
        days.setdefault(slot.starts_at.astimezone(_tz()).date(), []).append(slot)
    return render("booking/reschedule.html", block="slot_list", status=status, appointment=found, days=days,
                  notice=notice, nearest=nearest or [], late=booking.within_cancellation_window(found, now()))


def _slots_excluding(found: Appointment):
    from app.services import availability

    current = now()
    [loaded] = schedule.load_schedules(db.session, [found.provider], now=current, window_start=current,
                                       window_end=current + timedelta(days=14),
                                       exclude_appointment_id=found.id)
    return availability.slots_for(loaded.schedule, schedule.slot_type(found.type), now=current,
                                  end=current + timedelta(days=14))


@bp.post("/appointments/<int:appointment_id>/reschedule")
@access("patient", phi="appointment")
def reschedule(appointment_id: int):
    found = _own_appointment(appointment_id)
    try:
        new_start = _instant_arg("starts_at")
    except BadInput as error:
        return _bad_request(str(error))
    try:
        booking.reschedule(db.session, found, actor=actor(), now=now(), new_starts_at=new_start)
    except booking.SlotTaken as taken:
        db.session.rollback()
        return _reschedule_page(found, status=409, nearest=taken.nearest,
                                notice=_("Sorry, that time was just taken. These are the nearest free times."))
    except (booking.BookingRuleError, booking.InvalidSlot) as error:
        db.session.rollback()
        return _reschedule_page(found, status=422, notice=str(error))
    db.session.commit()
    return redirect_htmx(url_for("booking.appointment", appointment_id=found.id))


@bp.get("/appointments/<int:appointment_id>.ics")
@access("patient", phi="appointment")
def ics(appointment_id: int):
    found = _own_appointment(appointment_id)
    if found.status not in ("confirmed", "checked_in"):
        abort(404)
    from app.services.clinic import current_clinic

    body = calendar.appointment_ics(found, clinic=current_clinic(db.session),
                                    url=url_for("booking.appointment", appointment_id=found.id, _external=True))
    response = current_app.response_class(body, mimetype="text/calendar")
    response.headers["Content-Disposition"] = f'attachment; filename="appointment-{found.id}.ics"'
    return response


from app.blueprints.booking import receipts  # noqa: E402,F401  (the receipt route, on bp)
from app.blueprints.booking import statements  # noqa: E402,F401  (the itemized statement, on bp)
from app.blueprints.booking import good_faith  # noqa: E402,F401  (the Good Faith Estimate, on bp)
