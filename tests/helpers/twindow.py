"""T-window timings in seconds, a hold taken a given time before the visit, and running and
reading what the T-window jobs did."""
from datetime import timedelta

from sqlalchemy import select

from app.models import Notification, ProviderAlert
from app.services import booking
from app.services.audit import Actor
from tests.helpers.payments import MON_10_NY

T_WINDOW = timedelta(seconds=90)
RELEASE_BEFORE_START = timedelta(seconds=20)
HOLD_TTL = timedelta(seconds=30)


def hold_at(db, factories, clock, settings, *, starts_in: timedelta):
    """A deposit-to-book hold on Monday 10:00 New York, taken ``starts_in`` before the start."""
    visit = factories.appointment_type(name="Video consult", price_cents=12500, payment_timing="deposit_to_book",
                                       min_notice_minutes=0)
    provider = factories.provider(types=[visit], full_name="Dr Quinn Alertson")
    patient = factories.patient(full_name="Pat Ghostly")
    clock.set(MON_10_NY - starts_in)
    appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id,
                                    type_id=visit.id, starts_at=MON_10_NY,
                                    policy=booking.HoldPolicy.from_settings(settings),
                                    actor=Actor("user", patient.user_id, "patient"))
    db.commit()
    return appointment


def run_twindow_jobs(queue) -> list:
    """Run the T-window jobs the listeners queued, as the worker would; returns their results."""
    results = []
    for job in queue.get_jobs():
        if job.func_name.startswith("app.jobs.twindow."):
            queue.remove(job)
            results.append(job.func(*job.args, **job.kwargs))
    return results


def alert_of(db, appointment_id):
    db.expire_all()
    return db.scalar(select(ProviderAlert).where(ProviderAlert.appointment_id == appointment_id))


def messages_to(db, user_id) -> list[Notification]:
    db.expire_all()
    return list(db.scalars(select(Notification).where(Notification.user_id == user_id).order_by(Notification.id)))
