"""Shared steps and checks for the refund tests: the billing refund form, the jobs the cancel
queued, and what Stripe holds."""
from __future__ import annotations

import re

from sqlalchemy import select

from app.models import AuditEvent, Charge, Notification, Refund

REFUND_JOB = "app.jobs.refunds.refund_canceled_booking"
OPAQUE = re.compile(r"^(\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
CLINICAL = "Visit ended early: telehealth connection failed after 10 minutes"


def refund_page(forms, charge_id, **data):
    page = f"/billing/payments/{charge_id}"
    values = {"amount": "25.00", "stripe_reason": "requested_by_customer", "clinical_reason": CLINICAL}
    values.update(data)
    return forms.post(f"{page}/refunds", values, page=page)


def run_refund_jobs(queue) -> int:
    """Run the refund jobs the booking_canceled listener enqueued (asserting there was one)."""
    jobs = [job for job in queue.get_jobs() if job.func_name == REFUND_JOB]
    assert jobs, "the cancel did not enqueue the refund job"
    for job in jobs:
        job.func(*job.args, **job.kwargs)
    return len(jobs)


def stripe_refunds(stripe_admin, intent_id) -> list[dict]:
    page = stripe_admin.client.v1.refunds.list(params={"payment_intent": intent_id, "limit": 100})
    return [r.to_dict() for r in page.auto_paging_iter()]


def assert_opaque_metadata(stripe_refund: dict, refund: Refund) -> None:
    metadata = stripe_refund["metadata"]
    assert metadata["refund_uuid"] == str(refund.uuid)
    assert set(metadata) == {"refund_uuid", "charge_id", "appointment_id", "attempt_uuid"}
    assert all(OPAQUE.match(value) for value in metadata.values()), metadata


def refunds_of(db, charge_id) -> list[Refund]:
    db.expire_all()
    return list(db.scalars(select(Refund).where(Refund.charge_id == charge_id).order_by(Refund.id)))


def charge_of(db, appointment_id) -> Charge:
    db.expire_all()
    return db.scalar(select(Charge).where(Charge.appointment_id == appointment_id))


def audits(db, appointment_id, action) -> list[AuditEvent]:
    return list(db.scalars(select(AuditEvent).where(AuditEvent.appointment_id == appointment_id,
                                                    AuditEvent.action == action).order_by(AuditEvent.seq)))


def refund_messages(db, appointment_id) -> list[Notification]:
    return list(db.scalars(select(Notification).where(Notification.appointment_id == appointment_id,
                                                      Notification.template == "refund_issued")))
