"""The waitlist (issue 17), the patient's side: join when nothing suits, "My waitlist" with leave,
and the offer link /w/<token> of a freed slot.

The offer link follows the one-click links' rules (app/blueprints/links): GET only shows the
offer (message apps fetch links for previews); the tap (POST) takes a hold on the slot and opens
the normal checkout. The link grants that one checkout, not a sign-in."""
from __future__ import annotations

from datetime import time, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from app import input_guard, phi
from app.access import PUBLIC, access
from app.blueprints.links import grant_checkout
from app.extensions import db
from app.models import Provider, WaitlistEntry
from app.models.waitlist import ALL_DAYS
from app.services import schedule, waitlist
from app.services.audit import Actor
from app.services.booking import HoldPolicy
from app.web import actor, now, redirect_htmx, render

bp = Blueprint("waitlist", __name__)


def _int(name: str) -> int | None:
    raw = (request.values.get(name) or "").strip()
    if not raw:
        return None
    try:
        return input_guard.parse_int(raw, what=name.replace("_", " "))
    except input_guard.BadValue:
        return None


def _time(raw: str | None, default: time) -> time:
    raw = (raw or "").strip()
    if not raw:
        return default
    try:
        hours, minutes = raw.split(":")[:2]
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise waitlist.WaitlistError(_("Enter a time like 09:00.")) from None


def _form_context(values: dict, error: str | None = None) -> dict:
    types = schedule.bookable_types(db.session)
    provider = db.session.get(Provider, values["provider_id"]) if values.get("provider_id") else None
    if provider is not None and not provider.is_active:
        provider = None
    if provider is not None:
        types = [t for t in types if provider.offers(t)]
    weekday_names = [_("Monday"), _("Tuesday"), _("Wednesday"), _("Thursday"), _("Friday"), _("Saturday"),
                     _("Sunday")]
    return dict(values=values, error=error, types=types, provider=provider,
                specialties=schedule.specialties(db.session), weekday_names=weekday_names)


def _defaults() -> dict:
    today = now().astimezone(ZoneInfo(current_user.timezone)).date()
    return {"provider_id": _int("provider_id"), "specialty_id": _int("specialty_id"), "type_id": _int("type_id"),
            "first_day": today.isoformat(), "last_day": (today + timedelta(days=14)).isoformat(),
            "weekdays": [0, 1, 2, 3, 4], "earliest": "08:00", "latest": "18:00"}


@bp.get("/waitlist/join")
@access("patient", phi=False)
def join_form():
    return render("waitlist/join.html", **_form_context(_defaults()))


@bp.post("/waitlist")
@access("patient", phi=False)
def join():
    form = request.form
    values = {"provider_id": _int("provider_id"), "specialty_id": _int("specialty_id"), "type_id": _int("type_id"),
              "first_day": form.get("first_day", ""), "last_day": form.get("last_day", ""),
              "weekdays": [], "earliest": form.get("earliest", ""), "latest": form.get("latest", "")}
    try:
        for raw in form.getlist("weekdays"):
            day = input_guard.parse_int(raw, what="day", maximum=6)
            if day not in values["weekdays"]:
                values["weekdays"].append(day)
        if values["type_id"] is None:
            raise waitlist.WaitlistError(_("Choose a visit type from the list."))
        try:
            first_day = input_guard.parse_date(values["first_day"])
            last_day = input_guard.parse_date(values["last_day"])
        except input_guard.BadValue:
            raise waitlist.WaitlistError(_("Enter the first and last days as dates.")) from None
        weekdays = sum(1 << d for d in values["weekdays"])
        entry = waitlist.join(db.session, patient=current_user.patient, type_id=values["type_id"],
                              provider_id=values["provider_id"], specialty_id=values["specialty_id"],
                              first_day=first_day, last_day=last_day, weekdays=weekdays or 0,
                              earliest=_time(values["earliest"], time(8)), latest=_time(values["latest"], time(18)),
                              timezone=current_user.timezone, now=now(), actor=actor())
    except (waitlist.WaitlistError, input_guard.BadValue) as error:
        db.session.rollback()
        return render("waitlist/join.html", status=422, **_form_context(values, str(error)))
    db.session.commit()
    return redirect_htmx(url_for("waitlist.mine", joined=entry.id))


@bp.get("/waitlist")
@access("patient", phi="waitlist")
def mine():
    patient = current_user.patient
    entries = waitlist.entries_for(db.session, patient.id)
    phi.shown(patient_id=patient.id)
    return render("waitlist/mine.html", entries=entries, offers=waitlist.open_offers_for(db.session, patient.id,
                                                                                          now=now()),
                  joined=_int("joined"), left=request.args.get("left") == "1", ALL_DAYS=ALL_DAYS,
                  weekday_names=[_("Mon"), _("Tue"), _("Wed"), _("Thu"), _("Fri"), _("Sat"), _("Sun")])


@bp.post("/waitlist/<int:entry_id>/leave")
@access("patient", phi=False)
def leave(entry_id: int):
    entry = db.session.get(WaitlistEntry, entry_id, with_for_update=True)
    if entry is None or entry.patient_id != current_user.patient.id:
        abort(404)
    waitlist.leave(db.session, entry, actor=actor(), now=now())
    db.session.commit()
    return redirect_htmx(url_for("waitlist.mine", left=1))


# -- the offer link ------------------------------------------------------------------------------

def _gone(error: waitlist.OfferGone, *, status: int):
    """The offer cannot be taken: say why (a double tap that took it goes on to its checkout)."""
    offer = error.offer
    if offer is not None:
        phi.shown(patient_id=offer.patient_id, actor=Actor("link", offer.entry.patient.user_id, "patient"))
        hold = offer.hold
        if error.kind == "used" and hold is not None and hold.status in ("held", "confirmed", "checked_in"):
            # This browser's own earlier tap (or the other device's): back to that checkout.
            grant_checkout(hold.id)
            return redirect_htmx(url_for("checkout.show", appointment_id=hold.id))
    else:
        phi.withheld()
    tz = offer.entry.patient.user.timezone if offer is not None else "UTC"
    return render("waitlist/offer_gone.html", status=status, message=str(error), kind=error.kind, offer=offer, tz=tz)


@bp.get("/w/<token>")
@access(PUBLIC, phi="waitlist")
def offer(token: str):
    try:
        found = waitlist.open_offer(db.session, token, now=now())
    except waitlist.OfferGone as error:
        db.session.rollback()
        return _gone(error, status=404 if error.kind == "tampered" else 410)
    user = found.entry.patient.user
    phi.shown(patient_id=found.patient_id, actor=Actor("link", user.id, "patient"))
    return render("waitlist/offer.html", offer=found, token=token, tz=user.timezone)


@bp.post("/w/<token>")
@access(PUBLIC, phi="waitlist")
def offer_take(token: str):
    try:
        hold = waitlist.claim(db.session, token, now=now(),
                              hold_policy=HoldPolicy.from_settings(current_app.config["SETTINGS"]))
    except waitlist.OfferGone as error:
        db.session.commit()                 # a withdrawn offer (the slot went) is kept; nothing else was done
        return _gone(error, status=404 if error.kind == "tampered" else 409 if error.kind in ("taken", "busy")
                     else 410)
    db.session.commit()
    grant_checkout(hold.id)
    return redirect_htmx(url_for("checkout.show", appointment_id=hold.id))
