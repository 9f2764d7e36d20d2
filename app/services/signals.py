"""Booking events (blinker): the hooks the payment timings and notifications
attach to. Sent only after the transaction that made the change commits
(``unit_of_work.after_commit``), from the service that made it, so every path
(a page, a job, a webhook) sends them and a rolled-back change never does.

Each carries ``sender=None`` and keyword ``event``: a ``BookingEvent``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from blinker import Namespace

_signals = Namespace()
slot_selected = _signals.signal("slot_selected")
booking_confirmed = _signals.signal("booking_confirmed")
booking_canceled = _signals.signal("booking_canceled")
hold_released = _signals.signal("hold_released")
booking_rescheduled = _signals.signal("booking_rescheduled")
# A confirmation of a payment failed (``reason`` carries the failure's key); sent by the payments service.
payment_declined = _signals.signal("payment_declined")


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


def send_after_commit(session, signal, appointment, reason: str | None = None) -> None:
    """Snapshot the appointment now; send once the commit has succeeded."""
    from app.services.unit_of_work import after_commit

    event = BookingEvent.of(appointment, reason)
    after_commit(session, signal.send, None, event=event)
