"""T-window jobs: the provider alert on a late payment failure, and what became of it.

``app/jobs/subscriptions.py`` enqueues these after the commit that made the
change; each job loads the appointment by id (locked), calls the T-window
service, and commits. ``sweep_alerts`` is
the periodic step for work Redis may have lost.
"""
from __future__ import annotations


from flask import Flask, current_app

from app.jobs import job_session
from app.jobs import now as _now
from app.models import Appointment
from app.services import twindow
from app.services.audit import Actor


def _policy() -> twindow.TWindow:
    return twindow.TWindow.from_settings(current_app.config["SETTINGS"])


def _locked(session, appointment_id: int) -> Appointment | None:
    return session.get(Appointment, appointment_id, with_for_update=True, populate_existing=True)


def payment_declined(appointment_id: int, failure_key: str | None = None) -> bool:
    """A failed confirmation: inside the T-window, alert the provider and set the release deadline."""
    with job_session() as session:
        appointment = _locked(session, appointment_id)
        if appointment is None:
            return False
        alert = twindow.payment_failed(session, appointment, now=_now(), policy=_policy(),
                                       actor=Actor.system("job"), failure=failure_key or None)
        session.commit()
        return alert is not None


def appointment_changed(appointment_id: int, reason: str | None = None) -> str | None:
    """Confirmed, released or canceled: the appointment's alert (if any) says so; the provider is told."""
    with job_session() as session:
        appointment = _locked(session, appointment_id)
        if appointment is None or twindow.alert_for(session, appointment_id) is None:
            session.rollback()
            return None
        alert = twindow.settle(session, appointment, now=_now(), policy=_policy(), actor=Actor.system("job"),
                               reason=reason)
        session.commit()
        return alert.status if alert is not None else None


def sweep_alerts() -> dict:
    """Alerts a lost job never raised or never resolved (the database says what is due)."""
    with job_session() as session:
        missed = twindow.missed_alerts(session, now=_now(), policy=_policy())
        stale = twindow.unresolved_alerts(session)
        session.rollback()
    raised = sum(payment_declined(appointment_id, "sweep") for appointment_id in missed)
    settled = sum(appointment_changed(appointment_id) is not None for appointment_id in stale)
    return {"alerts_raised": raised, "alerts_settled": settled}


def provider_alerts(provider, first, days):
    """Template global for the provider's day/week view: the alerts to show."""
    from app.extensions import db

    if provider is None:
        return []
    return twindow.alerts_for_view(db.session, provider.id, first=first, days=days,
                                   timezone=provider.timezone)


def init_app(app: Flask) -> None:
    """Called in create_app: the provider's view shows the alerts."""
    app.add_template_global(provider_alerts, "provider_alerts")
