"""Issue 15's "Done when" journeys, end to end: real Chromium sessions against the live server, the Stripe
sandbox (its Stripe.js and Payment Element) and the payer simulator. A NEW patient, on a phone (360 x 740),
opens the hybrid type, fills intake with insurance (a fresh simulator member per test), reads the estimate
($150.00 billed, $95.00 allowed, copay $25.00 + 20% coinsurance $14.00 = share $39.00), chooses a time and
pays the $39.00 deposit; the provider signs CPT 99213; the claim goes to the payer, is adjudicated and its
remittance applied; then each case ends the way the patient should see it, on the phone and at Stripe:

1. overpaid (the payer adjudicates at 0% coinsurance): $14.00 of the deposit refunded, the payer's reason
   in plain words. The whole way through the pages: sign-up, the provider's signature (laptop, step-up
   MFA) and billing's Submit and "Check now" on /billing/claims.
2. underpaid (adjudicated at 40%): the $14.00 balance charged off-session to the saved card.
3. denied as not covered (PR-204): the patient's $111.00 charged and explained; a CO-50 denial: written
   off, nothing charged (no balance PaymentIntent), the deposit refunded.
4. the card expired between the deposit and the balance: the balance fails, the recovery link (the SMS)
   -> paid with a new card on the phone.

Shortcuts, only for steps another journey (or test) covers through the pages: in journeys 2-4 the provider
signs through the EMR service (journey 1 signs in the browser) and the claim is sent by CLAIM_AUTO_SUBMIT
(the ``submit_claim`` job the signature queued; journey 1 uses billing's Submit). The simulator is told to
adjudicate at once (``adjudicate_now``) instead of after its delay; the jobs run by calling the job
functions, as the worker would. Every journey also checks that no PHI (names, birth date, address, member
id, payer, diagnosis, reason, note, code) left for Stripe (the app's requests, Stripe.js's, what Stripe
holds) or in any SMS or email of the visit.
"""
from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.jobs import set_app
from app.jobs.notifications import render
from app.jobs import claims as claim_jobs
from app.jobs import visit_charges as charge_jobs
from app.models import Charge, PaymentAttempt, Refund
from app.services import codes
from tests.helpers.claims import reconciliation_of
from tests.helpers.payments import recording_stripe
from tests.helpers.phone import fill_card, sign_in
from tests.hybrid.journeys_helpers import (DEPOSIT, PAYER_ID, Booked, Person, assert_no_phi_left_home, balance_case,
                                           billing_submits_and_checks, book_on_phone, chain_steps, claim_of,
                                           intents, make_clinic, narrow, new_member, notifications_of, pay_link,
                                           payer_answers, refunds_at_stripe, run_the_queue, sign_in_the_browser,
                                           sign_through_the_emr, sign_up, statement_on_phone,
                                           submitted_automatically, watch_stripe_js)

pytestmark = pytest.mark.e2e

_people = itertools.count(1)


@pytest.fixture(autouse=True)
def journey_settings(app, monkeypatch, payer_sandbox, sandbox, queue):
    """Claims wait for billing unless a journey turns CLAIM_AUTO_SUBMIT on; jobs run in this app."""
    monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], CLAIM_AUTO_SUBMIT=False))
    set_app(app)
    yield
    payer_sandbox.reset_faults()


@pytest.fixture
def auto_submit(app, monkeypatch):
    monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], CLAIM_AUTO_SUBMIT=True))


@pytest.fixture
def practice(db, factories, clock, clinic):
    return make_clinic(db, factories)


@pytest.fixture
def watched(app, phone, sandbox):
    """The PHI watch: the app's requests to Stripe and the phone's Stripe.js requests, for the whole test."""
    with recording_stripe(app) as recording:
        yield recording, watch_stripe_js(phone, sandbox.api_base)


def person(payer_sandbox, **member) -> Person:
    """A new patient-to-be and a fresh simulator member for their insurance (``member``: its scenario)."""
    n = next(_people)
    someone = Person(legal_name=f"Harriet Quellbright{chr(ord('a') + n % 26)}", email=f"harriet.q{n}@example.com")
    someone.member_id = new_member(payer_sandbox, **member)
    return someone


def factory_patient_on_phone(page, live_server, db, factories, clock, someone: Person) -> None:
    """A new patient from the factories (no intake, no card, no visit), phone verified (texts allowed)."""
    user = factories.user("patient", full_name=someone.legal_name, email=someone.email)
    user.phone_verified_at = clock.now() - timedelta(days=30)
    db.commit()
    sign_in(page, live_server, someone.email)


def book(app, phone, live_server, db, practice, someone: Person) -> Booked:
    """The phone booking, then the worker's confirmation message (it checks the appointment is confirmed,
    so it runs now, before the visit moves on)."""
    booked = book_on_phone(phone, live_server, db, practice, someone)
    run_the_queue(app)
    assert [n.template for n in notifications_of(db, booked.appointment_id)] == ["booking_confirmed"]
    return booked


def signed_and_answered(db, clock, payer_sandbox, queue, practice, booked: Booked) -> str:
    """Journeys 2-4: the EMR signs, CLAIM_AUTO_SUBMIT's job sends, the payer answers, reconciled."""
    sign_through_the_emr(db, clock, practice, booked)
    submitted_automatically(db, queue, booked)
    return payer_answers(db, payer_sandbox, booked)


def only_the_deposit(stripe_admin, booked: Booked):
    [deposit] = intents(stripe_admin, booked.customer)
    assert deposit.id == booked.deposit_intent
    assert (deposit.status, deposit.amount_received, deposit.setup_future_usage) == ("succeeded", DEPOSIT,
                                                                                     "off_session")
    return deposit


def balance_intent(stripe_admin, booked: Booked):
    deposit, balance = intents(stripe_admin, booked.customer)
    assert deposit.id == booked.deposit_intent
    assert balance.description == f"Visit {booked.appointment_id} balance"
    return balance


# -- 1 ------------------------------------------------------------------------------------------------

def test_overpaid_part_of_the_deposit_is_refunded_with_the_payers_reason(
        app, live_server, phone, laptop, db, clock, factories, practice, payer_sandbox, stripe_admin, watched):
    recording, from_page = watched
    someone = person(payer_sandbox, adjudication_overrides={"coinsurance_percent": 0})
    codes.search_diagnoses("J06")                   # the ICD-10-CM index, built once per process
    sign_up(phone, live_server, someone)
    booked = book(app, phone, live_server, db, practice, someone)
    sign_in_the_browser(laptop, live_server, db, clock, practice, booked)
    billing_submits_and_checks(laptop, live_server, db, payer_sandbox, factories, booked,
                               answer="Payer paid $70.00 · patient's share $25.00 · written off $55.00")

    # The worker: the reconciliation the poll asked for, then the refund it stored.
    assert claim_jobs.reconcile_visit(booked.appointment_id) == "refund"
    row = reconciliation_of(db, booked.appointment_id)
    assert (row.patient_responsibility_cents, row.paid_cents, row.difference_cents) == (2500, DEPOSIT, -1400)
    refund = db.get(Refund, row.refund_id)
    assert (refund.amount_cents, refund.policy, refund.stripe_reason) == (1400, "overpayment", "requested_by_customer")
    assert claim_jobs.send_refund(refund.id) in ("pending", "succeeded")
    assert claim_jobs.reconcile_visit(booked.appointment_id) == "refund"        # a second run changes nothing

    # Billing's worklist shows how it ended.
    laptop.goto(f"{live_server}/billing/claims?show=all", wait_until="load")
    expect(laptop.locator(f"#claim-{booked.claim_id} [data-field='outcome']")).to_have_text(
        "Outcome: deposit partly refunded ($14.00)")

    # The audit chain, intake to outcome, with the payer's reason on the refund.
    steps = chain_steps(laptop, live_server, booked.appointment_id)
    stages = [stage for stage, _ in steps]
    order = [stages.index(s) for s in ("intake", "estimate", "deposit", "encounter", "claim", "remittance",
                                       "reconciliation", "outcome")]
    assert order == sorted(order) and "eligibility" in stages, steps
    actions = [action for _, action in steps]
    assert actions.count("payment.captured") == 1, steps                 # the deposit, once
    for action in ("claim.submitted", "remittance.applied", "reconciliation.decided", "refund.created"):
        assert action in actions, action
    assert actions[-1] == "outcome.refund"
    remittance = laptop.locator('[data-action="remittance.applied"]')
    expect(remittance).to_contain_text(f"payer {PAYER_ID}")
    expect(remittance).to_contain_text("PR-3 copay $25.00")
    expect(laptop.locator('[data-action="refund.created"]')).to_contain_text(
        "your insurer's answer: your share is $25.00, you paid $39.00: $14.00 refunded")

    # Stripe: the deposit, and one partial refund of it; nothing else charged.
    only_the_deposit(stripe_admin, booked)
    [at_stripe] = refunds_at_stripe(stripe_admin, booked.deposit_intent)
    assert (at_stripe.amount, at_stripe.reason, at_stripe.status) == (1400, "requested_by_customer", "succeeded")
    assert balance_case(db, booked.appointment_id) is None

    # The patient, on the phone: the statement in plain words.
    seen = statement_on_phone(phone, live_server, booked.appointment_id)
    assert seen["rows"] == {
        "Billed to your insurance": "$150.00", "Paid by your insurance": "$70.00",
        "The amount above your plan's allowed amount (the clinic writes it off) (CO-45)": "$55.00",
        "Your copay (PR-3)": "$25.00", "Your share": "$25.00", "Deposit paid": "$39.00",
        "Refunded to your card": "$14.00"}, seen["rows"]
    assert "$25.00 is your copay" in seen["explanation"]
    assert "$55.00 is the amount above your plan's allowed amount" in seen["explanation"]
    assert seen["status"] == "$14.00 of your deposit refunded" and seen["balance"] == "$0.00"
    assert "Pay now" not in seen["text"]
    [email] = notifications_of(db, booked.appointment_id, "refund_issued")
    assert "a refund of $14.00 for your appointment" in render(db, email).text

    run_the_queue(app)
    posted = assert_no_phi_left_home(db, stripe_admin, recording, from_page, booked)
    assert posted == {"customers", "payment_intents", "payment_intents/pi/capture", "refunds"}, posted


# -- 2 ------------------------------------------------------------------------------------------------

def test_underpaid_the_balance_is_charged_to_the_saved_card(
        app, live_server, phone, db, clock, factories, practice, payer_sandbox, stripe_admin, queue, auto_submit,
        watched):
    recording, from_page = watched
    someone = person(payer_sandbox, adjudication_overrides={"coinsurance_percent": 40})
    factory_patient_on_phone(phone, live_server, db, factories, clock, someone)
    booked = book(app, phone, live_server, db, practice, someone)
    assert signed_and_answered(db, clock, payer_sandbox, queue, practice, booked) == "balance_charge"

    case = balance_case(db, booked.appointment_id)
    assert (case.status, case.charge.amount_cents) == ("pending", 1400)         # 25.00 + 40% of 70.00 - 39.00
    assert charge_jobs.charge_case(case.id) == "confirmed"
    case = balance_case(db, booked.appointment_id)
    assert (case.status, case.recovered, case.charge.amount_captured_cents) == ("paid", False, 1400)

    balance = balance_intent(stripe_admin, booked)
    assert (balance.status, balance.amount, balance.amount_received) == ("succeeded", 1400, 1400)
    assert balance.payment_method == booked.card                                 # the card saved with the deposit
    assert refunds_at_stripe(stripe_admin, booked.deposit_intent) == []

    seen = statement_on_phone(phone, live_server, booked.appointment_id)
    assert seen["rows"]["Your coinsurance (PR-2)"] == "$28.00" and seen["rows"]["Your copay (PR-3)"] == "$25.00"
    assert (seen["rows"]["Your share"], seen["rows"]["Deposit paid"], seen["rows"]["Balance charged"]) == (
        "$53.00", "$39.00", "$14.00")
    assert "Refunded to your card" not in seen["rows"]
    assert seen["balance"] == "$0.00" and "$28.00 is your coinsurance" in seen["explanation"]
    assert "Pay now" not in seen["text"]

    run_the_queue(app)
    posted = assert_no_phi_left_home(db, stripe_admin, recording, from_page, booked)
    assert posted == {"customers", "payment_intents", "payment_intents/pi/capture"}, posted   # 2 intents


# -- 3 ------------------------------------------------------------------------------------------------

def test_denied_as_not_covered_the_patients_share_is_charged_and_explained(
        app, live_server, phone, db, clock, factories, practice, payer_sandbox, stripe_admin, queue, auto_submit,
        watched):
    recording, from_page = watched
    someone = person(payer_sandbox, scenario="deny_pr204")
    factory_patient_on_phone(phone, live_server, db, factories, clock, someone)
    booked = book(app, phone, live_server, db, practice, someone)     # the 271 said active: share $39.00
    assert signed_and_answered(db, clock, payer_sandbox, queue, practice, booked) == "balance_charge"
    assert claim_of(db, booked.appointment_id).status == "reconciled"

    case = balance_case(db, booked.appointment_id)
    assert case.charge.amount_cents == 11100                                     # 150.00 - the 39.00 deposit
    assert charge_jobs.charge_case(case.id) == "confirmed"
    balance = balance_intent(stripe_admin, booked)
    assert (balance.status, balance.amount_received, balance.payment_method) == ("succeeded", 11100, booked.card)

    seen = statement_on_phone(phone, live_server, booked.appointment_id)
    assert seen["rows"] == {
        "Billed to your insurance": "$150.00", "Paid by your insurance": "$0.00",
        "This service is not covered by your plan (PR-204)": "$150.00", "Your share": "$150.00",
        "Deposit paid": "$39.00", "Balance charged": "$111.00"}, seen["rows"]
    assert "$150.00 is this service is not covered by your plan" in seen["explanation"]
    assert seen["balance"] == "$0.00"

    run_the_queue(app)
    posted = assert_no_phi_left_home(db, stripe_admin, recording, from_page, booked)
    assert posted == {"customers", "payment_intents", "payment_intents/pi/capture"}, posted


def test_denied_by_a_co_reason_is_written_off_and_never_charged(
        app, live_server, phone, db, clock, factories, practice, payer_sandbox, stripe_admin, queue, auto_submit,
        watched):
    recording, from_page = watched
    someone = person(payer_sandbox, scenario="deny_co50")
    factory_patient_on_phone(phone, live_server, db, factories, clock, someone)
    booked = book(app, phone, live_server, db, practice, someone)
    assert signed_and_answered(db, clock, payer_sandbox, queue, practice, booked) == "refund"
    assert claim_of(db, booked.appointment_id).status == "reconciled"

    row = reconciliation_of(db, booked.appointment_id)
    assert (row.patient_responsibility_cents, row.written_off_cents, row.difference_cents) == (0, 15000, -DEPOSIT)
    assert balance_case(db, booked.appointment_id) is None
    assert db.scalar(select(Charge).where(Charge.appointment_id == booked.appointment_id,
                                          Charge.purpose == "balance")) is None
    assert claim_jobs.send_refund(row.refund_id) in ("pending", "succeeded")

    only_the_deposit(stripe_admin, booked)                                         # no balance PaymentIntent
    [at_stripe] = refunds_at_stripe(stripe_admin, booked.deposit_intent)
    assert (at_stripe.amount, at_stripe.reason) == (DEPOSIT, "requested_by_customer")

    seen = statement_on_phone(phone, live_server, booked.appointment_id)
    assert seen["rows"] == {
        "Billed to your insurance": "$150.00", "Paid by your insurance": "$0.00",
        "Not paid by your plan; the clinic writes it off, you owe nothing for it (CO-50)": "$150.00",
        "Your share": "$0.00", "Deposit paid": "$39.00", "Refunded to your card": "$39.00"}, seen["rows"]
    assert "you owe nothing for it" in seen["explanation"]
    assert seen["balance"] == "$0.00" and "Pay now" not in seen["text"]
    assert notifications_of(db, booked.appointment_id, "visit_payment_failed") == []

    run_the_queue(app)
    posted = assert_no_phi_left_home(db, stripe_admin, recording, from_page, booked)
    assert posted == {"customers", "payment_intents", "payment_intents/pi/capture", "refunds"}, posted


# -- 4 ------------------------------------------------------------------------------------------------

def test_the_card_expired_before_the_balance_the_link_takes_a_new_card(
        app, live_server, phone, db, clock, factories, practice, payer_sandbox, sandbox, stripe_admin, queue,
        auto_submit, watched):
    recording, from_page = watched
    someone = person(payer_sandbox, adjudication_overrides={"coinsurance_percent": 40})
    factory_patient_on_phone(phone, live_server, db, factories, clock, someone)
    booked = book(app, phone, live_server, db, practice, someone)
    sandbox.expire_card(booked.card)                          # the card ages between the deposit and the balance
    assert signed_and_answered(db, clock, payer_sandbox, queue, practice, booked) == "balance_charge"

    case = balance_case(db, booked.appointment_id)
    assert charge_jobs.charge_case(case.id) == "declined"
    case = balance_case(db, booked.appointment_id)
    assert (case.status, case.failure_kind, case.failure_code, case.next_retry_at) == (
        "recovering", "hard", "expired_card", None)                               # never retried on that card
    failed = balance_intent(stripe_admin, booked)
    assert failed.status == "requires_payment_method"
    assert failed.last_payment_error.to_dict().get("code") == "expired_card"
    assert sorted(n.channel for n in notifications_of(db, booked.appointment_id, "visit_payment_failed")) == [
        "email", "sms"]
    link = pay_link(db, booked.appointment_id, "sms")

    # The patient opens the text's link on the phone and pays with a new card.
    page = phone
    page.goto(live_server + link)
    expect(page.get_by_role("heading", name="Pay for your visit")).to_be_visible()
    expect(page.get_by_text("Amount due: $14.00")).to_be_visible()
    narrow(page)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Balance due")).to_be_visible()
    expect(page.get_by_text("You owe $14.00 for this visit.")).to_be_visible()
    narrow(page)
    fill_card(page, "5555555555554444")
    page.get_by_role("button", name="Pay $14.00").click()
    expect(page.get_by_text("Paid", exact=True)).to_be_visible(timeout=15000)
    expect(page.get_by_text("$14.00 received")).to_be_visible()

    case = balance_case(db, booked.appointment_id)
    assert (case.status, case.recovered, case.charge.amount_captured_cents) == ("paid", True, 1400)
    paid = db.scalars(select(PaymentAttempt).where(PaymentAttempt.charge_id == case.charge_id,
                                                   PaymentAttempt.status == "succeeded")).one()
    assert paid.card_last4 == "4444"
    balance = stripe_admin.intent(paid.stripe_payment_intent_id)
    assert (balance.status, balance.amount_received) == ("succeeded", 1400)
    assert balance.payment_method != booked.card
    received = [i for i in intents(stripe_admin, booked.customer) if i.status == "succeeded"]
    assert sorted(i.amount_received for i in received) == [1400, DEPOSIT]            # the deposit and the balance

    seen = statement_on_phone(phone, live_server, booked.appointment_id)
    assert (seen["rows"]["Your share"], seen["rows"]["Deposit paid"], seen["rows"]["Balance charged"]) == (
        "$53.00", "$39.00", "$14.00")
    assert seen["balance"] == "$0.00" and "Pay now" not in seen["text"]

    run_the_queue(app)
    posted = assert_no_phi_left_home(db, stripe_admin, recording, from_page, booked)
    assert "payment_intents/pi" in posted and "refunds" not in posted, posted     # the new card on the intent
