"""Waitlist fixtures: a provider with weekday hours, a confirmed booking to cancel, waitlisted patients."""
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone

import pytest

# The clock fixture: Monday 2026-12-07 08:00 New York. The slot: Tuesday 10:00 New York.
SLOT = datetime(2026, 12, 8, 15, 0, tzinfo=timezone.utc)


@dataclass
class Clinic:
    provider: object
    visit: object
    specialty: object


@pytest.fixture
def offer_settings(app, monkeypatch):
    """WAITLIST_OFFER_TTL 10 minutes, one patient offered at a time (the defaults' shape)."""
    settings = replace(app.config["SETTINGS"], WAITLIST_OFFER_TTL=timedelta(minutes=10), WAITLIST_OFFER_FANOUT=1)
    monkeypatch.setitem(app.config, "SETTINGS", settings)
    return settings


@pytest.fixture
def wl_clinic(db, factories, clinic):
    specialty = factories.specialty("General practice")
    visit = factories.appointment_type(name="Video consult", price_cents=12500)
    provider = factories.provider(types=[visit], specialty=specialty, full_name="Dr. Wendy List")
    return Clinic(provider, visit, specialty)


def book(db, clock, policy, patient, clinic, starts_at=SLOT):
    """A confirmed booking of ``patient`` at ``starts_at``."""
    from app.services import booking
    from app.services.audit import Actor

    hold = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=clinic.provider.id,
                             type_id=clinic.visit.id, starts_at=starts_at, policy=policy, actor=Actor.system("test"))
    booking.confirm(db, hold, actor=Actor.system("test"), now=clock.now())
    db.commit()
    return hold


def wait(db, clock, patient, clinic, *, provider=True, first_day=date(2026, 12, 7), last_day=date(2026, 12, 20),
         weekdays=0b1111111, earliest=time(8), latest=time(18)):
    from app.services import waitlist
    from app.services.audit import Actor

    entry = waitlist.join(db, patient=patient, type_id=clinic.visit.id,
                          provider_id=clinic.provider.id if provider else None,
                          specialty_id=None if provider else clinic.specialty.id, first_day=first_day,
                          last_day=last_day, weekdays=weekdays, earliest=earliest, latest=latest,
                          timezone="America/New_York", now=clock.now(), actor=Actor.system("test"))
    db.commit()
    clock.advance(timedelta(seconds=1))        # entries are first come, first served
    return entry


def cancel(db, clock, appointment):
    from app.services import booking
    from app.services.audit import Actor

    booking.cancel(db, appointment, actor=Actor.system("test"), now=clock.now(), reason="can't make it",
                   by_user_id=None)
    db.commit()


def offers_of(db, entry):
    from app.models import WaitlistOffer

    db.expire_all()
    return db.query(WaitlistOffer).filter_by(entry_id=entry.id).order_by(WaitlistOffer.id).all()


def token_of(db, offer) -> str:
    from app.models import Notification

    db.expire_all()
    [message] = db.query(Notification).filter_by(dedupe_key=f"waitlist_offer:{offer.id}").all()
    link = message.context["link"]
    return link[link.index("/w/") + 3:]
