"""Payment jobs: thin callers of the settle routine (``app.services.settlement``).

Each loads by id, calls the service, and lets errors raise (RQ's retry and the
periodic sweep see them). The browser's return and the webhook's processing
run the same ``settle``; nothing here decides anything about money.
"""
from __future__ import annotations

import logging
import time

from flask import current_app

from app.jobs import enqueue, enqueue_in, job_session, redis_connection
from app.jobs import now as _now
from app.models import Appointment, PaymentAttempt
from app.services import settlement
from app.services.audit import Actor

log = logging.getLogger(__name__)


def poll_payment(attempt_id: int) -> str:
    """Every POLL_INTERVAL while the intent is open, until it is final or POLL_UNTIL passes."""
    with job_session() as session:
        attempt = session.get(PaymentAttempt, attempt_id)
        if attempt is None or attempt.is_final:
            return "final"
        result = settlement.settle(session, attempt_id, source="poll", actor=Actor.system("job"))
        attempt = session.get(PaymentAttempt, attempt_id, populate_existing=True)
        if not attempt.is_final and attempt.poll_until and _now() < attempt.poll_until:
            schedule_poll(attempt_id)
        return result.state


def schedule_poll(attempt_id: int) -> None:
    """Subscribed to the ``poll_payment`` intent: the next poll, POLL_INTERVAL from now."""
    enqueue_in(current_app.config["SETTINGS"].POLL_INTERVAL, poll_payment, attempt_id)


def process_stripe_event(event_id: str) -> str:
    """Apply one stored webhook event (its object is re-read from Stripe: order does not matter)."""
    with job_session() as session:
        return settlement.process_event(session, event_id)


# -- stored webhook events, drained in batches ------------------------------------------------------
#
# The webhook's hand-off (``request_processing``, after a new event's commit) costs one Redis
# command while a drain is already waiting: ``SET <flag> NX EX``. Only when the flag was absent is a
# drain job (``process_stripe_events``) enqueued. The drain deletes the flag *before* it reads the
# events, so an event committed before that delete is read by this drain, and one whose hand-off
# comes after it sets the flag again and enqueues the next drain: none is left behind. The flag
# expires (``DRAIN_FLAG_TTL``) in case its job is lost, and the sweep processes any stored event
# still unprocessed whatever happened to Redis.
DRAIN_FLAG_TTL = 60          # seconds
DRAIN_BATCH = 200
DRAIN_BUDGET = 30.0          # seconds one drain job works before handing over to the next


def _drain_flag() -> str:
    return f"{current_app.config['SETTINGS'].REDIS_NAMESPACE}:payments:events_drain"


def request_processing(event_id: str | None = None) -> bool:
    """Make sure a drain job will read the stored events after this moment (call it after the
    commit that stored ``event_id``). True if this call enqueued the drain."""
    conn = redis_connection()
    if not conn.set(_drain_flag(), event_id or "-", nx=True, ex=DRAIN_FLAG_TTL):
        return False                          # a drain is waiting, and will read what was committed
    try:
        enqueue(process_stripe_events)
    except Exception:
        conn.delete(_drain_flag())            # the next event tries again (the sweep anyway)
        raise
    return True


def process_stripe_events() -> dict:
    """The drain: process every stored, unprocessed event, in batches (``settlement.process_events``),
    for up to DRAIN_BUDGET seconds, then hand over to a new drain job if some are left."""
    with job_session() as session:
        redis_connection().delete(_drain_flag())      # first: see the protocol above
        deadline = time.monotonic() + DRAIN_BUDGET
        processed, failed = 0, set()
        while True:
            done, bad = settlement.process_events(session, limit=DRAIN_BATCH, skip=failed)
            processed += done
            failed.update(bad)
            if done + len(bad) < DRAIN_BATCH:
                break
            if time.monotonic() > deadline:
                request_processing()
                break
    if failed:
        log.warning("%d stored Stripe events failed; the sweep tries them again", len(failed))
    return {"processed": processed, "failed": len(failed)}


def cancel_payment(attempt_id: int, reason: str) -> bool:
    """Release an authorization that must not become a charge (a late success is applied first)."""
    with job_session() as session:
        attempt = session.get(PaymentAttempt, attempt_id)
        if attempt is None or attempt.is_final:
            return False
        session.rollback()
        settlement.settle(session, attempt_id, source="cancel", actor=Actor.system("job"), cancel_reason=reason)
        attempt = session.get(PaymentAttempt, attempt_id, populate_existing=True)
        return attempt.status == "canceled"


def cancel_for_released_hold(appointment_id: int) -> int:
    """A released hold's open PaymentIntent is canceled (after the release committed)."""
    with job_session() as session:
        appointment = session.get(Appointment, appointment_id)
        if appointment is None or appointment.status != "released":
            return 0
        ids = settlement.open_attempt_ids(session, appointment_id)
        session.rollback()
    return sum(cancel_payment(attempt_id, "hold released") for attempt_id in ids)


def sweep_payments() -> dict:
    """The database says what is due (``settlement.due_work``): unprocessed events, uncaptured
    confirmed bookings, open authorizations whose slot is gone, open intents gone quiet, attempts
    left ``creating``, and intents at Stripe no attempt owns."""
    with job_session() as session:
        due = settlement.due_work(session, quiet_for=current_app.config["SETTINGS"].PAYMENT_QUIET)
        session.rollback()
    _each(due.events, "stored Stripe event %s failed again", process_stripe_event)
    _each(due.to_capture, "capture of attempt %s failed again", _settle)
    released = _each(due.to_release, "release of attempt %s failed again",
                     lambda attempt_id: cancel_payment(attempt_id, "slot no longer held"))
    polled = _each(due.to_poll, "poll of attempt %s failed", _settle)
    reconciled = _each(due.creating, "reconciling attempt %s failed", _reconcile)
    unowned = _each(due.customers, "looking for unowned intents of %s failed", _cancel_unowned)
    result = {"events": len(due.events), "captures": len(due.to_capture), "released": released}
    if polled or reconciled or unowned:        # only what happened, so a quiet sweep reads the same
        result.update(polled=polled, reconciled=reconciled, unowned_canceled=unowned)
    return result


def _settle(attempt_id: int) -> bool:
    with job_session() as session:
        settlement.settle(session, attempt_id, source="sweep", actor=Actor.system("job"))
    return True


def _reconcile(attempt_id: int) -> bool:
    with job_session() as session:
        settlement.reconcile_creating(session, attempt_id, actor=Actor.system("job"))
    return True


def _cancel_unowned(customer: str) -> int:
    with job_session() as session:
        return settlement.cancel_unowned_intents(session, customer, actor=Actor.system("job"))


def _each(items: list, failure: str, work) -> int:
    """Run ``work`` for each item (each its own unit of work); one failing never stops the rest.
    Returns the sum of the counts ``work`` returned (True counts 1, anything not a number 1)."""
    done = 0
    for item in items:
        try:
            result = work(item)
            done += result if isinstance(result, int) else 1
        except Exception:
            log.exception(failure, item)
    return done
