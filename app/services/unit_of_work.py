"""After-commit work, asked for by name.

A service never imports ``app.jobs`` and never enqueues: it asks for work by
name on the unit of work (``request(session, "poll_payment", attempt_id)``,
``request(session, "booking_confirmed", event)``). Once the transaction has
committed, every handler subscribed to that name runs (a rolled-back
transaction runs none). ``app/jobs/subscriptions.py`` is the one place that
subscribes handlers (jobs to enqueue); the app factory calls it. The names
are listed in ``INTENTS`` so a typo fails at once.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
_KEY = "after_commit"

# Every name a service may ask for, and what it means.
INTENTS = {
    # booking events: a BookingEvent, sent after the change committed, whichever path made it
    "slot_selected": "a patient took a hold",
    "booking_confirmed": "an appointment was confirmed",
    "booking_canceled": "an appointment was canceled",
    "hold_released": "a hold ended without a booking",
    "booking_rescheduled": "an appointment moved",
    "payment_declined": "a confirmation of a payment failed (event.reason: the failure's key)",
    # work to schedule: plain ids
    "poll_payment": "poll this attempt's PaymentIntent (attempt_id)",
    "process_stripe_event": "apply this stored webhook event (event_id)",
    "expire_hold": "release this hold at its expiry (appointment_id, when)",
    "send_notification": "send this notification when due (notification_id, when, attempts, batch=)",
    "charge_visit": "charge a signed post-visit encounter's case off-session (case_id)",
    "visit_case_due": "run this collections case's next step at its time (case_id, when)",
    "submit_claim": "send this draft claim to the clearinghouse (claim_id)",
    "reconcile_visit": "reconcile this hybrid visit after a payer's answer (appointment_id)",
    "send_refund": "send this stored refund to Stripe (refund_id)",
    "expire_waitlist_offer": "at its expiry, offer a waitlist offer's slot to the next patient (offer_id, when)",
    "fhir_export": "run this FHIR bulk export (export_id)",
}

_subscribers: dict[str, tuple[Callable, ...]] = {}


class UnknownIntent(LookupError):
    pass


def subscribe(subscriptions: dict[str, list[Callable] | tuple[Callable, ...]]) -> None:
    """Replace every subscription at once (idempotent: the factory may run many times in one process)."""
    unknown = set(subscriptions) - set(INTENTS)
    if unknown:
        raise UnknownIntent(f"no such intents: {sorted(unknown)}")
    _subscribers.clear()
    _subscribers.update({name: tuple(handlers) for name, handlers in subscriptions.items()})


def subscriptions() -> dict[str, tuple[Callable, ...]]:
    """A copy of every subscription (tests add a listener and restore this)."""
    return dict(_subscribers)


def subscribers(name: str) -> tuple[Callable, ...]:
    return _subscribers.get(name, ())


def request(session: Session, name: str, *args, **kwargs) -> None:
    """Ask for the work called ``name`` once this session's transaction commits."""
    if name not in INTENTS:
        raise UnknownIntent(name)
    session.info.setdefault(_KEY, []).append((name, args, kwargs))


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    queued = session.info.pop(_KEY, [])
    for name, args, kwargs in queued:
        for handler in subscribers(name):
            try:
                handler(*args, **kwargs)
            except Exception:  # a failed side effect must not undo a committed change; the sweep finds it
                log.exception("after-commit %s: %s failed", name, getattr(handler, "__qualname__", handler))


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_KEY, None)
