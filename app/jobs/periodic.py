"""The periodic sweep: the database, not Redis, says what is due.

worker.py enqueues ``sweep`` every SWEEP_INTERVAL. Each capability adds its
own step; every step is safe to run twice:

- release expired holds (their jobs may have been lost);
- process stored but unprocessed Stripe events; capture confirmed bookings'
  authorizations still uncaptured;
- re-enqueue due, unsent notifications;
- send refunds stored but never confirmed by Stripe (same idempotency key);
- raise T-window alerts a lost job never raised, settle ones left open;
- write the audit chain's head to the log (an anchor outside the database).
"""
from app.jobs import job_session
from app.services import audit


def sweep() -> dict:
    from app.jobs.booking import sweep_expired_holds
    from app.jobs.notifications import sweep_notifications
    from app.jobs.payments import sweep_payments
    from app.jobs.refunds import resume_unsent
    from app.jobs.twindow import sweep_alerts

    released = sweep_expired_holds()
    paid = sweep_payments()
    messages = sweep_notifications()
    alerts = sweep_alerts()
    refunds = resume_unsent()
    with job_session() as session:
        head = audit.anchor(session)
        session.commit()
    return {"audit_head": head[0] if head else None, "holds_released": released, "messages": messages,
            "alerts": alerts, "refunds": refunds, **paid}
