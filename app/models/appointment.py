"""The appointment and its state machine.

    held -> confirmed -> checked_in -> completed
    held -> released            (hold expired, replaced, or payment gave up)
    released -> confirmed       (a payment that succeeds late while the slot is still free)
    held | confirmed -> canceled
    confirmed -> no_show

Only held, confirmed and checked_in block the provider's time; PostgreSQL
enforces it with an exclusion constraint over the provider and the blocked
range (the visit plus its buffers). An expired hold still blocks until it is
released, which taking an overlapping slot does in the same transaction.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.state import Machine, next_state
from app.models.types import EncryptedText

BLOCKING = ("held", "confirmed", "checked_in")
BOOKED = ("confirmed", "checked_in", "completed")   # the patient has the visit (paid, if paid at booking)
TRANSITIONS = {
    ("held", "confirm"): "confirmed",
    ("released", "confirm"): "confirmed",
    ("held", "release"): "released",
    ("held", "cancel"): "canceled",
    ("confirmed", "cancel"): "canceled",
    ("confirmed", "check_in"): "checked_in",
    ("checked_in", "complete"): "completed",
    ("confirmed", "no_show"): "no_show",
}
STATUSES = ("held", "confirmed", "checked_in", "completed", "canceled", "no_show", "released")


class Appointment(db.Model):
    __tablename__ = "appointments"
    __table_args__ = (
        CheckConstraint("status IN ('held', 'confirmed', 'checked_in', 'completed', 'canceled', "
                        "'no_show', 'released')", name="status"),
        CheckConstraint("ends_at > starts_at", name="ordered"),
        CheckConstraint("blocked_start <= starts_at AND blocked_end >= ends_at", name="blocked_covers"),
        CheckConstraint("status <> 'held' OR hold_expires_at IS NOT NULL", name="hold_expiry"),
        # The exclusion constraint (no two blocking appointments of a provider
        # overlap) is created in the migration: SQLAlchemy cannot declare it
        # with an expression over two columns portably.
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), index=True)
    type_id: Mapped[int] = mapped_column(ForeignKey("appointment_types.id"))
    status: Mapped[str] = mapped_column(String(16), default="held")
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hold_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    hold_extended: Mapped[bool] = mapped_column(default=False)
    price_cents: Mapped[int] = mapped_column(Integer)
    payment_timing: Mapped[str] = mapped_column(String(16))
    modality: Mapped[str] = mapped_column(String(16))
    telehealth_room: Mapped[str | None] = mapped_column(String(64))
    # Post-visit: the saved card (Stripe PaymentMethod id) this booking will be charged to; None
    # once the patient removes it ("card needed").
    payment_method_id: Mapped[str | None] = mapped_column(String(255))
    cancel_reason: Mapped[str | None] = mapped_column(EncryptedText("appointments.cancel_reason"))
    canceled_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    canceled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    patient = relationship("Patient")
    provider = relationship("Provider")
    type = relationship("AppointmentType")

    @property
    def is_blocking(self) -> bool:
        return self.status in BLOCKING

    def next_status(self, action: str) -> str:
        return next_state("appointment", TRANSITIONS, self.status, action)

    def __repr__(self) -> str:
        return f"<Appointment {self.id} {self.status}>"


ALERT_TRANSITIONS = {
    ("open", "recover"): "recovered",          # the payment came through: booked
    ("open", "release"): "released",           # the slot was released (deadline) or canceled
    ("released", "recover"): "recovered",      # a late payment booked the released slot after all
}
ALERT_MACHINE = Machine("provider_alert", ALERT_TRANSITIONS)


class ProviderAlert(db.Model):
    """The provider is told at once when a payment fails inside the T-window;
    the alert says what became of it: recovered, or the slot released at the deadline.
    ``transition`` (ALERT_TRANSITIONS) is the one writer of ``status``."""
    __tablename__ = "provider_alerts"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'recovered', 'released')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"), unique=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="payment_failed_in_window")
    status: Mapped[str] = mapped_column(String(12), default="open")
    release_deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    appointment = relationship("Appointment")

    def transition(self, action: str, *, now: datetime) -> str:
        """Move the alert (ALERT_TRANSITIONS) and stamp ``resolved_at``. Raises InvalidTransition
        for a move the table does not have, Ignored for a repeat; returns the new status."""
        self.status = ALERT_MACHINE.next(self.status, action)
        self.resolved_at = now
        return self.status

    def can(self, action: str) -> bool:
        return ALERT_MACHINE.allows(self.status, action)
