"""The waitlist (issue 17): a patient's wish for a time (entries) and the offers of freed slots.

An entry names a provider (or a specialty: any of its providers), an appointment type and a
window: days (first_day..last_day, on the weekdays of ``weekdays``, a bitmask, bit 0 = Monday)
and a time of day (earliest..latest, in the entry's ``timezone``, the patient's).

    entry:  active -> left        (the patient left the waitlist)
            active -> fulfilled   (a booking came from one of its offers)
            active -> expired     (its last day passed)

A freed slot is offered to the first matching active entries in turn (WAITLIST_OFFER_FANOUT at
once); each offer is a single-use, expiring one-click link (``link_id``, app/services/links.py).

    offer:  offered -> claimed    (the tap took a hold on the slot: ``hold_id``)
            offered -> expired    (not taken within WAITLIST_OFFER_TTL: the next patient is offered it)
            offered -> withdrawn  (the slot went to someone else, or the entry ended)
            claimed -> booked     (the hold was confirmed: the freed slot is refilled)
            claimed -> lapsed     (the hold was released without a booking)
            lapsed -> booked      (a late payment booked the released hold after all)

The exclusion constraint on appointments decides who gets a slot: an offer only opens the way
to a hold. One offer per entry and slot (``uq_waitlist_offers_entry_slot``, withdrawn ones aside):
nobody is offered the same time twice, unless it went to someone else and frees again.
"""
from __future__ import annotations

import uuid
from datetime import date, datetime, time

from sqlalchemy import (CheckConstraint, Date, DateTime, ForeignKey, Index, SmallInteger, String, Time,
                        Uuid, text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.state import Machine

ENTRY_TRANSITIONS = {
    ("active", "leave"): "left",
    ("active", "fulfill"): "fulfilled",
    ("active", "expire"): "expired",
}
ENTRY_MACHINE = Machine("waitlist_entry", ENTRY_TRANSITIONS)
ENTRY_STATUSES = ("active", "left", "fulfilled", "expired")

OFFER_TRANSITIONS = {
    ("offered", "claim"): "claimed",
    ("offered", "expire"): "expired",
    ("offered", "withdraw"): "withdrawn",
    ("claimed", "book"): "booked",
    ("claimed", "lapse"): "lapsed",
    ("lapsed", "book"): "booked",        # a late payment booked the released hold after all
}
OFFER_MACHINE = Machine("waitlist_offer", OFFER_TRANSITIONS)
OFFER_STATUSES = ("offered", "claimed", "expired", "withdrawn", "booked", "lapsed")
ALL_DAYS = 0b1111111


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


class WaitlistEntry(db.Model):
    __tablename__ = "waitlist_entries"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(ENTRY_STATUSES)})", name="status"),
        CheckConstraint("provider_id IS NOT NULL OR specialty_id IS NOT NULL", name="target"),
        CheckConstraint("last_day >= first_day", name="days"),
        CheckConstraint("latest > earliest", name="times"),
        CheckConstraint("weekdays BETWEEN 1 AND 127", name="weekdays"),
        Index("ix_waitlist_entries_status_provider", "status", "provider_id"),
        Index("ix_waitlist_entries_status_specialty", "status", "specialty_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"))
    specialty_id: Mapped[int | None] = mapped_column(ForeignKey("specialties.id"))
    type_id: Mapped[int] = mapped_column(ForeignKey("appointment_types.id"))
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    weekdays: Mapped[int] = mapped_column(SmallInteger, default=ALL_DAYS)
    earliest: Mapped[time] = mapped_column(Time)
    latest: Mapped[time] = mapped_column(Time)
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    patient = relationship("Patient")
    provider = relationship("Provider")
    specialty = relationship("Specialty")
    type = relationship("AppointmentType")

    def transition(self, action: str, *, now: datetime) -> str:
        """The one writer of ``status`` (ENTRY_TRANSITIONS): InvalidTransition / Ignored otherwise."""
        self.status = ENTRY_MACHINE.next(self.status, action)
        self.ended_at = now
        return self.status

    def can(self, action: str) -> bool:
        return ENTRY_MACHINE.allows(self.status, action)

    def on_weekday(self, weekday: int) -> bool:
        return bool(self.weekdays & (1 << weekday))


class WaitlistOffer(db.Model):
    __tablename__ = "waitlist_offers"
    __table_args__ = (
        CheckConstraint(f"status IN ({_in(OFFER_STATUSES)})", name="status"),
        CheckConstraint("status <> 'claimed' OR hold_id IS NOT NULL", name="claimed_hold"),
        # Nobody is offered the same time twice — except after a withdrawal (someone else took the
        # time first): if it frees again, they may be offered it again.
        Index("uq_waitlist_offers_entry_slot", "entry_id", "provider_id", "starts_at", unique=True,
              postgresql_where=text("status <> 'withdrawn'")),
        Index("ix_waitlist_offers_status_expires_at", "status", "expires_at"),
        Index("ix_waitlist_offers_slot", "provider_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("waitlist_entries.id"), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    type_id: Mapped[int] = mapped_column(ForeignKey("appointment_types.id"))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The appointment whose cancellation, release or move freed the time (None: offered again by the sweep).
    freed_appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"))
    link_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("link_tokens.id"), unique=True)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"), index=True)
    status: Mapped[str] = mapped_column(String(12), default="offered")
    offered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    entry = relationship("WaitlistEntry")
    provider = relationship("Provider")
    type = relationship("AppointmentType")
    hold = relationship("Appointment", foreign_keys=[hold_id])

    def transition(self, action: str, *, now: datetime) -> str:
        """The one writer of ``status`` (OFFER_TRANSITIONS): InvalidTransition / Ignored otherwise."""
        self.status = OFFER_MACHINE.next(self.status, action)
        self.resolved_at = now
        return self.status

    def can(self, action: str) -> bool:
        return OFFER_MACHINE.allows(self.status, action)
