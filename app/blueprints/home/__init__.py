"""The landing page and the home page of each role."""
from flask import Blueprint, redirect
from flask_login import current_user

from app.access import PUBLIC, access
from app.web import render

bp = Blueprint("home", __name__)


@bp.get("/")
@access(PUBLIC, phi=False)
def index():
    if current_user.is_authenticated:
        from app.blueprints.auth.views import home_for

        return redirect(home_for(current_user))
    return render("home/index.html")


@bp.get("/patient")
@access("patient", phi="patient_home")
def patient():
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Appointment
    from app.web import now

    upcoming = db.session.scalars(select(Appointment).where(
        Appointment.patient_id == current_user.patient.id,
        Appointment.status.in_(("held", "confirmed", "checked_in")),
        Appointment.ends_at >= now()).order_by(Appointment.starts_at).limit(5)).all()
    return render("home/patient.html", upcoming=upcoming)


@bp.get("/provider")
@access("provider", phi=False)
def provider():
    return render("home/provider.html")


@bp.get("/billing")
@access("billing", "admin", phi=False)
def billing():
    return render("home/billing.html")
