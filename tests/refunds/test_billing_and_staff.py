"""Refunds by billing (partial, with a clinical reason), over-refunds refused, staff cancellation."""
import pytest
from sqlalchemy import select

from app.services.gateway import gateway
from app.jobs.refunds import refund_canceled_booking
from app.models import AuditEvent, Charge, Refund
from app.services import refunds
from app.services.audit import Actor
from tests.helpers.payments import sign_in
from tests.helpers.refunds import (CLINICAL, assert_opaque_metadata, audits, charge_of, refund_messages, refund_page,
                                   refunds_of, run_refund_jobs, stripe_refunds)


def test_billing_refunds_part_with_a_reason_and_their_name(db, app, client, forms, book, login_as, stripe_admin):
    appointment, attempt = book()
    charge = charge_of(db, appointment.id)
    biller = login_as("billing")

    listing = client.get("/billing/payments").get_data(as_text=True)
    assert appointment.patient.user.full_name in listing and attempt.stripe_payment_intent_id in listing

    response = refund_page(forms, charge.id)
    assert response.status_code == 303, response.get_data(as_text=True)

    [refund] = refunds_of(db, charge.id)
    assert (refund.amount_cents, refund.policy, refund.authorized_by_id, refund.clinical_reason, refund.status,
            refund.stripe_reason) == (2500, "billing", biller.id, CLINICAL, "succeeded", "requested_by_customer")
    assert charge_of(db, appointment.id).amount_refunded_cents == 2500

    [at_stripe] = stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id)
    assert (at_stripe["id"], at_stripe["amount"], at_stripe["reason"]) == (refund.stripe_refund_id, 2500,
                                                                           "requested_by_customer")
    assert_opaque_metadata(at_stripe, refund)
    assert "telehealth" not in str(at_stripe)                     # the clinical reason never reaches Stripe

    [requested] = audits(db, appointment.id, "refund.requested")
    [created] = audits(db, appointment.id, "refund.created")
    for row in (requested, created):
        assert (row.actor_id, row.authorized_by, row.reason, row.patient_id, row.payment_attempt_id) == (
            biller.id, biller.id, CLINICAL, appointment.patient_id, attempt.id)
        assert row.details["authorized_by_name"] == biller.full_name and row.details["amount_cents"] == 2500
    assert created.stripe_object_id == refund.stripe_refund_id
    assert len(refund_messages(db, appointment.id)) == 1

    page = client.get(f"/billing/payments/{charge.id}").get_data(as_text=True)
    assert biller.full_name in page and CLINICAL in page and refund.stripe_refund_id in page
    assert 'data-field="refunded">$25.00' in page and 'data-field="refundable">$100.00' in page

    # The patient's receipt and dashboard show the partial refund.
    patient_client = app.test_client()
    sign_in(patient_client, appointment.patient.user)
    receipt = patient_client.get(f"/appointments/{appointment.id}/receipt")
    html = receipt.get_data(as_text=True)
    assert receipt.status_code == 200
    assert 'data-field="paid">$125.00' in html and "Visa ending in 4242" in html
    assert 'data-field="refund-amount">$25.00' in html and 'data-field="net"><strong>$100.00' in html
    assert "December 7, 2026" in html
    assert CLINICAL not in html and biller.full_name not in html
    dashboard = patient_client.get("/appointments").get_data(as_text=True)
    assert "Paid $125.00 · Refunded $25.00" in dashboard
    assert f'/appointments/{appointment.id}/receipt' in dashboard


def test_an_over_refund_is_refused_on_the_page_and_nothing_changes(db, client, forms, book, login_as, stripe_admin):
    appointment, attempt = book()
    charge = charge_of(db, appointment.id)
    login_as("admin")
    assert refund_page(forms, charge.id, amount="100").status_code == 303

    refused = refund_page(forms, charge.id, amount="25.01")
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "more than can be refunded: $25.00 of the $125.00 captured remains" in html
    assert [r.amount_cents for r in refunds_of(db, charge.id)] == [10000]
    assert charge_of(db, appointment.id).amount_refunded_cents == 10000
    assert [r["amount"] for r in stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id)] == [10000]
    [row] = audits(db, appointment.id, "refund.refused")
    assert row.outcome == "failure" and row.details["requested_cents"] == 2501
    assert row.details["refundable_cents"] == 2500

    # The rest can still be refunded, exactly.
    assert refund_page(forms, charge.id, amount="25").status_code == 303
    assert charge_of(db, appointment.id).amount_refunded_cents == 12500
    assert sum(r["amount"] for r in stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id)) == 12500
    assert "Nothing left to refund" in client.get(f"/billing/payments/{charge.id}").get_data(as_text=True)


def test_the_refund_form_needs_a_clinical_reason_and_a_stripe_reason(db, client, forms, book, login_as):
    appointment, _ = book()
    charge = charge_of(db, appointment.id)
    login_as("billing")
    missing = refund_page(forms, charge.id, clinical_reason="  ")
    assert missing.status_code == 422 and "Give the clinical reason" in missing.get_data(as_text=True)
    invented = refund_page(forms, charge.id, stripe_reason="clinical_error")
    assert invented.status_code == 422
    assert refunds_of(db, charge.id) == [] and audits(db, appointment.id, "refund.requested") == []


def test_the_service_refuses_an_over_refund(db, clock, book, stripe_admin):
    appointment, attempt = book()
    charge = charge_of(db, appointment.id)
    with pytest.raises(refunds.OverRefund):
        refunds.open_refund(db, charge=charge, amount_cents=12501, stripe_reason="duplicate",
                            clinical_reason="charged twice", policy="billing", authorized_by=None,
                            actor=Actor.system("test"), now=clock.now())
    db.commit()                                                   # only the refusal's audit row
    assert refunds_of(db, charge.id) == [] and charge_of(db, appointment.id).amount_refunded_cents == 0
    assert len(audits(db, appointment.id, "refund.refused")) == 1
    assert stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id) == []

    # Two refunds opened before either is sent still cannot exceed what was captured.
    first = refunds.open_refund(db, charge=charge, amount_cents=10000, stripe_reason="requested_by_customer",
                                clinical_reason="a", policy="billing", authorized_by=None,
                                actor=Actor.system("test"), now=clock.now())
    db.commit()
    with pytest.raises(refunds.OverRefund):
        refunds.open_refund(db, charge=charge, amount_cents=5000, stripe_reason="requested_by_customer",
                            clinical_reason="b", policy="billing", authorized_by=None,
                            actor=Actor.system("test"), now=clock.now())
    db.rollback()
    refunds.send_refund(db, gateway(), first, actor=Actor.system("test"), now=clock.now())
    db.commit()
    refunds.send_refund(db, gateway(), first, actor=Actor.system("test"), now=clock.now())   # a retry: no-op
    db.commit()
    assert [r["amount"] for r in stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id)] == [10000]


def test_staff_cancellation_of_a_paid_booking_refunds_in_full(db, client, forms, book, login_as, queue,
                                                              stripe_admin):
    # Late by the type's policy (24 h window, no refund): the clinic canceling still refunds it all.
    appointment, attempt = book(cancellation_window_hours=24, late_cancel_policy="none")
    admin = login_as("admin")
    page = f"/staff/appointments/{appointment.id}/cancel"
    response = forms.post(page, {"reason": "Provider is ill"})
    assert response.status_code == 303, response.get_data(as_text=True)
    run_refund_jobs(queue)
    refund_canceled_booking(appointment.id)

    charge = charge_of(db, appointment.id)
    [refund] = refunds_of(db, charge.id)
    assert (refund.amount_cents, refund.policy, refund.authorized_by_id, refund.status) == (
        12500, "staff_cancel", admin.id, "succeeded")
    assert charge.amount_refunded_cents == 12500
    [at_stripe] = stripe_refunds(stripe_admin, attempt.stripe_payment_intent_id)
    assert (at_stripe["id"], at_stripe["amount"], at_stripe["reason"]) == (refund.stripe_refund_id, 12500,
                                                                           "requested_by_customer")
    assert_opaque_metadata(at_stripe, refund)
    [decided] = audits(db, appointment.id, "refund.policy_applied")
    assert decided.details["rule"] == "staff_cancel" and decided.authorized_by == admin.id
    [created] = audits(db, appointment.id, "refund.created")
    assert (created.authorized_by, created.stripe_object_id) == (admin.id, refund.stripe_refund_id)
    assert created.details["authorized_by_name"] == admin.full_name

    # The provider's day view shows it.
    day = client.get(f"/staff/day?provider_id={appointment.provider_id}&date=2026-12-07").get_data(as_text=True)
    assert "Refunded $125.00" in day


def test_the_day_view_shows_each_appointments_payment_state(db, client, book, login_as):
    paid, _ = book()
    login_as("billing")
    day = client.get(f"/staff/day?provider_id={paid.provider_id}&date=2026-12-07").get_data(as_text=True)
    assert f'data-payment="{paid.id}">Paid $125.00' in day


def test_another_patients_receipt_or_appointment_is_404_and_audited(db, app, client, book, factories):
    appointment, _ = book()
    stranger = factories.patient()
    sign_in(client, stranger.user)
    assert client.get(f"/appointments/{appointment.id}/receipt").status_code == 404
    assert client.get(f"/appointments/{appointment.id}").status_code == 404
    denied = list(db.scalars(select(AuditEvent).where(AuditEvent.action == "access.denied",
                                                      AuditEvent.actor_id == stranger.user_id)))
    assert [row.details["appointment_id"] for row in denied] == [appointment.id, appointment.id]
    assert "/receipt" in denied[0].details["path"]
    owner = app.test_client()
    sign_in(owner, appointment.patient.user)
    assert owner.get(f"/appointments/{appointment.id}/receipt").status_code == 200
    assert db.scalar(select(Refund.id)) is None and db.scalar(select(Charge.amount_refunded_cents)) == 0
