"""Refund jobs: thin callers of the refund steps in ``app.services.settlement``.

``refund_canceled_booking`` runs after a booking was canceled (any path): it
releases authorizations never captured and applies the cancellation policy
to what was. ``resume_unsent`` is the sweep's step for refunds stored but
never confirmed by Stripe. Both are safe to run twice.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from app.jobs import job_session
from app.jobs import now as _now
from app.services import refunds, settlement
from app.services.audit import Actor

log = logging.getLogger(__name__)
RESUME_AFTER = timedelta(minutes=2)


def refund_canceled_booking(appointment_id: int) -> list[int]:
    with job_session() as session:
        return settlement.refund_canceled_booking(session, appointment_id)


def resume_unsent() -> int:
    """Sweep step: finish refunds stored but never confirmed by Stripe (same idempotency key)."""
    with job_session() as session:
        ids = refunds.unsent(session, older_than=_now() - RESUME_AFTER)
        session.rollback()
        done = 0
        for refund_id in ids:
            try:
                settlement.send_refund(session, refund_id, actor=Actor.system("job"))
                done += 1
            except Exception:
                log.exception("refund %s could not be sent yet", refund_id)
    return done
