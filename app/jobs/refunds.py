"""Refund jobs: the cancellation policy after a booking is canceled, and the
two-step routine every refund path (this job, the billing page) shares.

``issue`` stores the refund (commit), then calls Stripe with the refund's own
idempotency key and records the answer (commit). ``refund_canceled_booking``
is enqueued by the ``booking_canceled`` listener (after the cancel committed,
whichever path canceled): it cancels any authorization that was never
captured and applies the policy to what was. Both are safe to run twice.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from app.jobs import enqueue, job_session
from app.jobs import now as _now
from app.jobs.payments import cancel_payment, gateway
from app.models import Appointment, Charge, Refund, User
from app.services import payments, refunds
from app.services.audit import Actor

log = logging.getLogger(__name__)
RESUME_AFTER = timedelta(minutes=2)



def send(session, refund_id: int, *, actor: Actor) -> Refund:
    """Step 2 for a stored refund: call Stripe, record, commit. Errors raise (the refund stays resumable)."""
    refund = session.get(Refund, refund_id)
    try:
        refund = refunds.send_refund(session, gateway(), refund, actor=actor, now=_now())
    except refunds.RefundNotSent:
        session.commit()                 # the failure, its audit row and the released amount
        raise
    except Exception:
        session.rollback()
        raise
    session.commit()
    return refund


def issue(session, *, charge: Charge, amount_cents: int, stripe_reason: str, clinical_reason: str, policy: str,
          authorized_by: User | None, actor: Actor) -> Refund:
    """Store the refund and commit, then send it to Stripe and commit. OverRefund is audited and committed."""
    try:
        refund = refunds.open_refund(session, charge=charge, amount_cents=amount_cents, stripe_reason=stripe_reason,
                                     clinical_reason=clinical_reason, policy=policy, authorized_by=authorized_by,
                                     actor=actor, now=_now())
    except refunds.OverRefund:
        session.commit()                 # only the refused row: nothing else changed
        raise
    except Exception:
        session.rollback()
        raise
    session.commit()                     # the refund's UUID is stored before Stripe hears of it
    return send(session, refund.id, actor=actor)


def refund_canceled_booking(appointment_id: int) -> list[int]:
    """After a cancel: release uncaptured authorizations, then refund what the policy gives back."""
    with job_session() as session:
        appointment = session.get(Appointment, appointment_id)
        if appointment is None or appointment.status != "canceled":
            return []
        open_ids = [a.id for a in payments.open_attempts_for(session, appointment_id)]
        session.rollback()
    for attempt_id in open_ids:
        cancel_payment(attempt_id, "appointment canceled")
    with job_session() as session:
        appointment = session.get(Appointment, appointment_id)
        to_send = refunds.policy_refund(session, appointment, actor=Actor.system("job"), now=_now())
        ids = [r.id for r in to_send]
        session.commit()
        for refund_id in ids:
            send(session, refund_id, actor=Actor.system("job"))
    return ids


def resume_unsent() -> int:
    """Sweep step: finish refunds stored but never confirmed by Stripe (same idempotency key)."""
    with job_session() as session:
        ids = refunds.unsent(session, older_than=_now() - RESUME_AFTER)
        session.rollback()
        done = 0
        for refund_id in ids:
            try:
                send(session, refund_id, actor=Actor.system("job"))
                done += 1
            except Exception:
                log.exception("refund %s could not be sent yet", refund_id)
    return done


def on_booking_canceled(sender, event) -> None:
    """Signal listener: runs after the cancel committed; only enqueues."""
    enqueue(refund_canceled_booking, event.appointment_id)


def connect_listeners() -> None:
    from app.services import signals

    signals.booking_canceled.connect(on_booking_canceled, weak=False)
