"""The Dispute e2e of issue 16: a patient pays a deposit-to-book visit on a phone with the sandbox's
dispute card 4000000000000259; the visit happens; the bank disputes the payment (the sandbox, later) and
Stripe's webhook puts it on billing's worklist with the evidence assembled from the visit; billing, on a
laptop, approves the fields and submits with their own text (the sandbox's magic words
``winning_evidence``); the dispute is won (the sandbox, later); the visit's audit chain page shows it
opened, submitted and won; the ledger took the money out and put it back; nothing Stripe holds names
the note, the diagnosis, the code, the type, the specialty, the message or an IP address."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from app.models import Appointment, PaymentAttempt
from app.services import ledger_posting, ledger_reconcile, settlement
from app.services.gateway import gateway
from tests.disputes import steps
from tests.ledger.sandbox_window import close_window, open_window
from tests.helpers.phone import fill_card, sign_in

pytestmark = pytest.mark.e2e


def pay_on_the_phone(page, live_server, db, factories) -> steps.Visit:
    """The patient signs in, picks the first free time of an "Oncology follow-up", and pays with the
    dispute card in the Payment Element."""
    kind = factories.appointment_type(name=steps.TYPE_NAME, price_cents=12500, payment_timing="deposit_to_book",
                                      modality="telehealth")
    provider = factories.provider(types=[kind], specialty=factories.specialty(name=steps.SPECIALTY),
                                  full_name="Dr. Ada Quill")
    me = factories.user("patient", full_name="Pat Example")
    sign_in(page, live_server, me.email)
    page.goto(f"{live_server}/book/providers/{provider.id}?type_id={kind.id}")
    page.locator("button.slot").first.click()
    page.get_by_role("heading", name="Review your visit").wait_for()
    page.get_by_role("link", name="Continue to payment").click()
    expect(page.get_by_role("heading", name="Pay to book")).to_be_visible()
    fill_card(page, steps.DISPUTE_CARD)
    page.get_by_role("button", name="Pay $125.00").click()
    expect(page.get_by_role("heading", name="You're booked")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    db.expire_all()
    appointment = db.query(Appointment).filter_by(patient_id=me.patient.id).one()
    attempt = db.query(PaymentAttempt).filter(PaymentAttempt.status == "succeeded").one()
    assert appointment.status == "confirmed" and attempt.amount_captured_cents == 12500
    return steps.Visit(appointment, attempt)


def deliver_webhooks(db, sandbox) -> None:
    assert sandbox.wait_for_webhooks(20)
    processed, failed = settlement.process_events(db)
    assert failed == []


def test_a_disputed_payment_is_answered_with_the_visits_evidence_and_won(
        db, client, phone, laptop, live_server, factories, clock, sandbox, queue, later_by_hand, stripe_admin,
        billing_user):
    start = open_window(sandbox)                                   # only this scenario's balance transactions
    paid = pay_on_the_phone(phone, live_server, db, factories)
    steps.attend_and_sign(db, client, paid, clock)                 # the visit happens; its note is signed
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    later_by_hand()                                                # the bank disputes it
    deliver_webhooks(db, sandbox)
    du = steps.dispute_at_stripe(stripe_admin, paid.intent)
    row = steps.ours(db, du["id"])
    assert row is not None and row.appointment_id == paid.appointment.id

    # Billing's worklist: the dispute, its amount, its due date, the visit's date.
    page = laptop
    sign_in(page, live_server, billing_user.email)
    page.goto(f"{live_server}/billing")
    page.get_by_role("link", name="Disputes").click()
    item = page.locator(f"#dispute-{row.id}")
    expect(item).to_be_visible()
    expect(item.locator('[data-field="status"]')).to_have_text("Needs a response")
    expect(item.locator('[data-field="amount"]')).to_have_text("$125.00")
    expect(item.locator('[data-field="visit"]')).to_contain_text("Dec 7, 2026")
    expect(item.locator('[data-field="due"]')).not_to_be_empty()

    # The dispute's page: the evidence assembled from the visit, each field to approve.
    item.get_by_role("link", name="Review the evidence").click()
    expect(page.get_by_role("heading", name=f"Dispute #{row.id}")).to_be_visible()
    expect(page.locator('[data-evidence="product_description"]')).to_contain_text("Clinical visit, by video")
    expect(page.locator('[data-evidence="access_activity_log"]')).to_contain_text("Patient joined the video visit")
    expect(page.locator('[data-evidence="visit_note"]')).to_contain_text("Signed by the clinician: yes")
    expect(page.locator('[data-evidence="receipt"]')).to_contain_text("Visa ending in 0259")
    body = page.locator("main").inner_text() if page.locator("main").count() else page.inner_text("body")
    assert steps.leaks(body, steps.forbidden_words(db, paid)) == []
    # Billing approves the fields Stripe has a place for (the rest would share uncategorized_text with
    # their own words, where the sandbox expects exactly its magic words) and writes their text.
    for label in ("Service date", "What was paid for", "Attendance and activity", "Cancellation policy",
                  "Refund policy"):
        page.get_by_label(f"Approve: {label}").check()
    page.get_by_label("Your own text").fill("winning_evidence")
    page.get_by_role("button", name="Submit to Stripe").click()
    expect(page.get_by_text("Submitted to Stripe.")).to_be_visible()
    expect(page.locator('[data-sent="uncategorized_text"]')).to_have_text("winning_evidence")
    expect(page.locator('[data-field="outcome"]')).to_contain_text("the bank has not decided yet")

    at_stripe = stripe_admin.client.v1.disputes.retrieve(du["id"]).to_dict()
    sent = {k: v for k, v in at_stripe["evidence"].items() if isinstance(v, str) and v}
    assert sent == steps.ours(db, du["id"]).submitted_evidence
    assert set(sent) == {"service_date", "product_description", "access_activity_log",
                         "cancellation_policy_disclosure", "refund_policy_disclosure", "uncategorized_text"}
    assert steps.leaks(str(at_stripe), steps.forbidden_words(db, paid)) == []

    later_by_hand()                                                # the bank decides: won
    deliver_webhooks(db, sandbox)
    row = steps.ours(db, du["id"])
    assert row.status == "won"
    page.reload()
    expect(page.locator('[data-field="outcome"]')).to_contain_text("Won")

    # The visit's audit chain shows the dispute opened, the evidence submitted, and the win.
    page.get_by_role("link", name="Audit chain of the visit").click()
    chain = page.locator("#chain")
    for action in ("dispute.opened", "dispute.submitted", "dispute.won"):
        expect(chain.locator(f'li[data-action="{action}"]')).to_have_count(1)
        expect(chain.locator(f'li[data-action="{action}"]')).to_have_attribute("data-stage", "dispute")
    opened = chain.locator('li[data-action="dispute.opened"]')
    expect(opened).to_contain_text(du["id"])
    expect(opened).to_contain_text("$125.00")

    # The ledger: the money and Stripe's fee went out when it opened; the money came back when it was won.
    withdrawal, reinstatement = steps.dispute_at_stripe(stripe_admin, paid.intent)["balance_transactions"]
    ledger = steps.ledger_of(db, du["id"])
    assert ledger["dispute_withdrawal"] == sorted([("stripe_balance", -14000, withdrawal["id"]),
                                                   ("dispute_fees", 1500, withdrawal["id"]),
                                                   ("disputes_open", 12500, None)])
    assert ledger["dispute_reinstatement"] == sorted([("stripe_balance", 12500, reinstatement["id"]),
                                                      ("disputes_open", -12500, None)])
    steps.assert_ledger_balanced(db)
    # And it agrees with Stripe to the cent: the charge, the withdrawal (and its fee), the reinstatement.
    ledger_posting.catch_up(db, gateway(), now=clock.now())       # the payout tick posts the charge
    db.commit()
    matched, mismatches = ledger_reconcile.compare_window(db, gateway(), start=start, end=close_window(sandbox),
                                                          connected_accounts=[])
    assert mismatches == [] and matched == 3
