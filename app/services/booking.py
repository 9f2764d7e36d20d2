"""Booking: holds, confirmation, release, cancellation, reschedule, visit states.

Every status change goes through ``_transition`` (the appointment's state
machine): it checks the edge, writes the new state and its audit row in the
caller's transaction, and queues the matching signal for after the commit.
No function here commits.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from flask_babel import lazy_gettext as _l
from psycopg import errors as pg_errors
from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, lazyload

from app.models import Appointment, AppointmentType, Patient, Provider
from app.models.state import Ignored, InvalidTransition  # noqa: F401 (re-exported)
from app.services import DomainError, audit, availability, links, signals
from app.services.audit import Actor
from app.services.schedule import load_schedules, slot_type
from app.services.unit_of_work import request


class SlotTaken(DomainError):
    """The slot went (someone else holds or booked it); ``nearest`` are free ones close to it."""

    def __init__(self, nearest: list[availability.Slot]):
        super().__init__(_l("That time was just taken."))
        self.nearest = nearest


class InvalidSlot(DomainError):
    """Not a time this provider offers for this type (past, forged, outside hours)."""


class TooManyHolds(DomainError):
    pass


class BookingRuleError(DomainError):
    """A rule of the booking said no (window passed, wrong state, ...)."""


@dataclass(frozen=True)
class HoldPolicy:
    ttl: timedelta
    release_before_start: timedelta
    max_holds_per_patient: int = 1
    holds_per_hour: int = 12

    @classmethod
    def from_settings(cls, settings) -> "HoldPolicy":
        return cls(settings.HOLD_TTL, settings.RELEASE_BEFORE_START, settings.MAX_HOLDS_PER_PATIENT,
                   settings.HOLDS_PER_HOUR)


def _audit(session: Session, appointment: Appointment, *, actor: Actor, action: str, at: datetime,
           reason: str | None = None, details: dict | None = None) -> None:
    # The audit row carries the real time it was written; ``at`` (the domain
    # clock) is kept in the details so a test clock stays visible too.
    audit.record(session, actor=actor, action=action, patient_id=appointment.patient_id,
                 appointment_id=appointment.id, reason=reason,
                 details={"provider_id": appointment.provider_id, "type_id": appointment.type_id,
                          "at": at.isoformat(), **(details or {})})


# The audit action each transition writes.
AUDIT_ACTIONS = {"confirm": "booking.confirmed", "release": "booking.released", "cancel": "booking.canceled",
                 "check_in": "visit.checked_in", "complete": "visit.completed", "no_show": "visit.no_show"}


def _transition(session: Session, appointment: Appointment, action: str, *, actor: Actor, now: datetime,
                reason: str | None = None, details: dict | None = None, refill: bool = True) -> None:
    appointment.status = appointment.next_status(action)   # raises InvalidTransition / Ignored
    session.flush()
    _audit(session, appointment, actor=actor, action=AUDIT_ACTIONS[action], at=now, reason=reason,
           details=details)
    # The waitlist (issue 17), in this transaction: a freed slot is offered to waiting patients
    # (``refill=False``: a hold released only because a new one takes its time), a confirmed hold
    # that came from an offer counts as refilled.
    from app.services import waitlist
    waitlist.after_transition(session, appointment, action, now=now, refill=refill)


def _is_unique_or_exclusion(error: IntegrityError) -> bool:
    return isinstance(error.orig, pg_errors.ExclusionViolation)


def _blocked(starts_at: datetime, ends_at: datetime, appointment_type: AppointmentType):
    return (starts_at - timedelta(minutes=appointment_type.buffer_before_minutes),
            ends_at + timedelta(minutes=appointment_type.buffer_after_minutes))


def nearest_free(session: Session, *, provider: Provider, appointment_type: AppointmentType,
                 around: datetime, now: datetime, count: int = 3,
                 exclude_appointment_id: int | None = None) -> list[availability.Slot]:
    window = timedelta(days=14)
    [loaded] = load_schedules(session, [provider], now=now, window_start=max(now, around - window),
                              window_end=around + window, exclude_appointment_id=exclude_appointment_id)
    return availability.nearest(loaded.schedule, slot_type(appointment_type), around, now=now, count=count)


def _check_slot(session: Session, *, provider: Provider, appointment_type: AppointmentType,
                starts_at: datetime, now: datetime, exclude_appointment_id: int | None = None) -> None:
    """Raise InvalidSlot for a time never offered, SlotTaken for one that is taken."""
    if not appointment_type.is_active or not provider.is_active or not provider.offers(appointment_type):
        raise InvalidSlot(_l("This clinician does not offer that kind of visit."))
    if starts_at.tzinfo is None:
        raise InvalidSlot(_l("That time is not valid."))
    if starts_at <= now:
        raise InvalidSlot(_l("That time has already passed."))
    spec = slot_type(appointment_type)
    day = timedelta(days=1)
    [loaded] = load_schedules(session, [provider], now=now, window_start=starts_at - day,
                              window_end=starts_at + day, exclude_appointment_id=exclude_appointment_id)
    if availability.is_open(loaded.schedule, spec, starts_at, now=now):
        return
    # Would it be offered if nothing were booked? Then it was taken; otherwise it never existed.
    free = availability.ProviderSchedule(loaded.schedule.provider_id, loaded.schedule.timezone,
                                         loaded.schedule.rules, loaded.schedule.exceptions, ())
    if availability.is_open(free, spec, starts_at, now=now):
        raise SlotTaken(nearest_free(session, provider=provider, appointment_type=appointment_type,
                                     around=starts_at, now=now,
                                     exclude_appointment_id=exclude_appointment_id))
    raise InvalidSlot(_l("That time is not available for booking. Pick one of the times shown."))


def _release_expired_overlapping(session: Session, *, provider_id: int, blocked_start: datetime,
                                 blocked_end: datetime, now: datetime) -> None:
    """Expired holds never block: taking a slot releases the ones in its way (same transaction)."""
    expired = session.scalars(
        select(Appointment).where(
            Appointment.provider_id == provider_id, Appointment.status == "held",
            Appointment.hold_expires_at <= now,
            Appointment.blocked_start < blocked_end, Appointment.blocked_end > blocked_start,
        ).with_for_update(skip_locked=True)
    ).all()
    for hold in expired:
        release(session, hold, actor=Actor.system("system"), now=now, reason="hold expired", refill=False)


@dataclass
class HoldTarget:
    """What a hold needs besides the patient, read in one statement (``hold_target``): the
    provider with its types, the requested type (None when the provider does not list it, or it
    does not exist) and how many appointments the patient made in the last hour."""
    provider: Provider | None
    appointment_type: AppointmentType | None
    recent_holds: int


_RECENT_HOLDS = (select(func.count(Appointment.id)).where(
    Appointment.patient_id == bindparam("patient_id"), Appointment.created_at > bindparam("since"))
    .scalar_subquery())
# Built once (bound parameters): a hold's statements are not rebuilt on every request.
_HOLD_TARGET = (select(Provider, _RECENT_HOLDS).where(Provider.id == bindparam("provider_id"))
                .options(joinedload(Provider.types), lazyload(Provider.user), lazyload(Provider.specialty)))


def hold_target(session: Session, *, provider_id: int, type_id: int, patient: Patient,
                now: datetime) -> HoldTarget:
    """The provider (its types joined; its user and specialty left for later, a hold needs
    neither) and the patient's holds in the last hour, in one statement."""
    row = session.execute(_HOLD_TARGET, {"provider_id": provider_id, "patient_id": patient.id,
                                         "since": now - timedelta(hours=1)}).unique().first()
    if row is None:
        return HoldTarget(None, None, 0)
    provider, count = row
    listed = next((t for t in provider.types if t.id == type_id), None)
    return HoldTarget(provider, listed, count)


@lru_cache(maxsize=8)
def _to_release(keep: int):
    """The hold's one look for what it releases (see take_hold), built once per MAX_HOLDS_PER_PATIENT."""
    beyond = (select(Appointment.id).where(Appointment.patient_id == bindparam("patient_id"),
                                           Appointment.status == "held")
              .order_by(Appointment.created_at.desc(), Appointment.id.desc()).offset(keep))
    # Each branch of the OR starts from an indexed column (patient, provider): a BitmapOr, no scan.
    replaced = and_(Appointment.patient_id == bindparam("patient_id"),
                    Appointment.id.in_(beyond.scalar_subquery()))
    in_the_way = and_(Appointment.provider_id == bindparam("provider_id"),
                      Appointment.hold_expires_at <= bindparam("now"),
                      Appointment.blocked_start < bindparam("blocked_end"),
                      Appointment.blocked_end > bindparam("blocked_start"))
    return (select(Appointment, replaced.label("replaced"))
            .where(Appointment.status == "held", or_(replaced, in_the_way))
            .order_by(Appointment.created_at, Appointment.id).with_for_update(skip_locked=True))


def take_hold(session: Session, *, now: datetime, patient: Patient, starts_at: datetime, policy: HoldPolicy,
              actor: Actor, target: HoldTarget | None = None, provider_id: int | None = None,
              type_id: int | None = None) -> Appointment:
    """Hold a slot for checkout; release the patient's previous hold(s).

    ``target`` is what ``hold_target`` read (the view reads it first for its own checks); without
    it, ``provider_id`` and ``type_id`` are read here. The insert is checked by the exclusion
    constraint with no savepoint: a lost race aborts the transaction, which is rolled back here
    (nothing in it could be kept) before the nearest free times are read for SlotTaken."""
    if target is None:
        target = hold_target(session, provider_id=provider_id, type_id=type_id, patient=patient, now=now)
    provider, appointment_type = target.provider, target.appointment_type
    if appointment_type is None and provider is not None and type_id is not None:
        appointment_type = session.get(AppointmentType, type_id)    # exists, but not this provider's
    if provider is None or appointment_type is None:
        raise InvalidSlot(_l("That clinician or visit type does not exist."))
    if target.recent_holds >= policy.holds_per_hour:
        raise TooManyHolds(_l("You have picked many times in the last hour. Please wait a while and try again."))
    _check_slot(session, provider=provider, appointment_type=appointment_type, starts_at=starts_at, now=now)

    ends_at = starts_at + timedelta(minutes=appointment_type.duration_minutes)
    blocked_start, blocked_end = _blocked(starts_at, ends_at, appointment_type)
    expires = min(now + policy.ttl, starts_at - policy.release_before_start)
    if expires <= now:
        raise InvalidSlot(_l("That time is too close to book now."))
    # One statement finds what this hold releases: the patient's holds beyond
    # MAX_HOLDS_PER_PATIENT - 1 (the newest are kept; the new one makes the count) and expired holds
    # in the new one's way (expired holds never block). Rows locked by someone else (a checkout
    # confirming one, a job releasing it) are skipped, never waited for or overwritten.
    keep = max(0, policy.max_holds_per_patient - 1)
    for old, is_replaced in session.execute(_to_release(keep), {
            "patient_id": patient.id, "provider_id": provider.id, "now": now,
            "blocked_start": blocked_start, "blocked_end": blocked_end}).all():
        if is_replaced:
            release(session, old, actor=actor, now=now, reason="replaced by a new hold")
        else:
            release(session, old, actor=Actor.system("system"), now=now, reason="hold expired", refill=False)
    appointment = Appointment(
        patient_id=patient.id, provider_id=provider.id, type_id=appointment_type.id, status="held",
        starts_at=starts_at, ends_at=ends_at, blocked_start=blocked_start, blocked_end=blocked_end,
        hold_expires_at=expires, price_cents=appointment_type.price_cents,
        payment_timing=appointment_type.payment_timing, modality=appointment_type.modality,
        created_at=now)
    session.add(appointment)
    provider_key, type_key = provider.id, appointment_type.id
    try:
        session.flush()                          # the exclusion constraint speaks here
    except IntegrityError as error:
        if not _is_unique_or_exclusion(error):
            raise
        # The whole transaction is aborted (no savepoint): roll it back, then read the nearest times.
        session.rollback()
        raise SlotTaken(nearest_free(session, provider=session.get(Provider, provider_key),
                                     appointment_type=session.get(AppointmentType, type_key),
                                     around=starts_at, now=now)) from None
    _audit(session, appointment, actor=actor, action="slot.selected", at=now,
           details={"starts_at": starts_at.isoformat(), "hold_expires_at": expires.isoformat()})
    signals.emit(session, signals.SLOT_SELECTED, appointment)
    request(session, "expire_hold", appointment.id, expires)
    return appointment


def release(session: Session, appointment: Appointment, *, actor: Actor, now: datetime,
            reason: str, refill: bool = True) -> bool:
    """held -> released (expired, replaced, or payment gave up). False if already released.
    ``refill=False``: the time is being taken by a new hold in this transaction (no waitlist offer)."""
    try:
        _transition(session, appointment, "release", actor=actor, now=now, reason=reason, refill=refill)
    except Ignored:
        return False
    appointment.hold_expires_at = appointment.hold_expires_at or now
    signals.emit(session, signals.HOLD_RELEASED, appointment, reason)
    return True


def expire_hold(session: Session, appointment: Appointment, *, now: datetime) -> bool:
    """Release a hold whose time is up; a hold still valid (or no longer held) is left alone."""
    if appointment.status != "held" or appointment.hold_expires_at > now:
        return False
    return release(session, appointment, actor=Actor.system("job"), now=now, reason="hold expired")


def expire_due_holds(session: Session, *, now: datetime, limit: int = 500) -> int:
    """The sweeper: release every expired hold (Redis may have lost their jobs)."""
    due = session.scalars(select(Appointment).where(
        Appointment.status == "held", Appointment.hold_expires_at <= now)
        .order_by(Appointment.hold_expires_at).limit(limit).with_for_update(skip_locked=True)).all()
    return sum(expire_hold(session, hold, now=now) for hold in due)


def confirm(session: Session, appointment: Appointment, *, actor: Actor, now: datetime,
            reason: str | None = None) -> None:
    """held|released -> confirmed. The caller (a payment timing) has checked its payment condition.

    A released appointment is taken again only if its time is still free: the
    exclusion constraint decides, and SlotTaken says it went."""
    was = appointment.status
    try:
        with session.begin_nested():
            _transition(session, appointment, "confirm", actor=actor, now=now, reason=reason,
                        details={"from": was})
    except IntegrityError as error:
        if not _is_unique_or_exclusion(error):
            raise
        session.refresh(appointment)
        raise SlotTaken(nearest_free(session, provider=appointment.provider,
                                     appointment_type=appointment.type, around=appointment.starts_at,
                                     now=now)) from None
    appointment.hold_expires_at = None
    appointment.confirmed_at = now
    appointment.telehealth_room = appointment.telehealth_room or (
        secrets.token_urlsafe(16) if appointment.modality == "telehealth" else None)
    links.void_for_appointment(session, appointment, now=now)     # its one-click links back to checkout
    signals.emit(session, signals.BOOKING_CONFIRMED, appointment)


def _cancel_deadline_ok(appointment: Appointment, now: datetime) -> None:
    if appointment.starts_at <= now:
        raise BookingRuleError(_l("This visit has already started; call the clinic to change it."))


def cancel(session: Session, appointment: Appointment, *, actor: Actor, now: datetime, reason: str,
           by_user_id: int | None) -> None:
    """held|confirmed -> canceled, with the reason and who did it (any time before the start)."""
    reason = (reason or "").strip()
    if not reason:
        raise BookingRuleError(_l("Please give a reason for canceling."))
    _cancel_deadline_ok(appointment, now)
    _transition(session, appointment, "cancel", actor=actor, now=now, reason=reason,
                details={"within_cancellation_window": within_cancellation_window(appointment, now)})
    appointment.cancel_reason = reason
    appointment.canceled_by_id = by_user_id
    appointment.canceled_at = now
    signals.emit(session, signals.BOOKING_CANCELED, appointment, reason)


def within_cancellation_window(appointment: Appointment, now: datetime) -> bool:
    """True when it is too late for a free cancellation or a reschedule."""
    return now > appointment.starts_at - timedelta(hours=appointment.type.cancellation_window_hours)


def reschedule(session: Session, appointment: Appointment, *, actor: Actor, now: datetime,
               new_starts_at: datetime) -> None:
    """Move a confirmed booking in place (same row, same payment); the constraint checks it."""
    if appointment.status != "confirmed":
        raise BookingRuleError(_l("Only a confirmed booking can be rescheduled."))
    if within_cancellation_window(appointment, now):
        raise BookingRuleError(_l("It is too late to reschedule online; please call the clinic."))
    appointment_type = appointment.type
    _check_slot(session, provider=appointment.provider, appointment_type=appointment_type,
                starts_at=new_starts_at, now=now, exclude_appointment_id=appointment.id)
    old_start, old_end = appointment.starts_at, appointment.ends_at
    ends_at = new_starts_at + timedelta(minutes=appointment_type.duration_minutes)
    blocked_start, blocked_end = _blocked(new_starts_at, ends_at, appointment_type)
    _release_expired_overlapping(session, provider_id=appointment.provider_id, blocked_start=blocked_start,
                                 blocked_end=blocked_end, now=now)
    try:
        with session.begin_nested():
            appointment.starts_at, appointment.ends_at = new_starts_at, ends_at
            appointment.blocked_start, appointment.blocked_end = blocked_start, blocked_end
            session.flush()
    except IntegrityError as error:
        if not _is_unique_or_exclusion(error):
            raise
        session.refresh(appointment)
        raise SlotTaken(nearest_free(session, provider=appointment.provider, appointment_type=appointment_type,
                                     around=new_starts_at, now=now,
                                     exclude_appointment_id=appointment.id)) from None
    _audit(session, appointment, actor=actor, action="booking.rescheduled", at=now,
           details={"old_starts_at": old_start.isoformat(), "old_ends_at": old_end.isoformat(),
                    "new_starts_at": new_starts_at.isoformat(), "new_ends_at": ends_at.isoformat()})
    from app.services import waitlist            # the time it left is free: offered to waiting patients
    waitlist.slot_freed(session, appointment, now=now, starts_at=old_start)
    signals.emit(session, signals.BOOKING_RESCHEDULED, appointment)


def mark(session: Session, appointment: Appointment, action: str, *, actor: Actor, now: datetime) -> None:
    """The provider's visit states: check_in, complete, no_show."""
    if action not in ("check_in", "complete", "no_show"):
        raise BookingRuleError("Unknown visit action.")
    if action == "no_show" and now < appointment.starts_at:
        raise BookingRuleError("A no-show can be recorded only after the start time.")
    _transition(session, appointment, action, actor=actor, now=now)
