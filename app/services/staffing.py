"""Staff set-up of the schedule: weekly hours, time off, appointment types,
provider profiles and specialties; and the appointments a provider's day or
week shows.

Every change is audited in the caller's transaction; nothing here commits.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.models import (Appointment, AppointmentType, AvailabilityException, AvailabilityRule, Patient,
                        Provider, Specialty, User)
from app.models.scheduling import EXCEPTION_REASONS, MODALITIES, PAYMENT_TIMINGS
from app.services import DomainError, audit
from app.services.audit import Actor
from app.services.schedule import blocking_clause

UTC = timezone.utc
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class StaffingError(DomainError):
    """A set-up rule said no; ``field`` names the form field the message belongs next to."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# -- money ----------------------------------------------------------------------------------

_DOLLARS = re.compile(r"^\d{1,7}(\.\d{1,2})?$")


def dollars_to_cents(text: str) -> int:
    """'125.50' -> 12550; '$1,200' -> 120000. Raises ValueError with a message for a person."""
    cleaned = (text or "").strip().replace("$", "").replace(",", "")
    if cleaned.startswith("-"):
        raise ValueError("The price cannot be negative.")
    if not _DOLLARS.match(cleaned):
        raise ValueError("Enter a price in dollars, like 125 or 125.50.")
    try:
        return int(Decimal(cleaned) * 100)
    except InvalidOperation:
        raise ValueError("Enter a price in dollars, like 125 or 125.50.") from None


def cents_to_dollars(cents: int | None) -> str:
    if cents is None:
        return ""
    return f"{cents // 100}.{cents % 100:02d}"


# -- providers ------------------------------------------------------------------------------

def provider_for_user(session: Session, user_id: int) -> Provider | None:
    return session.scalar(select(Provider).where(Provider.user_id == user_id))


def providers(session: Session) -> list[Provider]:
    return list(session.scalars(select(Provider).join(Provider.user).order_by(User.full_name)))


def users_without_profile(session: Session) -> list[User]:
    """Users with the provider role that have no Provider profile yet."""
    return list(session.scalars(
        select(User).where(User.role == "provider", ~select(Provider.id).where(
            Provider.user_id == User.id).exists()).order_by(User.full_name)))


def _types_by_ids(session: Session, type_ids: list[int]) -> list[AppointmentType]:
    if not type_ids:
        return []
    found = list(session.scalars(select(AppointmentType).where(AppointmentType.id.in_(type_ids))
                                 .order_by(AppointmentType.id)))
    if len(found) != len(set(type_ids)):
        raise StaffingError("Choose visit types from the list.", "type_ids")
    return found


def _check_profile(session: Session, *, specialty_id: int, timezone_name: str, offers_telehealth: bool,
                   offers_in_person: bool) -> None:
    if session.get(Specialty, specialty_id) is None:
        raise StaffingError("Choose a specialty from the list.", "specialty_id")
    try:
        ZoneInfo(timezone_name)
    except Exception:
        raise StaffingError("Choose a timezone from the list, like America/New_York.", "timezone") from None
    if not (offers_telehealth or offers_in_person):
        raise StaffingError("Offer telehealth, in-person visits, or both.", "offers_in_person")


def _check_npi(session: Session, npi: str | None, provider_id: int | None) -> str | None:
    """The NPI as stored (10 digits, valid check digit) or None; one clinician per NPI."""
    from app.services import identifiers

    try:
        npi = identifiers.normalize_npi(npi)
    except identifiers.InvalidIdentifier as error:
        raise StaffingError(str(error), "npi") from None
    if npi is not None and session.scalar(select(Provider.id).where(
            Provider.npi == npi, Provider.id != (provider_id or 0))) is not None:
        raise StaffingError("Another provider already has this NPI.", "npi")
    return npi


def create_provider(session: Session, *, actor: Actor, user_id: int, specialty_id: int, timezone_name: str,
                    bio: str, offers_telehealth: bool, offers_in_person: bool,
                    type_ids: list[int], npi: str | None = None) -> Provider:
    user = session.get(User, user_id)
    if user is None or user.role != "provider":
        raise StaffingError("Choose a staff member with the provider role.", "user_id")
    if provider_for_user(session, user_id) is not None:
        raise StaffingError("This provider already has a profile.", "user_id")
    _check_profile(session, specialty_id=specialty_id, timezone_name=timezone_name,
                   offers_telehealth=offers_telehealth, offers_in_person=offers_in_person)
    npi = _check_npi(session, npi, None)
    provider = Provider(user_id=user_id, specialty_id=specialty_id, timezone=timezone_name, bio=bio or "",
                        offers_telehealth=offers_telehealth, offers_in_person=offers_in_person, npi=npi)
    provider.types = _types_by_ids(session, type_ids)
    session.add(provider)
    session.flush()
    audit.record(session, actor=actor, action="provider.created", subject_user_id=user_id,
                 details={"provider_id": provider.id, "specialty_id": specialty_id,
                          "timezone": timezone_name, "type_ids": sorted(type_ids), "npi": npi})
    return provider


def update_provider(session: Session, provider: Provider, *, actor: Actor, specialty_id: int,
                    timezone_name: str, bio: str, offers_telehealth: bool, offers_in_person: bool,
                    type_ids: list[int], is_active: bool, npi=...) -> None:
    """``npi``: unchanged when not passed (``...``); empty clears it."""
    _check_profile(session, specialty_id=specialty_id, timezone_name=timezone_name,
                   offers_telehealth=offers_telehealth, offers_in_person=offers_in_person)
    if npi is not ...:
        provider.npi = _check_npi(session, npi, provider.id)
    provider.types = _types_by_ids(session, type_ids)
    provider.specialty_id = specialty_id
    provider.timezone = timezone_name
    provider.bio = bio or ""
    provider.offers_telehealth = offers_telehealth
    provider.offers_in_person = offers_in_person
    provider.is_active = is_active
    session.flush()
    audit.record(session, actor=actor, action="provider.updated", subject_user_id=provider.user_id,
                 details={"provider_id": provider.id, "specialty_id": specialty_id,
                          "timezone": timezone_name, "type_ids": sorted(type_ids), "is_active": is_active,
                          "npi": provider.npi})


# -- specialties ----------------------------------------------------------------------------

def specialties(session: Session) -> list[Specialty]:
    return list(session.scalars(select(Specialty).order_by(Specialty.name)))


def add_specialty(session: Session, *, actor: Actor, name: str, is_sensitive: bool) -> Specialty:
    name = (name or "").strip()
    if not name:
        raise StaffingError("Enter a name.", "name")
    taken = session.scalar(select(Specialty.id).where(Specialty.name.ilike(name)))
    if taken is not None:
        raise StaffingError("A specialty with this name already exists.", "name")
    specialty = Specialty(name=name, is_sensitive=is_sensitive)
    session.add(specialty)
    session.flush()
    audit.record(session, actor=actor, action="specialty.created",
                 details={"specialty_id": specialty.id, "is_sensitive": is_sensitive})
    return specialty


# -- appointment types ----------------------------------------------------------------------

TYPE_FIELDS = ("name", "duration_minutes", "buffer_before_minutes", "buffer_after_minutes", "price_cents",
               "payment_timing", "modality", "min_notice_minutes", "horizon_days",
               "cancellation_window_hours", "slot_interval_minutes", "is_active")


def appointment_types(session: Session) -> list[AppointmentType]:
    return list(session.scalars(select(AppointmentType).order_by(AppointmentType.is_active.desc(),
                                                                 AppointmentType.name)))


def _check_type(values: dict) -> None:
    if not (values.get("name") or "").strip():
        raise StaffingError("Enter a name.", "name")
    if values["duration_minutes"] is None or values["duration_minutes"] <= 0:
        raise StaffingError("The visit must last at least one minute.", "duration_minutes")
    for name in ("buffer_before_minutes", "buffer_after_minutes", "min_notice_minutes",
                 "cancellation_window_hours"):
        if values[name] is None or values[name] < 0:
            raise StaffingError("Enter 0 or more.", name)
    if values["price_cents"] is None or values["price_cents"] < 0:
        raise StaffingError("The price cannot be negative.", "price")
    if values["horizon_days"] is None or values["horizon_days"] <= 0:
        raise StaffingError("Enter at least 1 day.", "horizon_days")
    if values["slot_interval_minutes"] is not None and values["slot_interval_minutes"] <= 0:
        raise StaffingError("Enter at least 1 minute, or leave it empty.", "slot_interval_minutes")
    if values["payment_timing"] not in PAYMENT_TIMINGS:
        raise StaffingError("Choose a payment timing.", "payment_timing")
    if values["modality"] not in MODALITIES:
        raise StaffingError("Choose telehealth or in person.", "modality")


def save_type(session: Session, *, actor: Actor, appointment_type: AppointmentType | None = None,
              **values) -> AppointmentType:
    """Create a type (``appointment_type`` None) or update one; every field of TYPE_FIELDS is given."""
    missing = set(TYPE_FIELDS) - set(values)
    if missing:
        raise TypeError(f"save_type: missing {sorted(missing)}")
    values["name"] = values["name"].strip()
    _check_type(values)
    created = appointment_type is None
    if created:
        appointment_type = AppointmentType()
        session.add(appointment_type)
    before = {name: getattr(appointment_type, name) for name in TYPE_FIELDS} if not created else {}
    for name in TYPE_FIELDS:
        setattr(appointment_type, name, values[name])
    session.flush()
    changed = {name: values[name] for name in TYPE_FIELDS if created or before[name] != values[name]}
    audit.record(session, actor=actor, action="appointment_type.created" if created else "appointment_type.updated",
                 details={"type_id": appointment_type.id, "changed": changed})
    return appointment_type


# -- weekly hours ---------------------------------------------------------------------------

def rules_of(session: Session, provider: Provider) -> list[AvailabilityRule]:
    return list(session.scalars(select(AvailabilityRule).where(AvailabilityRule.provider_id == provider.id)
                                .order_by(AvailabilityRule.weekday, AvailabilityRule.start_time)))


def add_rule(session: Session, provider: Provider, *, actor: Actor, weekday: int, start: time, end: time,
             type_id: int | None) -> AvailabilityRule:
    if not 0 <= weekday <= 6:
        raise StaffingError("Choose a day of the week.", "weekday")
    if end <= start:
        raise StaffingError("The end must be after the start.", "end")
    if type_id is not None and type_id not in {t.id for t in provider.types}:
        raise StaffingError("Choose one of the visit types this provider offers.", "type_id")
    rule = AvailabilityRule(provider_id=provider.id, weekday=weekday, start_time=start, end_time=end,
                            type_id=type_id)
    session.add(rule)
    session.flush()
    audit.record(session, actor=actor, action="availability.rule_added", subject_user_id=provider.user_id,
                 details={"provider_id": provider.id, "rule_id": rule.id, "weekday": weekday,
                          "start": start.isoformat(), "end": end.isoformat(), "type_id": type_id})
    return rule


def delete_rule(session: Session, provider: Provider, *, actor: Actor, rule_id: int) -> bool:
    rule = session.get(AvailabilityRule, rule_id)
    if rule is None or rule.provider_id != provider.id:
        return False
    session.delete(rule)
    session.flush()
    audit.record(session, actor=actor, action="availability.rule_deleted", subject_user_id=provider.user_id,
                 details={"provider_id": provider.id, "rule_id": rule_id, "weekday": rule.weekday,
                          "start": rule.start_time.isoformat(), "end": rule.end_time.isoformat(),
                          "type_id": rule.type_id})
    return True


# -- time off -------------------------------------------------------------------------------

def to_utc(local: datetime, tz: str) -> datetime:
    """A naive wall-clock time in the zone as a UTC instant."""
    return local.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


def exceptions_of(session: Session, provider: Provider) -> list[AvailabilityException]:
    return list(session.scalars(select(AvailabilityException)
                                .where(AvailabilityException.provider_id == provider.id)
                                .order_by(AvailabilityException.starts_local)))


def blocking_overlaps(session: Session, provider: Provider, *, starts_local: datetime, ends_local: datetime,
                      now: datetime) -> list[Appointment]:
    """Held (unexpired), confirmed and checked-in appointments whose visit falls in the local range."""
    start, end = to_utc(starts_local, provider.timezone), to_utc(ends_local, provider.timezone)
    return list(session.scalars(
        select(Appointment).where(Appointment.provider_id == provider.id, blocking_clause(now),
                                  Appointment.starts_at < end, Appointment.ends_at > start)
        .options(selectinload(Appointment.patient).selectinload(Patient.user),
                 selectinload(Appointment.type))
        .order_by(Appointment.starts_at)))


@dataclass
class ExceptionAdded:
    exception: AvailabilityException
    conflicts: list[Appointment]     # bookings inside it: staff must reschedule or cancel them


def add_exception(session: Session, provider: Provider, *, actor: Actor, starts_local: datetime,
                  ends_local: datetime, reason: str, note: str, now: datetime) -> ExceptionAdded:
    """Save time off; the bookings it covers are returned (and audited), never touched."""
    if ends_local <= starts_local:
        raise StaffingError("The end must be after the start.", "ends_local")
    if reason not in EXCEPTION_REASONS:
        raise StaffingError("Choose a reason.", "reason")
    note = (note or "").strip()
    if len(note) > 200:
        raise StaffingError("Keep the note under 200 characters.", "note")
    exception = AvailabilityException(provider_id=provider.id, starts_local=starts_local,
                                      ends_local=ends_local, reason=reason, note=note)
    session.add(exception)
    session.flush()
    conflicts = blocking_overlaps(session, provider, starts_local=starts_local, ends_local=ends_local, now=now)
    audit.record(session, actor=actor, action="availability.exception_added",
                 subject_user_id=provider.user_id,
                 details={"provider_id": provider.id, "exception_id": exception.id,
                          "starts_local": starts_local.isoformat(), "ends_local": ends_local.isoformat(),
                          "timezone": provider.timezone, "reason": reason,
                          "conflicting_appointment_ids": [a.id for a in conflicts]})
    return ExceptionAdded(exception, conflicts)


def delete_exception(session: Session, provider: Provider, *, actor: Actor, exception_id: int) -> bool:
    exception = session.get(AvailabilityException, exception_id)
    if exception is None or exception.provider_id != provider.id:
        return False
    session.delete(exception)
    session.flush()
    audit.record(session, actor=actor, action="availability.exception_deleted",
                 subject_user_id=provider.user_id,
                 details={"provider_id": provider.id, "exception_id": exception_id,
                          "starts_local": exception.starts_local.isoformat(),
                          "ends_local": exception.ends_local.isoformat(), "reason": exception.reason})
    return True


# -- the day and week views -----------------------------------------------------------------

def local_today(provider: Provider, now: datetime) -> date:
    return now.astimezone(ZoneInfo(provider.timezone)).date()


def local_range(provider: Provider, first: date, days: int) -> tuple[datetime, datetime]:
    """UTC instants of local midnight on ``first`` and ``days`` days later (DST-correct)."""
    tz = ZoneInfo(provider.timezone)
    start = datetime.combine(first, time(0), tz).astimezone(UTC)
    end = datetime.combine(first + timedelta(days=days), time(0), tz).astimezone(UTC)
    return start, end


def appointments_between(session: Session, provider: Provider, *, start: datetime,
                         end: datetime) -> list[Appointment]:
    """The provider's appointments starting in [start, end); released holds left out."""
    return list(session.scalars(
        select(Appointment).where(Appointment.provider_id == provider.id, Appointment.status != "released",
                                  Appointment.starts_at >= start, Appointment.starts_at < end)
        .options(selectinload(Appointment.patient).selectinload(Patient.user),
                 selectinload(Appointment.type))
        .order_by(Appointment.starts_at, Appointment.id)))
