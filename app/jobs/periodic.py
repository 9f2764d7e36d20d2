"""The periodic sweep: the database, not Redis, says what is due.

worker.py enqueues ``sweep`` every SWEEP_INTERVAL. Each capability adds its
own step (re-enqueue due reminders, release expired holds, process stored but
unprocessed Stripe events); every step is safe to run twice.
"""
from app.jobs import job_session
from app.services import audit


def sweep() -> dict:
    from app.jobs.booking import sweep_expired_holds
    from app.jobs.payments import sweep_payments

    from app.jobs.notifications import sweep_notifications

    released = sweep_expired_holds()
    paid = sweep_payments()
    messages = sweep_notifications()
    with job_session() as session:
        head = audit.anchor(session)
        session.commit()
    return {"audit_head": head[0] if head else None, "holds_released": released, "messages": messages, **paid}
