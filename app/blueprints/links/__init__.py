"""One-click links from messages: /r/<token> back to checkout.

GET only shows the page (link previews in SMS and mail apps fetch links);
the patient's tap (POST) uses the link, takes a fresh hold on the same slot
(or one of the nearest free ones if it went) and opens checkout. The link
grants that one checkout — it is not a sign-in to the portal. Once the
appointment is booked (by any path) its links are void, and opening or
tapping one says "You're booked" and points to the visit: no hold, no checkout."""
from __future__ import annotations

from flask import Blueprint, current_app, request, url_for
from flask_babel import gettext as _

from app import phi
from app import input_guard
from app.access import PUBLIC, access
from app.blueprints import payment_views
from app.extensions import db
from app.services import booking, links
from app.services.audit import Actor
from app.services.booking import HoldPolicy
from app.web import now, redirect_htmx, render

bp = Blueprint("links", __name__)
PURPOSE = "retry_checkout"
GRANTS = "checkout_grants"


def grant_checkout(appointment_id: int) -> None:
    payment_views.grant(GRANTS, appointment_id)


def _secret() -> str:
    return current_app.config["SETTINGS"].SECRET_KEY


def _nearest(link, count=4):
    original = link.appointment if link else None
    if original is None:
        return []
    return booking.nearest_free(db.session, provider=original.provider, appointment_type=original.type,
                                around=original.starts_at, now=now(), count=count)


def _booked(appointment):
    """The link has nothing left to do: say so, with the time and the way to the visit."""
    db.session.rollback()
    phi.shown(appointment=appointment, actor=Actor("link", appointment.patient.user_id, "patient"))
    return render("links/booked.html", appointment=appointment, tz=appointment.patient.user.timezone)


def _invalid(error: links.LinkInvalid):
    db.session.rollback()
    link = error.link
    booked = links.booked_appointment(db.session, link)
    if booked is not None:
        return _booked(booked)
    if link is not None and link.appointment is not None:
        phi.shown(appointment=link.appointment, actor=Actor("link", link.user_id, "patient"))
    return render("links/invalid.html", status=410 if error.kind != "tampered" else 404, message=str(error),
                  link=link, nearest=_nearest(link), tz=link.user.timezone if link else "UTC")


@bp.get("/r/<token>")
@access(PUBLIC, phi="appointment")
def retry(token: str):
    try:
        link = links.resolve(db.session, token, secret=_secret(), purpose=PURPOSE, now=now())
    except links.LinkInvalid as error:
        return _invalid(error)
    booked = links.booked_appointment(db.session, link)
    if booked is not None:
        return _booked(booked)
    phi.shown(appointment=link.appointment, actor=Actor("link", link.user_id, "patient"))
    return render("links/retry.html", link=link, appointment=link.appointment, tz=link.user.timezone,
                  token=token)


@bp.post("/r/<token>")
@access(PUBLIC, phi="appointment")
def retry_take(token: str):
    try:
        link = links.resolve(db.session, token, secret=_secret(), purpose=PURPOSE, now=now())
    except links.LinkInvalid as error:
        return _invalid(error)
    booked = links.booked_appointment(db.session, link)
    if booked is not None:
        return _booked(booked)                   # already booked: no hold, no new checkout
    original = link.appointment
    patient = link.user.patient
    actor = Actor("user", link.user_id, "patient")
    starts_at = original.starts_at
    chosen = request.form.get("starts_at")
    if chosen:
        try:
            starts_at = input_guard.parse_instant(chosen)
        except input_guard.BadValue as error:
            return render("links/invalid.html", status=400, message=str(error), link=link,
                          nearest=_nearest(link), tz=link.user.timezone)
    try:
        if (original.status == "held" and original.hold_expires_at > now() and starts_at == original.starts_at):
            hold = original                      # the hold is still there: back to its checkout
        else:
            hold = booking.take_hold(db.session, now=now(), patient=patient, provider_id=original.provider_id,
                                     type_id=original.type_id, starts_at=starts_at,
                                     policy=HoldPolicy.from_settings(current_app.config["SETTINGS"]),
                                     actor=actor)
        links.use(db.session, link, now=now(), hold=hold)
    except booking.SlotTaken as taken:
        db.session.rollback()
        return render("links/retry.html", status=409, link=link, appointment=original, tz=link.user.timezone,
                      token=token, nearest=taken.nearest,
                      notice=_("That time was just taken. These are the nearest free times."))
    except (booking.InvalidSlot, booking.TooManyHolds) as error:
        db.session.rollback()
        return render("links/invalid.html", status=409, message=str(error), link=link, nearest=_nearest(link),
                      tz=link.user.timezone)
    except links.LinkInvalid as error:
        return _invalid(error)
    db.session.commit()
    grant_checkout(hold.id)
    return redirect_htmx(url_for("checkout.show", appointment_id=hold.id))
