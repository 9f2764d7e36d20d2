"""Refunds check Stripe's rules first (issue 16): a charge with an open dispute cannot be refunded
unless the dispute says ``is_charge_refundable``, nor one lost to a dispute. Billing's refund page
says so in plain words (a 4xx, never a 5xx), and nothing is half done: no refund row left reserving
money, nothing at Stripe. When Stripe knows of the dispute before we do (its webhook not yet here),
Stripe's own refusal (``charge_disputed``) becomes the same words, and the dispute is read from Stripe."""
from __future__ import annotations

from app.models import Charge, Refund
from app.services import disputes, refunds, settlement
from app.services.audit import Actor
from tests.disputes import steps
from tests.helpers.refunds import audits, refund_page, refunds_of, stripe_refunds
from tests.helpers.web import login

WEBHOOK = Actor.system("webhook")


def refused_on_the_page(client, forms, charge_id: int, words: str) -> None:
    response = refund_page(forms, charge_id)
    html = response.get_data(as_text=True)
    assert response.status_code == 422, html[:500]
    assert words in html


def nothing_refunded(db, stripe_admin, paid) -> None:
    db.expire_all()
    assert db.get(Charge, paid.attempt.charge_id).amount_refunded_cents == 0
    assert all(r.status == "failed" for r in refunds_of(db, paid.attempt.charge_id))
    assert stripe_refunds(stripe_admin, paid.intent) == []


def test_a_refund_is_refused_while_the_dispute_is_open_and_after_it_is_lost(db, client, forms, visit, later_by_hand,
                                                                            stripe_admin, billing_user):
    paid = visit(happened=False)
    later_by_hand()
    du, _ = steps.opened(db, stripe_admin, paid, "evt_guard")
    assert login(client, billing_user.email).status_code == 303

    refused_on_the_page(client, forms, paid.attempt.charge_id,
                        "This payment is disputed by the cardholder&#39;s bank; a refund is not possible until the "
                        "dispute is closed.")
    assert refunds_of(db, paid.attempt.charge_id) == []          # refused before anything was stored
    nothing_refunded(db, stripe_admin, paid)

    stripe_admin.client.v1.disputes.close(du["id"])               # lost
    disputes.apply_event(db, event_id="evt_lost", event_type="charge.dispute.closed", object_id=du["id"],
                         created=du["created"] + 1, account=None, actor=WEBHOOK)
    db.commit()
    assert steps.ours(db, du["id"]).status == "lost"
    refused_on_the_page(client, forms, paid.attempt.charge_id, "This payment was lost to a dispute")
    assert refunds_of(db, paid.attempt.charge_id) == []
    nothing_refunded(db, stripe_admin, paid)


def test_stripe_refusing_as_disputed_before_our_rows_know_is_the_same_clear_refusal(
        db, client, forms, visit, later_by_hand, stripe_admin, billing_user):
    paid = visit(happened=False)
    later_by_hand()                                                # open at Stripe; no webhook, no poll yet
    du = steps.dispute_at_stripe(stripe_admin, paid.intent)
    assert steps.ours(db, du["id"]) is None
    assert login(client, billing_user.email).status_code == 303

    refused_on_the_page(client, forms, paid.attempt.charge_id,
                        "This payment is disputed by the cardholder&#39;s bank; a refund is not possible until the "
                        "dispute is closed.")
    [refund] = refunds_of(db, paid.attempt.charge_id)
    assert refund.status == "failed" and refund.stripe_refund_id is None     # Stripe refused it: released
    nothing_refunded(db, stripe_admin, paid)
    [failed] = audits(db, paid.appointment.id, "refund.failed")
    assert "charge_disputed" in failed.details["error"]
    row = steps.ours(db, du["id"])                                  # and now we know of the dispute
    assert row is not None and row.status == "needs_response" and row.charge_id == paid.attempt.charge_id
    assert steps.dispute_audits(db, paid.appointment.id) == ["dispute.opened"]
    # The next try is refused by our own rows, before anything is stored.
    refused_on_the_page(client, forms, paid.attempt.charge_id, "a refund is not possible until the dispute is closed")
    assert len(refunds_of(db, paid.attempt.charge_id)) == 1


def test_our_guard_defers_to_stripe_when_the_dispute_says_the_charge_is_refundable(db, clock, visit, later_by_hand,
                                                                                   stripe_admin, billing_user):
    paid = visit(happened=False)
    later_by_hand()
    du, row = steps.opened(db, stripe_admin, paid, "evt_guard")
    assert disputes.blocking_refund(db, paid.attempt.charge_id) == row
    row.is_charge_refundable = True                                 # as Stripe would say for some disputes
    db.commit()
    assert disputes.blocking_refund(db, paid.attempt.charge_id) is None
    charge = db.get(Charge, paid.attempt.charge_id)
    biller = Actor("user", billing_user.id, "billing")
    try:
        settlement.issue_refund(db, charge=charge, amount_cents=2500, stripe_reason="requested_by_customer",
                                clinical_reason="billing error", policy="billing", authorized_by=billing_user,
                                actor=biller)
    except refunds.DisputedAtStripe as error:                       # the sandbox's dispute still says no
        assert "not possible until the dispute is closed" in str(error)
    else:
        raise AssertionError("Stripe should have refused the refund")
    [refund] = refunds_of(db, paid.attempt.charge_id)               # our rows let it through to Stripe
    assert refund.status == "failed"
    nothing_refunded(db, stripe_admin, paid)


def test_a_canceled_disputed_booking_is_not_refunded_by_the_policy(db, clock, visit, later_by_hand, stripe_admin):
    from app.models import Appointment
    from app.services import booking

    paid = visit(happened=False, cancellation_window_hours=1)     # canceled early: the policy refunds in full
    later_by_hand()
    steps.opened(db, stripe_admin, paid, "evt_guard")
    appointment = db.get(Appointment, paid.appointment.id)
    booking.cancel(db, appointment, actor=WEBHOOK, now=clock.now(), reason="patient asked", by_user_id=None)
    db.commit()
    assert settlement.refund_canceled_booking(db, appointment.id) == []     # no error: the dispute decides
    [refused] = audits(db, appointment.id, "refund.refused")
    assert refused.details["why"] == "disputed"
    assert db.query(Refund).count() == 0
    nothing_refunded(db, stripe_admin, paid)
