"""A provider's day and week, and the visit actions on each appointment.

Providers see their own schedule; admins and billing pick a provider
(``provider_id=``). Check-in, completed and no-show are for the provider and
admins; cancel (with a reason) for the provider, billing and admins.
"""
from __future__ import annotations

from datetime import date, timedelta

from flask import abort, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from app import phi
from app import input_guard
from app.access import access
from app.blueprints.staff import bp
from app.blueprints.staff.common import appointment_or_404, own_provider
from app.blueprints.staff.forms import CancelForm
from app.extensions import db
from app.models import Appointment, Provider
from app.models.state import Ignored, InvalidTransition
from app.services import booking, staffing, visit_status
from app.web import actor, is_htmx, now, redirect_htmx, render

MARKS = {"check_in": "Checked in.", "complete": "Marked completed.", "no_show": "Marked as a no-show."}
ALREADY = {"check_in": "This patient is already checked in.", "complete": "This visit is already completed.",
           "no_show": "This visit is already marked as a no-show.", "cancel": "This visit is already canceled."}
CANNOT = {"check_in": "Only a confirmed visit can be checked in.",
          "complete": "Only a checked-in visit can be marked completed.",
          "no_show": "Only a confirmed visit can be marked as a no-show.",
          "cancel": "Only a held or confirmed visit can be canceled."}


def _viewed_provider() -> Provider | None:
    """The provider whose schedule is shown; None when a staff member has not picked one."""
    wanted = _provider_id_arg()
    if current_user.role == "provider":
        provider = own_provider()       # None until an admin sets up the profile: the page says so
        if wanted is not None and (provider is None or wanted != provider.id):
            abort(404)
        return provider
    if wanted is None:
        return None
    return db.session.get(Provider, wanted) or abort(404)


def _provider_id_arg() -> int | None:
    wanted = request.args.get("provider_id", type=int)      # not a number: none picked
    if wanted is not None and not 0 <= wanted <= input_guard.PG_INT_MAX:
        abort(404)                      # like any provider that does not exist
    return wanted


def _day(provider: Provider | None) -> date:
    raw = request.args.get("date")
    if raw:
        try:
            return input_guard.parse_date(raw)
        except input_guard.BadValue as error:
            input_guard.refuse(str(error))
    return staffing.local_today(provider, now()) if provider else now().date()


def _context(provider: Provider | None, first: date, days: int) -> dict:
    context = dict(provider=provider, first=first, days=days, prev_date=first - timedelta(days=days),
                   next_date=first + timedelta(days=days), can_mark=current_user.role in ("provider", "admin"),
                   now=now(), choices=[], by_day={})
    if provider is None:
        if current_user.role == "provider":
            return context
        context["choices"] = [SelectChoice(p.id, p.display_name) for p in staffing.providers(db.session)]
        return context
    start, end = staffing.local_range(provider, first, days)
    appointments = staffing.appointments_between(db.session, provider, start=start, end=end)
    by_day = {first + timedelta(days=i): [] for i in range(days)}
    for appt in appointments:
        by_day.setdefault(staffing.local_today(provider, appt.starts_at), []).append(appt)
    phi.shown(patient_ids=[appt.patient_id for appt in appointments], record={"provider_id": provider.id})
    context["by_day"] = by_day
    context["visit_states"] = visit_status.visit_states(db.session, [appt.id for appt in appointments])
    return context


@bp.get("/day")
@access("provider", "billing", "admin", phi="schedule")
def day():
    provider = _viewed_provider()
    first = _day(provider)
    return render("staff/day.html", block="day_list", view="day", **_context(provider, first, 1))


@bp.get("/week")
@access("provider", "billing", "admin", phi="schedule")
def week():
    provider = _viewed_provider()
    picked = _day(provider)
    first = picked - timedelta(days=picked.weekday())      # the Monday of that week
    return render("staff/day.html", block="day_list", view="week", picked=picked,
                  **_context(provider, first, 7))


# -- the visit actions ----------------------------------------------------------------------

def _day_url(appt: Appointment) -> str:
    on = staffing.local_today(appt.provider, appt.starts_at).isoformat()
    if current_user.role == "provider":
        return url_for("staff.day", date=on)
    return url_for("staff.day", date=on, provider_id=appt.provider_id)


def _card(appt: Appointment, *, status: int = 200, notice: str | None = None, error: bool = False):
    return render("staff/appointment.html", block="appointment", status=status, appt=appt, provider=appt.provider,
                  can_mark=current_user.role in ("provider", "admin"), now=now(), notice=notice, error=error,
                  day_url=_day_url(appt))


def _refused(appt: Appointment, action: str, error: Exception, *, form=None):
    db.session.rollback()
    db.session.refresh(appt)
    if isinstance(error, Ignored):
        message = ALREADY[action]
    elif isinstance(error, InvalidTransition):
        message = CANNOT[action]
    else:
        message = str(error)
    if form is not None:
        return render("staff/cancel.html", block="cancel_form", status=409, appt=appt, form=form, notice=message,
                      day_url=_day_url(appt))
    return _card(appt, status=409, notice=message, error=True)


@bp.post("/appointments/<int:appointment_id>/<any(check_in, complete, no_show):action>")
@access("provider", "admin", phi="appointment")
def mark(appointment_id: int, action: str):
    appt = appointment_or_404(appointment_id)
    try:
        booking.mark(db.session, appt, action, actor=actor(), now=now())
        if action == "check_in":             # the visit's note opens at check-in (app/services/emr.py)
            from app.services import emr

            emr.open_encounter(db.session, appt, actor=actor(), user=current_user, now=now(), source="check_in")
    except (booking.BookingRuleError, InvalidTransition, Ignored) as error:
        return _refused(appt, action, error)
    db.session.commit()
    if is_htmx():
        return _card(appt, notice=MARKS[action])
    return redirect_htmx(_day_url(appt))


@bp.route("/appointments/<int:appointment_id>/cancel", methods=["GET", "POST"])
@access("provider", "billing", "admin", phi="appointment")
def cancel(appointment_id: int):
    appt = appointment_or_404(appointment_id)
    form = CancelForm()
    if not form.is_submitted():
        return render("staff/cancel.html", block="cancel_form", appt=appt, form=form, day_url=_day_url(appt))
    if not form.validate_on_submit():
        return render("staff/cancel.html", block="cancel_form", status=422, appt=appt, form=form,
                      day_url=_day_url(appt))
    try:
        booking.cancel(db.session, appt, actor=actor(), now=now(), reason=form.reason.data,
                       by_user_id=current_user.id)
    except (booking.BookingRuleError, InvalidTransition, Ignored) as error:
        return _refused(appt, "cancel", error, form=form)
    db.session.commit()
    if is_htmx():
        return _card(appt, notice="Visit canceled.")
    return redirect_htmx(_day_url(appt))


@bp.get("/appointments/<int:appointment_id>/messages")
@access("provider", "billing", "admin", phi="message_log")
def messages(appointment_id: int):
    """The message log of an appointment: what, when, to whom, status."""
    from app.services import notifications

    appt = appointment_or_404(appointment_id)
    return render("staff/messages.html", appt=appt, rows=notifications.log_for_appointment(db.session, appt.id),
                  day_url=_day_url(appt))
