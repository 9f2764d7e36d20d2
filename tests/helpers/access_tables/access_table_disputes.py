"""Expected status per role for billing's dispute pages (issue 16; merged into test_access.EXPECTED), and
``sample_dispute``: an open dispute (needs a response, one proposed field) of ``appointment_id`` (none:
not linked), made in the test's database without Stripe (the PHI-view test uses it for the clinic's own
appointment). Saving an empty review is accepted (303); submitting it is refused as nothing to send (422)."""
from datetime import datetime, timedelta, timezone

LOGIN, DENY = 302, 403
BILLING = dict(anonymous=LOGIN, patient=DENY, provider=DENY)


def sample_dispute(session, appointment_id: int | None = None, factories=None) -> int:
    from sqlalchemy import select

    from app.models import Charge, Dispute

    stripe_id = f"du_sample_{appointment_id or 0}"
    found = session.scalar(select(Dispute.id).where(Dispute.stripe_dispute_id == stripe_id))
    if found is not None:
        return found
    charge_id = session.scalar(select(Charge.id).where(Charge.appointment_id == appointment_id)) \
        if appointment_id else None
    dispute = Dispute(stripe_dispute_id=stripe_id, stripe_charge_id="ch_sample", charge_id=charge_id,
                      appointment_id=appointment_id, amount_cents=12500, currency="usd", reason="fraudulent",
                      status="needs_response", is_charge_refundable=False,
                      due_by=datetime(2030, 1, 16, 23, 59, 59, tzinfo=timezone.utc),
                      evidence={"product_description": "Clinical visit."}, approved=[])
    session.add(dispute)
    session.commit()
    return dispute.id


DISPUTES_EXPECTED = {
    ("GET", "billing.disputes_list"): dict(BILLING, billing=200, admin=200),
    ("POST", "billing.check_disputes"): dict(BILLING, billing=303, admin=303),
    ("GET", "billing.dispute"): dict(BILLING, billing=200, admin=200),
    ("POST", "billing.dispute_review"): dict(BILLING, billing=303, admin=303),
    ("POST", "billing.dispute_submit"): dict(BILLING, billing=422, admin=422),
}
DISPUTES_SAMPLE_ARGS = {
    "billing.dispute": lambda factories: {"dispute_id": sample_dispute(factories.session)},
    "billing.dispute_review": lambda factories: {"dispute_id": sample_dispute(factories.session)},
    "billing.dispute_submit": lambda factories: {"dispute_id": sample_dispute(factories.session)},
}
