"""Hold expiry: one job at each hold's expiry, plus the periodic sweep."""
from __future__ import annotations

from datetime import datetime


from app.jobs import enqueue_at, job_session
from app.jobs import now as _now
from app.models import Appointment
from app.services import booking


def schedule_hold_expiry(appointment_id: int, when: datetime) -> None:
    """After-commit hook of take_hold: the job runs at the hold's expiry."""
    enqueue_at(when, expire_hold, appointment_id, job_id=f"expire-hold-{appointment_id}")


def expire_hold(appointment_id: int) -> bool:
    with job_session() as session:
        appointment = session.get(Appointment, appointment_id, with_for_update=True)
        if appointment is None:
            return False
        released = booking.expire_hold(session, appointment, now=_now())
        session.commit()
        return released


def sweep_expired_holds() -> int:
    with job_session() as session:
        count = booking.expire_due_holds(session, now=_now())
        session.commit()
        return count
