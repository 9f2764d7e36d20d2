"""The waitlist (issue 17): freed slots offered to waiting patients, in turn.

- ``join`` / ``leave``: a patient's entry (a provider or a specialty, a type, days and times).
- ``after_transition`` is called by ``booking._transition`` (the appointment's one writer of
  status), in the same transaction: a cancel or a release frees the slot (``slot_freed``), a
  confirm of a hold that came from an offer marks the slot refilled. ``booking.reschedule`` calls
  ``slot_freed`` for the time it left.
- ``offer_next`` offers a free slot to the first matching active entries (oldest first) that have
  not been offered it yet, WAITLIST_OFFER_FANOUT at a time: an offer row, a single-use expiring
  link (app/services/links.py, purpose ``waitlist_offer``) and a queued message, all in the
  caller's transaction; the message leaves after the commit (the notifications outbox).
- ``claim`` is the patient's tap: it takes an ordinary hold on the slot (``booking.take_hold``; the
  exclusion constraint decides between two taps) and the normal checkout follows.
- ``expire_due_offers`` (the sweep, and a job at each offer's expiry): an offer not taken in
  time expires and the next patient is offered the slot — in the same transaction, so a process
  that dies anywhere leaves either nothing done or everything done (and the message row queued).

No function here commits. Messages say only the clinic, the time and a link (no provider name,
no specialty, no type).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from app.models import Appointment, AppointmentType, LinkToken, Patient, Provider, Specialty
from app.models.state import Ignored
from app.models.waitlist import ALL_DAYS, WaitlistEntry, WaitlistOffer
from app.services import DomainError, audit, availability, links, notifications
from app.services.audit import Actor
from app.services.unit_of_work import request

PURPOSE = "waitlist_offer"
TEMPLATE = "waitlist_offer"
MAX_ACTIVE_ENTRIES = 10
MAX_WINDOW_DAYS = 120


class WaitlistError(DomainError):
    """The entry cannot be made as asked (the message says why, for the patient)."""


class OfferGone(DomainError):
    """The offer cannot be taken: ``kind`` says why (tampered, expired, used, taken, ended, busy)."""

    MESSAGES = {
        "tampered": _l("This link is not valid."),
        "expired": _l("This offer has expired, and the time was offered to the next patient. "
                      "You are still on the waitlist."),
        "used": _l("This offer has already been used."),
        "taken": _l("Sorry, that time was just taken by someone else. You are still on the waitlist."),
        "ended": _l("This waitlist entry has ended."),
        "busy": _l("You have picked many times in the last hour. Please wait a while and try again."),
    }

    def __init__(self, kind: str, offer: WaitlistOffer | None = None):
        super().__init__(str(self.MESSAGES[kind]))
        self.kind, self.offer = kind, offer


@dataclass(frozen=True)
class OfferPolicy:
    ttl: timedelta                      # WAITLIST_OFFER_TTL: how long an offer waits for its tap
    fanout: int                         # WAITLIST_OFFER_FANOUT: patients offered one slot at once
    release_before_start: timedelta     # RELEASE_BEFORE_START: no offer closer to the start than this
    secret: str
    base_url: str

    @classmethod
    def from_settings(cls, settings) -> "OfferPolicy":
        return cls(settings.WAITLIST_OFFER_TTL, max(1, settings.WAITLIST_OFFER_FANOUT),
                   settings.RELEASE_BEFORE_START, settings.SECRET_KEY, settings.PUBLIC_BASE_URL)


def current_policy() -> OfferPolicy:
    from flask import current_app

    return OfferPolicy.from_settings(current_app.config["SETTINGS"])


def _audit_entry(session: Session, entry: WaitlistEntry, *, actor: Actor, action: str, now: datetime,
                 details: dict | None = None) -> None:
    audit.record(session, actor=actor, action=action, patient_id=entry.patient_id,
                 details={"entry_id": entry.id, "provider_id": entry.provider_id,
                          "specialty_id": entry.specialty_id, "type_id": entry.type_id,
                          "status": entry.status, "at": now.isoformat(), **(details or {})})


def _audit_offer(session: Session, offer: WaitlistOffer, *, actor: Actor, action: str, now: datetime,
                 details: dict | None = None) -> None:
    audit.record(session, actor=actor, action=action, patient_id=offer.patient_id,
                 appointment_id=offer.hold_id,
                 details={"offer_id": offer.id, "entry_id": offer.entry_id, "provider_id": offer.provider_id,
                          "type_id": offer.type_id, "starts_at": offer.starts_at.isoformat(),
                          "status": offer.status, "at": now.isoformat(), **(details or {})})


# -- entries -------------------------------------------------------------------------------------

def join(session: Session, *, patient: Patient, type_id: int, provider_id: int | None, specialty_id: int | None,
         first_day: date, last_day: date, weekdays: int, earliest: time, latest: time, timezone: str,
         now: datetime, actor: Actor) -> WaitlistEntry:
    """Put the patient on the waitlist (a provider, or any provider of a specialty)."""
    appointment_type = session.get(AppointmentType, type_id)
    if appointment_type is None or not appointment_type.is_active:
        raise WaitlistError(_l("Choose a visit type from the list."))
    if provider_id is not None:
        provider = session.get(Provider, provider_id)
        if provider is None or not provider.is_active or not provider.offers(appointment_type):
            raise WaitlistError(_l("This clinician does not offer that kind of visit."))
        specialty_id = None
    elif specialty_id is None or session.get(Specialty, specialty_id) is None:
        raise WaitlistError(_l("Choose a clinician or a specialty."))
    today = now.astimezone(ZoneInfo(timezone)).date()
    if first_day < today:
        raise WaitlistError(_l("The first day cannot be in the past."))
    if last_day < first_day:
        raise WaitlistError(_l("The last day must be on or after the first day."))
    if (last_day - first_day).days > MAX_WINDOW_DAYS:
        raise WaitlistError(_l("Please choose at most %(days)s days.", days=MAX_WINDOW_DAYS))
    if not (0 < weekdays <= ALL_DAYS):
        raise WaitlistError(_l("Choose at least one day of the week."))
    if latest <= earliest:
        raise WaitlistError(_l("The latest time must be after the earliest time."))
    active = session.scalar(select(func.count(WaitlistEntry.id)).where(
        WaitlistEntry.patient_id == patient.id, WaitlistEntry.status == "active"))
    if active >= MAX_ACTIVE_ENTRIES:
        raise WaitlistError(_l("You are already on the waitlist %(count)s times. Leave an entry first.",
                               count=MAX_ACTIVE_ENTRIES))
    entry = WaitlistEntry(patient_id=patient.id, provider_id=provider_id, specialty_id=specialty_id,
                          type_id=type_id, first_day=first_day, last_day=last_day, weekdays=weekdays,
                          earliest=earliest, latest=latest, timezone=timezone, status="active", created_at=now)
    session.add(entry)
    session.flush()
    _audit_entry(session, entry, actor=actor, action="waitlist.joined", now=now,
                 details={"first_day": first_day.isoformat(), "last_day": last_day.isoformat()})
    return entry


def _end_entry(session: Session, entry: WaitlistEntry, action: str, *, actor: Actor, now: datetime) -> bool:
    try:
        entry.transition(action, now=now)
    except Ignored:
        return False
    session.flush()
    _audit_entry(session, entry, actor=actor, action=f"waitlist.{entry.status}", now=now)
    for offer in session.scalars(select(WaitlistOffer).where(
            WaitlistOffer.entry_id == entry.id, WaitlistOffer.status == "offered").with_for_update()):
        _withdraw(session, offer, now=now, reason=f"entry {entry.status}")
    return True


def leave(session: Session, entry: WaitlistEntry, *, actor: Actor, now: datetime) -> bool:
    """The patient leaves the waitlist; offers still open are withdrawn. False if it had ended."""
    if entry.status != "active":
        return False
    return _end_entry(session, entry, "leave", actor=actor, now=now)


def entries_for(session: Session, patient_id: int) -> list[WaitlistEntry]:
    """The patient's active entries, oldest first."""
    return list(session.scalars(select(WaitlistEntry).where(
        WaitlistEntry.patient_id == patient_id, WaitlistEntry.status == "active")
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)))


def open_offers_for(session: Session, patient_id: int, *, now: datetime) -> dict[int, WaitlistOffer]:
    """{entry id: its offer still open} for the patient's list."""
    rows = session.scalars(select(WaitlistOffer).where(
        WaitlistOffer.patient_id == patient_id, WaitlistOffer.status == "offered", WaitlistOffer.expires_at > now))
    return {offer.entry_id: offer for offer in rows}


# -- matching and offering -----------------------------------------------------------------------

def matches(entry: WaitlistEntry, starts_at: datetime, duration_minutes: int) -> bool:
    """The time falls inside the entry's days, weekdays and time of day (the entry's timezone)."""
    local = starts_at.astimezone(ZoneInfo(entry.timezone))
    if not (entry.first_day <= local.date() <= entry.last_day) or not entry.on_weekday(local.weekday()):
        return False
    latest = datetime.combine(local.date(), entry.latest, local.tzinfo)
    return entry.earliest <= local.time() and local + timedelta(minutes=duration_minutes) <= latest


def slot_open(session: Session, *, provider: Provider, appointment_type: AppointmentType, starts_at: datetime,
              now: datetime) -> bool:
    """Would a hold on this time succeed now (as this transaction sees the provider's day)?"""
    from app.services.schedule import load_schedules, slot_type

    if not provider.is_active or not appointment_type.is_active or not provider.offers(appointment_type):
        return False
    day = timedelta(days=1)
    [loaded] = load_schedules(session, [provider], now=now, window_start=starts_at - day, window_end=starts_at + day)
    return availability.is_open(loaded.schedule, slot_type(appointment_type), starts_at, now=now)


def _lock_slot(session: Session, provider_id: int, starts_at: datetime) -> None:
    """Offers of one slot are made one transaction at a time (a cancel and the sweep side by side)."""
    minute = int(starts_at.timestamp() // 60) % (2 ** 31)
    session.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": 0x57A17 + provider_id, "b": minute})


def offer_next(session: Session, *, provider_id: int, starts_at: datetime, now: datetime,
               freed_appointment_id: int | None = None, exclude_patient_id: int | None = None,
               policy: OfferPolicy | None = None) -> list[WaitlistOffer]:
    """Offer the slot to the next matching entries (up to the fanout, counting offers still open)."""
    policy = policy or current_policy()
    latest_offer = starts_at - policy.release_before_start
    if latest_offer <= now:
        return []
    provider = session.get(Provider, provider_id)
    if provider is None or not provider.is_active:
        return []
    _lock_slot(session, provider_id, starts_at)
    still_open = session.scalar(select(func.count(WaitlistOffer.id)).where(
        WaitlistOffer.provider_id == provider_id, WaitlistOffer.starts_at == starts_at,
        WaitlistOffer.status == "offered", WaitlistOffer.expires_at > now))
    room = policy.fanout - still_open
    if room <= 0:
        return []
    type_ids = [t.id for t in provider.types if t.is_active]
    if not type_ids:
        return []
    already = select(WaitlistOffer.id).where(WaitlistOffer.entry_id == WaitlistEntry.id,
                                             WaitlistOffer.provider_id == provider_id,
                                             WaitlistOffer.starts_at == starts_at,
                                             WaitlistOffer.status != "withdrawn")
    busy = select(WaitlistOffer.id).where(WaitlistOffer.entry_id == WaitlistEntry.id,
                                          WaitlistOffer.status == "offered", WaitlistOffer.expires_at > now)
    local_day = starts_at.date()
    query = (select(WaitlistEntry).where(
        WaitlistEntry.status == "active", WaitlistEntry.type_id.in_(type_ids),
        or_(WaitlistEntry.provider_id == provider_id,
            (WaitlistEntry.provider_id.is_(None)) & (WaitlistEntry.specialty_id == provider.specialty_id)),
        WaitlistEntry.first_day <= local_day + timedelta(days=1),
        WaitlistEntry.last_day >= local_day - timedelta(days=1),
        ~already.exists(), ~busy.exists())
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id).limit(200)
        .with_for_update(of=WaitlistEntry, skip_locked=True))
    if exclude_patient_id is not None:
        query = query.where(WaitlistEntry.patient_id != exclude_patient_id)
    made: list[WaitlistOffer] = []
    open_for: dict[int, bool] = {}
    for entry in session.scalars(query).all():
        appointment_type = entry.type
        if not matches(entry, starts_at, appointment_type.duration_minutes):
            continue
        if appointment_type.id not in open_for:
            open_for[appointment_type.id] = slot_open(session, provider=provider, appointment_type=appointment_type,
                                                      starts_at=starts_at, now=now)
        if not open_for[appointment_type.id]:
            continue
        made.append(_offer(session, entry, provider=provider, starts_at=starts_at, now=now, policy=policy,
                           freed_appointment_id=freed_appointment_id))
        if len(made) >= room:
            break
    return made


def _offer(session: Session, entry: WaitlistEntry, *, provider: Provider, starts_at: datetime, now: datetime,
           policy: OfferPolicy, freed_appointment_id: int | None) -> WaitlistOffer:
    expires = min(now + policy.ttl, starts_at - policy.release_before_start)
    offer = WaitlistOffer(entry_id=entry.id, patient_id=entry.patient_id, provider_id=provider.id,
                          type_id=entry.type_id, starts_at=starts_at, freed_appointment_id=freed_appointment_id,
                          status="offered", offered_at=now, expires_at=expires)
    session.add(offer)
    session.flush()
    user = entry.patient.user
    token = links.issue(session, secret=policy.secret, purpose=PURPOSE, user=user, now=now,
                        ttl=expires - now)
    offer.link_id = links.resolve(session, token, secret=policy.secret, purpose=PURPOSE, now=now).id
    session.flush()
    _audit_offer(session, offer, actor=Actor.system("waitlist"), action="waitlist.offered", now=now,
                 details={"expires_at": expires.isoformat(), "freed_appointment_id": freed_appointment_id})
    from app.i18n import message_locale
    from app.services.locale_format import format_local

    by = format_local(expires.astimezone(ZoneInfo(user.timezone)), "%-I:%M %p %Z", message_locale(user))
    notifications.queue(session, dedupe_key=f"{TEMPLATE}:{offer.id}", template=TEMPLATE, user=user,
                        scheduled_for=now,
                        context={"link": f"{policy.base_url.rstrip('/')}/w/{token}", "by": by,
                                 "slot_at": starts_at.isoformat()})
    request(session, "expire_waitlist_offer", offer.id, expires)
    return offer


def slot_freed(session: Session, appointment: Appointment, *, now: datetime, starts_at: datetime | None = None,
               policy: OfferPolicy | None = None) -> list[WaitlistOffer]:
    """A time of ``appointment``'s provider became free (in this transaction): offer it."""
    return offer_next(session, provider_id=appointment.provider_id, starts_at=starts_at or appointment.starts_at,
                      now=now, freed_appointment_id=appointment.id, exclude_patient_id=appointment.patient_id,
                      policy=policy)


def after_transition(session: Session, appointment: Appointment, action: str, *, now: datetime,
                     refill: bool = True) -> None:
    """Called by ``booking._transition`` after each move of an appointment, in its transaction."""
    if action in ("cancel", "release"):
        _hold_ended(session, appointment, now=now)
        if refill:
            slot_freed(session, appointment, now=now)
    elif action == "confirm":
        _booked(session, appointment, now=now)


def _move_offer_of_hold(session: Session, appointment: Appointment, action: str, *, audit_action: str,
                        now: datetime, details: dict | None = None) -> WaitlistOffer | None:
    """Move the offer whose tap took this hold (if any, and if the move applies); audited."""
    offer = session.scalar(select(WaitlistOffer).where(WaitlistOffer.hold_id == appointment.id).with_for_update())
    if offer is None or not offer.can(action):
        return None
    offer.transition(action, now=now)
    session.flush()
    _audit_offer(session, offer, actor=Actor.system("waitlist"), action=audit_action, now=now, details=details)
    return offer


def _hold_ended(session: Session, appointment: Appointment, *, now: datetime) -> None:
    _move_offer_of_hold(session, appointment, "lapse", audit_action="waitlist.offer_lapsed", now=now,
                        details={"appointment_status": appointment.status})


def _booked(session: Session, appointment: Appointment, *, now: datetime) -> None:
    offer = _move_offer_of_hold(session, appointment, "book", audit_action="waitlist.refilled", now=now)
    if offer is None:
        return
    entry = session.get(WaitlistEntry, offer.entry_id, with_for_update=True)
    if entry is not None and entry.status == "active":
        _end_entry(session, entry, "fulfill", actor=Actor.system("waitlist"), now=now)


def _withdraw(session: Session, offer: WaitlistOffer, *, now: datetime, reason: str) -> None:
    if not offer.can("withdraw"):
        return
    offer.transition("withdraw", now=now)
    if offer.link_id is not None:
        session.execute(LinkToken.__table__.update().where(LinkToken.id == offer.link_id, LinkToken.used_at.is_(None))
                        .values(used_at=now))
    session.flush()
    _audit_offer(session, offer, actor=Actor.system("waitlist"), action="waitlist.offer_withdrawn", now=now,
                 details={"reason": reason})


# -- the patient's tap ---------------------------------------------------------------------------

def _offer_for_link(session: Session, link_id, *, lock: bool = False) -> WaitlistOffer | None:
    query = select(WaitlistOffer).where(WaitlistOffer.link_id == link_id)
    if lock:
        query = query.with_for_update()
    return session.scalar(query)


def open_offer(session: Session, token: str, *, now: datetime, policy: OfferPolicy | None = None) -> WaitlistOffer:
    """The offer a link names, still open (for the page a GET shows; uses nothing): OfferGone otherwise."""
    policy = policy or current_policy()
    try:
        link = links.resolve(session, token, secret=policy.secret, purpose=PURPOSE, now=now)
    except links.LinkInvalid as error:
        offer = _offer_for_link(session, error.link.id) if error.link is not None else None
        raise OfferGone(_gone_kind(offer, error.kind), offer) from None
    offer = _offer_for_link(session, link.id)
    if offer is None:
        raise OfferGone("tampered")
    if offer.status != "offered" or offer.expires_at <= now:
        raise OfferGone(_gone_kind(offer, "expired"), offer)
    return offer


def _gone_kind(offer: WaitlistOffer | None, default: str) -> str:
    if offer is None:
        return "tampered" if default == "tampered" else default
    return {"offered": default, "claimed": "used", "booked": "used", "lapsed": "used", "expired": "expired",
            "withdrawn": "taken" if offer.entry.status == "active" else "ended"}[offer.status]


def claim(session: Session, token: str, *, now: datetime, hold_policy, policy: OfferPolicy | None = None
          ) -> Appointment:
    """The patient's tap: a hold on the offered slot (the normal checkout follows).

    The offer row is locked first, so two taps of one link run one after the other (the second finds
    it claimed: OfferGone("used") with the offer, whose hold the caller may show). Two patients
    offered the same slot each hold their own offer; the exclusion constraint on appointments lets
    one hold in: the other's transaction is rolled back whole (take_hold does it), their offer is
    withdrawn and OfferGone("taken") is raised — the caller commits that withdrawal."""
    from app.services import booking

    policy = policy or current_policy()
    try:
        link = links.resolve(session, token, secret=policy.secret, purpose=PURPOSE, now=now)
    except links.LinkInvalid as error:
        offer = _offer_for_link(session, error.link.id) if error.link is not None else None
        raise OfferGone(_gone_kind(offer, error.kind), offer) from None
    offer = _offer_for_link(session, link.id, lock=True)
    if offer is None:
        raise OfferGone("tampered")
    session.refresh(offer)
    if offer.status != "offered" or offer.expires_at <= now:
        raise OfferGone(_gone_kind(offer, "expired"), offer)
    if offer.entry.status != "active":
        raise OfferGone("ended", offer)
    offer_id, user_id = offer.id, link.user_id
    patient = session.get(Patient, offer.patient_id)
    actor = Actor("user", user_id, "patient")
    try:
        hold = booking.take_hold(session, now=now, patient=patient, provider_id=offer.provider_id,
                                 type_id=offer.type_id, starts_at=offer.starts_at, policy=hold_policy, actor=actor)
    except (booking.SlotTaken, booking.InvalidSlot):
        session.rollback()                    # take_hold may have rolled back already; nothing is kept
        offer = session.get(WaitlistOffer, offer_id, with_for_update=True)
        session.refresh(offer)
        _withdraw(session, offer, now=now, reason="slot taken")
        raise OfferGone("taken", offer) from None
    except booking.TooManyHolds:
        session.rollback()
        raise OfferGone("busy", session.get(WaitlistOffer, offer_id)) from None
    offer.hold_id = hold.id
    offer.transition("claim", now=now)
    session.flush()
    links.use(session, link, now=now, hold=hold)
    _audit_offer(session, offer, actor=actor, action="waitlist.claimed", now=now)
    return hold


# -- the sweep -----------------------------------------------------------------------------------

def expire_offer(session: Session, offer: WaitlistOffer, *, now: datetime, policy: OfferPolicy | None = None
                 ) -> list[WaitlistOffer]:
    """An offer whose time ran out: expired, and the slot offered to the next patients. The
    caller holds the offer's lock. Returns the new offers (none when it was not due)."""
    if offer.status != "offered" or offer.expires_at > now:
        return []
    offer.transition("expire", now=now)
    session.flush()
    _audit_offer(session, offer, actor=Actor.system("waitlist"), action="waitlist.offer_expired", now=now)
    return offer_next(session, provider_id=offer.provider_id, starts_at=offer.starts_at, now=now, policy=policy)


def expire_due_offers(session: Session, *, now: datetime, limit: int = 200,
                      policy: OfferPolicy | None = None) -> dict:
    """The sweep's step: expire offers past their time (offering the next patients), and end
    entries whose last day has passed. Safe to run twice: only what is still due moves."""
    due = session.scalars(select(WaitlistOffer).where(
        WaitlistOffer.status == "offered", WaitlistOffer.expires_at <= now)
        .order_by(WaitlistOffer.expires_at, WaitlistOffer.id).limit(limit).with_for_update(skip_locked=True)).all()
    expired = offered = 0
    for offer in due:
        offered += len(expire_offer(session, offer, now=now, policy=policy))
        expired += 1
    ended = 0
    yesterday = (now - timedelta(days=1)).date()      # every timezone's today is on or after this
    for entry in session.scalars(select(WaitlistEntry).where(
            WaitlistEntry.status == "active", WaitlistEntry.last_day < yesterday)
            .limit(limit).with_for_update(skip_locked=True)).all():
        ended += _end_entry(session, entry, "expire", actor=Actor.system("waitlist"), now=now)
    return {"offers_expired": expired, "offers_made": offered, "entries_ended": ended}


# -- staff ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StaffRow:
    entry: WaitlistEntry
    offers: int
    open_offer: WaitlistOffer | None


def for_provider(session: Session, provider: Provider, *, now: datetime) -> list[StaffRow]:
    """The active entries that can be offered this provider's slots: named for them, or for their specialty."""
    entries = session.scalars(select(WaitlistEntry).where(
        WaitlistEntry.status == "active",
        or_(WaitlistEntry.provider_id == provider.id,
            (WaitlistEntry.provider_id.is_(None)) & (WaitlistEntry.specialty_id == provider.specialty_id)))
        .order_by(WaitlistEntry.created_at, WaitlistEntry.id)).all()
    ids = [e.id for e in entries]
    counts = dict(session.execute(select(WaitlistOffer.entry_id, func.count(WaitlistOffer.id))
                                  .where(WaitlistOffer.entry_id.in_(ids)).group_by(WaitlistOffer.entry_id)).all()) \
        if ids else {}
    open_offers = {o.entry_id: o for o in session.scalars(select(WaitlistOffer).where(
        WaitlistOffer.entry_id.in_(ids), WaitlistOffer.status == "offered", WaitlistOffer.expires_at > now))} \
        if ids else {}
    return [StaffRow(e, counts.get(e.id, 0), open_offers.get(e.id)) for e in entries]


def refilled_count(session: Session, *, provider_id: int | None = None, since: datetime | None = None) -> int:
    """Freed slots the waitlist refilled: offers whose hold was booked."""
    query = select(func.count(WaitlistOffer.id)).where(WaitlistOffer.status == "booked")
    if provider_id is not None:
        query = query.where(WaitlistOffer.provider_id == provider_id)
    if since is not None:
        query = query.where(WaitlistOffer.resolved_at >= since)
    return session.scalar(query) or 0
