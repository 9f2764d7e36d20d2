"""Eligibility and Good Faith Estimate jobs (issue 15). Thin: load by id, call one service, commit.

- ``recheck(appointment_id)``: the day-before eligibility recheck of a confirmed hybrid visit
  (``eligibility.recheck_appointment``); the periodic sweep (app/jobs/periodic.py) finds the due ones
  (``sweep_eligibility_rechecks``: visits starting within ELIGIBILITY_RECHECK_BEFORE) and enqueues one
  job each, so a slow clearinghouse never holds the sweep. Safe to run twice (an answered recheck is
  not repeated).
- ``deliver_good_faith_estimate(appointment_id)``: on BOOKING_CONFIRMED (app/jobs/subscriptions.py),
  for a self-pay or uninsured patient of any payment timing: make and attach the GFE if the booking has
  none, queue the email with its link (no PHI in the message), record the delivery. Safe to run twice
  (the notification is deduplicated by key, the delivery stamped once).
"""
from __future__ import annotations

import logging

from flask import current_app

from app.jobs import enqueue, job_session, now as _now
from app.models import Appointment
from app.services import eligibility, estimates, notifications
from app.services.audit import Actor

log = logging.getLogger(__name__)
ACTOR = Actor.system("job")
GFE_TEMPLATE = "good_faith_estimate"


def recheck(appointment_id: int) -> int:
    with job_session() as session:
        appointment = session.get(Appointment, appointment_id, with_for_update=True)
        if appointment is None:
            return 0
        checks = eligibility.recheck_appointment(session, appointment, now=_now(), actor=ACTOR)
        session.commit()
        return len(checks)


def sweep_eligibility_rechecks(limit: int = 100) -> int:
    """The sweep's step: enqueue a recheck for each due visit; returns how many."""
    with job_session() as session:
        ids = eligibility.due_rechecks(session, now=_now(),
                                       before=current_app.config["SETTINGS"].ELIGIBILITY_RECHECK_BEFORE, limit=limit)
        session.rollback()
        for appointment_id in ids:
            enqueue(recheck, appointment_id)
        return len(ids)


def gfe_url(appointment_id: int) -> str:
    base = current_app.config["SETTINGS"].PUBLIC_BASE_URL.rstrip("/")
    return f"{base}/appointments/{appointment_id}/good-faith-estimate"


def deliver_good_faith_estimate(appointment_id: int) -> bool:
    with job_session() as session:
        appointment = session.get(Appointment, appointment_id, with_for_update=True)
        if appointment is None or appointment.status not in ("confirmed", "checked_in"):
            return False
        now = _now()
        estimate = estimates.good_faith_for(session, appointment, now=now, actor=ACTOR)
        if estimate is None:
            session.commit()
            return False
        notifications.queue(session, dedupe_key=f"{GFE_TEMPLATE}:{appointment.id}", template=GFE_TEMPLATE,
                            user=appointment.patient.user, appointment=appointment, scheduled_for=now,
                            prefer="email", context={"link": gfe_url(appointment.id)})
        estimates.mark_delivered(session, estimate, now=now, actor=ACTOR)
        session.commit()
        return True
