"""Loading what the availability engine needs, in a fixed number of queries.

``load_schedules`` issues the same four statements (providers, rules,
exceptions, blocking appointments) whether it loads one provider or a hundred,
then hands plain values to the pure engine in ``app.services.availability``.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from app.models import (Appointment, AppointmentType, AvailabilityException, AvailabilityRule, Provider,
                        Specialty)
from app.models.appointment import BLOCKING
from app.services import availability
# _make_interval: Interval(start, end) for the rows loaded here, without the frozen dataclass's __init__.
from app.services.availability import ProviderSchedule, Slot, SlotType, WeeklyRule, _make_interval

UTC = timezone.utc


def slot_type(appointment_type: AppointmentType) -> SlotType:
    return SlotType(
        id=appointment_type.id,
        duration=timedelta(minutes=appointment_type.duration_minutes),
        buffer_before=timedelta(minutes=appointment_type.buffer_before_minutes),
        buffer_after=timedelta(minutes=appointment_type.buffer_after_minutes),
        min_notice=timedelta(minutes=appointment_type.min_notice_minutes),
        horizon=timedelta(days=appointment_type.horizon_days),
        interval=timedelta(minutes=appointment_type.interval_minutes),
    )


def blocking_clause(now: datetime):
    """Appointments that block time: held (and not yet expired), confirmed, checked in.

    An expired hold is not counted as busy here; taking an overlapping slot
    releases it in the same transaction (booking.take_hold)."""
    return and_(
        Appointment.status.in_(BLOCKING),
        or_(Appointment.status != "held", Appointment.hold_expires_at > now),
    )


@dataclass
class LoadedProvider:
    provider: Provider
    schedule: ProviderSchedule


def provider_query(*, specialty_id: int | None = None, type_id: int | None = None,
                   modality: str | None = None, provider_ids: list[int] | None = None):
    query = (select(Provider).where(Provider.is_active.is_(True))
             .options(selectinload(Provider.types)).order_by(Provider.id))
    if provider_ids is not None:
        query = query.where(Provider.id.in_(provider_ids))
    if specialty_id:
        query = query.where(Provider.specialty_id == specialty_id)
    if modality == "telehealth":
        query = query.where(Provider.offers_telehealth.is_(True))
    elif modality == "in_person":
        query = query.where(Provider.offers_in_person.is_(True))
    if type_id:
        query = query.where(Provider.types.any(AppointmentType.id == type_id))
    return query


def load_schedules(session: Session, providers: list[Provider], *, now: datetime,
                   window_start: datetime, window_end: datetime,
                   exclude_appointment_id: int | None = None) -> list[LoadedProvider]:
    """Schedules of the given providers for [window_start, window_end]: three queries for any number."""
    if not providers:
        return []
    ids = [p.id for p in providers]
    rules = defaultdict(list)
    # Plain column rows, not ORM objects: this runs for every provider on every search.
    for provider_id, weekday, start, end, type_id in session.execute(
            select(AvailabilityRule.provider_id, AvailabilityRule.weekday, AvailabilityRule.start_time,
                   AvailabilityRule.end_time, AvailabilityRule.type_id)
            .where(AvailabilityRule.provider_id.in_(ids))):
        rules[provider_id].append(WeeklyRule(weekday, start, end, type_id))

    # Exceptions are local ranges; a day of slack either side covers any UTC offset.
    slack = timedelta(days=1)
    exceptions = defaultdict(list)
    zones = {p.id: ZoneInfo(p.timezone) for p in providers}
    for provider_id, starts_local, ends_local in session.execute(
            select(AvailabilityException.provider_id, AvailabilityException.starts_local,
                   AvailabilityException.ends_local).where(
                AvailabilityException.provider_id.in_(ids),
                AvailabilityException.ends_local > (window_start - slack).replace(tzinfo=None),
                AvailabilityException.starts_local < (window_end + slack).replace(tzinfo=None))):
        tz = zones[provider_id]
        exceptions[provider_id].append(_make_interval(starts_local.replace(tzinfo=tz).astimezone(UTC),
                                                      ends_local.replace(tzinfo=tz).astimezone(UTC)))

    busy = defaultdict(list)
    query = select(Appointment.provider_id, Appointment.blocked_start, Appointment.blocked_end).where(
        Appointment.provider_id.in_(ids), blocking_clause(now),
        Appointment.blocked_end > window_start - slack, Appointment.blocked_start < window_end + slack)
    if exclude_appointment_id is not None:
        query = query.where(Appointment.id != exclude_appointment_id)
    for provider_id, start, end in session.execute(query):
        busy[provider_id].append(_make_interval(start, end))

    return [LoadedProvider(p, ProviderSchedule(p.id, p.timezone, tuple(rules[p.id]),
                                               tuple(exceptions[p.id]), tuple(busy[p.id])))
            for p in providers]


@dataclass
class SearchResult:
    provider: Provider
    slots: list[Slot]


def search(session: Session, *, now: datetime, appointment_type: AppointmentType,
           specialty_id: int | None = None, modality: str | None = None, on_date: date | None = None,
           viewer_tz: str = "UTC", days: int = 7, per_provider: int = 6) -> list[SearchResult]:
    """Providers offering the type, each with its next open slots (from ``on_date`` in the viewer's zone)."""
    providers = [p for p in session.scalars(provider_query(
        specialty_id=specialty_id, type_id=appointment_type.id, modality=modality or appointment_type.modality))
        if p.offers(appointment_type)]
    start = now
    if on_date is not None:
        start = max(now, datetime.combine(on_date, datetime.min.time(), ZoneInfo(viewer_tz)).astimezone(
            UTC))
    end = start + timedelta(days=days)
    loaded = load_schedules(session, providers, now=now, window_start=start, window_end=end)
    spec = slot_type(appointment_type)
    by_provider = availability.slots_for_many([lp.schedule for lp in loaded], spec, now=now,
                                              start=start, end=end,
                                              limit=per_provider if per_provider >= 0 else None)
    results = [SearchResult(lp.provider, by_provider.get(lp.provider.id, [])[:per_provider]) for lp in loaded]
    # Soonest first; providers with nothing open in the window last.
    far = datetime.max.replace(tzinfo=UTC)
    results.sort(key=lambda r: (r.slots[0].starts_at if r.slots else far, r.provider.id))
    return results


def provider_slots(session: Session, *, provider: Provider, appointment_type: AppointmentType,
                   now: datetime, start: datetime | None = None, days: int = 7) -> list[Slot]:
    start = max(start or now, now)
    end = start + timedelta(days=days)
    [loaded] = load_schedules(session, [provider], now=now, window_start=start, window_end=end)
    return availability.slots_for(loaded.schedule, slot_type(appointment_type), now=now, start=start, end=end)


def specialties(session: Session) -> list[Specialty]:
    return list(session.scalars(select(Specialty).order_by(Specialty.name)))


# Payment timings a patient can complete online: a deposit paid at booking, a card saved for a charge
# after the visit (app.services.card_setup), or hybrid (issue 15): intake first, then the estimate's
# deposit with the card kept for the balance (app.services.hybrid_deposit). A hybrid hold without an
# estimate cannot be paid: checkout sends the patient to intake. Timings not listed here are not
# offered online (a patient must never reach a booking that cannot be finished).
ONLINE_TIMINGS = ("deposit_to_book", "post_visit", "hybrid")


def bookable_types(session: Session) -> list[AppointmentType]:
    return list(session.scalars(select(AppointmentType).where(
        AppointmentType.is_active.is_(True), AppointmentType.payment_timing.in_(ONLINE_TIMINGS))
        .order_by(AppointmentType.name)))
