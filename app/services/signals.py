"""Booking events: what the payment timings, notifications and T-window react to.

A service that changes an appointment calls ``emit(session, "booking_confirmed",
appointment)``: the event is snapshotted now and handed, by name, to the unit
of work (``unit_of_work.request``), which gives it to the subscribed handlers
only after the transaction committed. Every path (a page, a job, a webhook)
emits through the service that made the change, and a rolled-back change
emits nothing. ``app/jobs/subscriptions.py`` says who listens.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

SLOT_SELECTED = "slot_selected"
BOOKING_CONFIRMED = "booking_confirmed"
BOOKING_CANCELED = "booking_canceled"
HOLD_RELEASED = "hold_released"
BOOKING_RESCHEDULED = "booking_rescheduled"
PAYMENT_DECLINED = "payment_declined"        # ``reason`` carries the failure's key
EVENTS = (SLOT_SELECTED, BOOKING_CONFIRMED, BOOKING_CANCELED, HOLD_RELEASED, BOOKING_RESCHEDULED,
          PAYMENT_DECLINED)


@dataclass(frozen=True)
class BookingEvent:
    appointment_id: int
    patient_id: int
    provider_id: int
    type_id: int
    payment_timing: str
    starts_at: datetime
    ends_at: datetime
    status: str
    reason: str | None = None

    @classmethod
    def of(cls, appointment, reason: str | None = None) -> "BookingEvent":
        return cls(appointment.id, appointment.patient_id, appointment.provider_id, appointment.type_id,
                   appointment.payment_timing, appointment.starts_at, appointment.ends_at,
                   appointment.status, reason)


def emit(session, name: str, appointment, reason: str | None = None) -> None:
    """Snapshot the appointment now; hand the event to its subscribers once the commit has succeeded."""
    from app.services.unit_of_work import request

    if name not in EVENTS:
        raise ValueError(f"not a booking event: {name}")
    request(session, name, BookingEvent.of(appointment, reason))
