"""Payment jobs and the one routine every completion path shares.

``apply_and_settle`` is what the browser's return, the webhook and the poll
all run: lock the attempt, re-read the intent, apply it (commit), then
capture or cancel as the committed state says (commit). The jobs are thin
wrappers that load by id, call it, and let errors raise.
"""
from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import select

from app.integrations.stripe_gateway import StripeGateway
from app.jobs import enqueue, enqueue_in, job_session
from app.jobs import now as _now
from app.models import Appointment, PaymentAttempt, StripeEvent
from app.services import audit, payments
from app.services.audit import Actor

log = logging.getLogger(__name__)


def gateway() -> StripeGateway:
    app = current_app
    found = app.extensions.get("stripe_gateway")
    if found is None:
        found = app.extensions["stripe_gateway"] = StripeGateway.from_settings(app.config["SETTINGS"])
    return found


def timings() -> payments.PaymentTimings:
    return payments.PaymentTimings.from_settings(current_app.config["SETTINGS"])


def _locked(session, attempt_id: int) -> PaymentAttempt | None:
    return session.get(PaymentAttempt, attempt_id, with_for_update=True, populate_existing=True)


def apply_and_settle(session, attempt_id: int, *, source: str, actor: Actor) -> payments.SyncResult:
    """Apply the intent's current state (commit), then move the money it calls for (commit)."""
    attempt = _locked(session, attempt_id)
    if attempt is None:
        session.rollback()
        return payments.SyncResult("pending")
    result = payments.sync_attempt(session, gateway(), attempt, now=_now(), actor=actor, timings=timings(),
                                   source=source)
    session.commit()
    if result.capture_ready:
        attempt = _locked(session, attempt_id)
        payments.capture_attempt(session, gateway(), attempt, now=_now(), actor=actor)
        session.commit()
    return result


def poll_payment(attempt_id: int) -> str:
    """Every POLL_INTERVAL while the intent is open, until it is final or POLL_UNTIL passes."""
    with job_session() as session:
        attempt = session.get(PaymentAttempt, attempt_id)
        if attempt is None or attempt.is_final:
            return "final"
        result = apply_and_settle(session, attempt_id, source="poll", actor=Actor.system("job"))
        attempt = session.get(PaymentAttempt, attempt_id, populate_existing=True)
        if not attempt.is_final and attempt.poll_until and _now() < attempt.poll_until:
            schedule_poll(attempt_id)
        return result.state


def schedule_poll(attempt_id: int) -> None:
    enqueue_in(timings().poll_interval, poll_payment, attempt_id)


def process_stripe_event(event_id: str) -> str:
    """Apply one stored webhook event: re-read its object from Stripe (order does not matter)."""
    with job_session() as session:
        event = session.get(StripeEvent, event_id, with_for_update=True)
        if event is None or event.processed_at is not None:
            return "done"
        state = "ignored"
        attempt = None
        if event.type.startswith("payment_intent.") and event.object_id:
            attempt = payments.attempt_by_intent(session, event.object_id, lock=False)
        event.attempts += 1
        session.commit()
        if attempt is not None:
            state = apply_and_settle(session, attempt.id, source=f"webhook:{event.type}",
                                     actor=Actor.system("webhook")).state
        event = session.get(StripeEvent, event_id, with_for_update=True, populate_existing=True)
        event.processed_at = _now()
        session.commit()
        return state


def cancel_payment(attempt_id: int, reason: str) -> bool:
    """Release an authorization that must not become a charge (re-reads first: a late success is applied)."""
    with job_session() as session:
        attempt = _locked(session, attempt_id)
        if attempt is None or attempt.is_final:
            return False
        if attempt.stripe_payment_intent_id:
            intent = gateway().retrieve_intent(attempt.stripe_payment_intent_id)
            if intent.status == "requires_capture" and attempt.outcome is None:
                session.rollback()
                apply_and_settle(session, attempt_id, source="cancel-check", actor=Actor.system("job"))
                return False
        done = payments.cancel_attempt(session, gateway(), attempt, now=_now(), actor=Actor.system("job"),
                                       reason=reason)
        session.commit()
        return done


def cancel_for_released_hold(appointment_id: int) -> int:
    """A released hold's open PaymentIntent is canceled (after the release committed)."""
    with job_session() as session:
        appointment = session.get(Appointment, appointment_id)
        if appointment is None or appointment.status != "released":
            return 0
        ids = [a.id for a in payments.open_attempts_for(session, appointment_id)]
        session.rollback()
    return sum(cancel_payment(attempt_id, "hold released") for attempt_id in ids)


def on_hold_released(sender, event) -> None:
    """Signal listener (connected in create_app): runs after the release committed."""
    enqueue(cancel_for_released_hold, event.appointment_id)


def sweep_payments() -> dict:
    """The database says what is due: unprocessed events, authorized-but-uncaptured confirmed bookings."""
    with job_session() as session:
        events = list(session.scalars(select(StripeEvent.id).where(StripeEvent.processed_at.is_(None))
                                      .order_by(StripeEvent.received_at).limit(200)))
        to_capture = list(session.scalars(
            select(PaymentAttempt.id).join(PaymentAttempt.charge).join(Appointment)
            .where(PaymentAttempt.status == "requires_capture",
                   Appointment.status.in_(("confirmed", "checked_in", "completed")))))
        session.rollback()
    for event_id in events:
        try:
            process_stripe_event(event_id)
        except Exception:
            log.exception("stored Stripe event %s failed again", event_id)
    for attempt_id in to_capture:
        with job_session() as session:
            apply_and_settle(session, attempt_id, source="sweep", actor=Actor.system("job"))
    return {"events": len(events), "captures": len(to_capture)}


def record_event(session, payload: dict) -> bool:
    """Store a verified webhook event by its id; False if it was already stored (a duplicate)."""
    from sqlalchemy.dialects.postgresql import insert

    obj = (payload.get("data") or {}).get("object") or {}
    inserted = session.execute(
        insert(StripeEvent).values(id=payload["id"], type=payload.get("type", ""),
                                   created=int(payload.get("created") or 0), object_id=obj.get("id"),
                                   payload=payload, attempts=0)
        .on_conflict_do_nothing(index_elements=["id"]).returning(StripeEvent.id)).first()
    if inserted:
        audit.record(session, actor=Actor.system("webhook"), action="stripe.event_received",
                     stripe_object_id=obj.get("id"), details={"event_id": payload["id"],
                                                             "type": payload.get("type")})
    return inserted is not None
