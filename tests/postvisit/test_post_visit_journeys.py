"""Issue 14's "Done when" journeys, end to end: real Chromium sessions against the live server and the
Stripe sandbox (its Stripe.js and Payment Element), the patient on a phone (360 x 740), the provider and
billing on a laptop (1280 x 800); the jobs run by calling the job functions, as the worker would.

1. 4242: booked (nothing charged) -> documented, coded, reviewed, stepped up and signed in the browser ->
   charged once, the fee-schedule total -> the itemized statement on the phone, no diagnosis.
2. 4000002760003184: 3-D Secure at booking -> the off-session charge needs the bank -> the SMS link pays
   with the saved card and a second challenge -> paid, recovered.
3. 4000000000000341: saved at booking, declined after the visit -> retried on the schedule (same
   PaymentIntent, keys ``confirm#1..#3``) -> collections -> billing writes it off (step-up) -> the chain.
4. 4242 removed before the visit -> "Card needed" -> no card to charge -> the link takes a new card.
"""
from __future__ import annotations

from datetime import date, timedelta
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.jobs import visit_charges as jobs
from app.jobs.notifications import render
from app.models import (Appointment, AuditEvent, BillingCode, Charge, CollectionCase, Notification, PaymentAttempt,
                        PaymentConsent)
from app.services import card_setup, codes, emr, fees
from app.services.audit import Actor
from tests.helpers.phone import fill_card, review_and_sign, sign_in, step_up
from tests.postvisit.test_charging import SCHEDULE, keys_for, visit_settings  # noqa: F401 (autouse: timings)

pytestmark = pytest.mark.e2e

SYSTEM = Actor.system("test")
DIAGNOSIS, DIAGNOSIS_WORDS = "J06.9", "Acute upper respiratory infection"
UNIT_CENTS, UNITS = 8750, 2                  # the fee schedule's price of LOC-CONSULT, and the units billed
TOTAL = UNIT_CENTS * UNITS                   # $175.00
NOTE = "Sore throat for three days, no fever."


# -- fixtures and steps -----------------------------------------------------------------------------

@pytest.fixture
def consult(db) -> BillingCode:
    """The shipped codes, LOC-CONSULT priced UNIT_CENTS from January 1 (the ICD-10-CM index warmed)."""
    codes.seed_shipped(db, SYSTEM)
    db.commit()
    code = db.scalar(select(BillingCode).where(BillingCode.system == "LOCAL", BillingCode.code == "LOC-CONSULT"))
    fees.set_price(db, code_id=code.id, modifier="", price_cents=UNIT_CENTS, effective_from=date(2026, 1, 1),
                   actor=SYSTEM)
    db.commit()
    codes.search_diagnoses("J06")            # built once per process (a few seconds)
    return code


@pytest.fixture
def practice(db, factories, clock, consult, queue):
    """A post-visit type, its provider, and a patient whose phone is verified (texts allowed)."""
    visit = factories.appointment_type(name="In-person visit", price_cents=0, payment_timing="post_visit",
                                       modality="in_person")
    provider = factories.provider(types=[visit], full_name="Dr. Ada Quill")
    patient = factories.user("patient", full_name="Pat Journey")
    patient.phone_verified_at = clock.now() - timedelta(days=30)
    db.commit()
    return visit, provider, patient


def book_on_phone(page, live_server, db, practice, number: str, *, challenge: bool = False) -> Appointment:
    """The patient books the first slot of the post-visit type, saving ``number`` in the Payment Element
    (completing the sandbox's 3-D Secure challenge when asked); returns the confirmed appointment."""
    visit, provider, patient = practice
    sign_in(page, live_server, patient.email)
    page.goto(f"{live_server}/book/providers/{provider.id}?type_id={visit.id}")
    page.locator("button.slot").first.click()
    page.get_by_role("heading", name="Review your visit").wait_for()
    page.get_by_role("link", name="Continue to save a card").click()
    expect(page.get_by_role("heading", name="Save a card to book")).to_be_visible()
    expect(page.get_by_text("Nothing is charged now.", exact=True)).to_be_visible()
    expect(page.locator("#consent-wording")).to_have_text(card_setup.CONSENT_WORDING)
    fill_card(page, number)
    page.get_by_label("I agree: charge my card after the visit as described above.").check()
    page.get_by_role("button", name="Save card and book").click()
    if challenge:
        dialog = page.get_by_role("dialog")
        expect(dialog).to_be_visible()
        dialog.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_role("heading", name="You're booked")).to_be_visible(timeout=15000)
    expect(page.get_by_text(f"Booked. Your card ending {number[-4:]} is saved; nothing was charged.")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    db.expire_all()
    appointment = db.scalars(select(Appointment).where(Appointment.patient_id == patient.patient.id)).one()
    assert appointment.status == "confirmed" and appointment.payment_method_id
    [consent] = db.scalars(select(PaymentConsent).where(PaymentConsent.appointment_id == appointment.id)).all()
    assert (consent.wording, consent.card_last4) == (card_setup.CONSENT_WORDING, number[-4:])
    return appointment


def sign_through_the_emr(db, clock, appointment: Appointment, provider, code: BillingCode) -> int:
    """The provider documents and signs through the EMR service (the pages are journey 1's); the case id."""
    actor = Actor("user", provider.user_id, "provider")
    appointment = db.get(Appointment, appointment.id)
    encounter = emr.open_encounter(db, appointment, actor=actor, user=provider.user, now=clock.now(),
                                   source="day_view")
    emr.save_draft(db, encounter.id, expected_version=encounter.version, fields={"subjective": NOTE},
                   actor=actor, now=clock.now())
    emr.add_diagnosis(db, encounter.id, DIAGNOSIS, actor=actor, now=clock.now())
    emr.add_line(db, encounter.id, code_id=code.id, modifier="", units=UNITS, pointers=[1], actor=actor,
                 now=clock.now())
    encounter = emr.get(db, encounter.id)
    emr.sign(db, encounter.id, expected_version=encounter.version, user=provider.user, actor=actor, now=clock.now())
    db.commit()
    return case_of(db, appointment.id).id


def saved_note(db, page, appointment_id: int, field: str, text: str, timeout: float = 10.0):
    """The encounter once ``field`` holds ``text`` in the database (the autosave is debounced)."""
    for _ in range(int(timeout * 10)):
        db.expire_all()
        encounter = emr.find_for_appointment(db, appointment_id)
        if encounter is not None and getattr(encounter, field) == text:
            db.rollback()
            return encounter
        db.rollback()
        page.wait_for_timeout(100)
    raise AssertionError(f"the draft's {field} was not saved within {timeout} s")


def case_of(db, appointment_id: int) -> CollectionCase:
    db.expire_all()
    return db.scalars(select(CollectionCase).where(CollectionCase.appointment_id == appointment_id)).one()


def attempts_of(db, case: CollectionCase) -> list[PaymentAttempt]:
    db.expire_all()
    return list(db.scalars(select(PaymentAttempt).where(PaymentAttempt.charge_id == case.charge_id)
                           .order_by(PaymentAttempt.number)))


def sms_link(db, appointment_id: int) -> str:
    """The path of the pay link in the (one) SMS the failure sent."""
    [sms] = db.scalars(select(Notification).where(Notification.appointment_id == appointment_id,
                                                  Notification.template == "visit_payment_failed",
                                                  Notification.channel == "sms")).all()
    text = render(db, sms).text
    assert sms.context["link"] in text
    for secret in (DIAGNOSIS, DIAGNOSIS_WORDS, NOTE, "LOC-CONSULT"):
        assert secret not in text, secret                        # a link and an amount, nothing clinical
    return urlsplit(sms.context["link"]).path


def open_the_link(page, live_server, link: str, amount: str) -> None:
    page.goto(live_server + link)
    expect(page.get_by_role("heading", name="Pay for your visit")).to_be_visible()
    expect(page.get_by_text(f"Amount due: {amount}")).to_be_visible()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Balance due")).to_be_visible()
    expect(page.get_by_text(f"You owe {amount} for this visit.")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


def one_succeeded_intent(stripe_admin, customer: str, amount: int):
    [intent] = stripe_admin.intents_of(customer)
    assert (intent.status, intent.amount, intent.amount_received) == ("succeeded", amount, amount)
    return intent


# -- 1 ---------------------------------------------------------------------------------------------

def test_4242_booked_documented_signed_charged_and_itemized(live_server, phone, laptop, db, clock, practice,
                                                            stripe_admin):
    visit, provider, patient = practice
    appointment = book_on_phone(phone, live_server, db, practice, "4242424242424242")
    customer = db.get(Appointment, appointment.id).patient.stripe_customer_id
    assert stripe_admin.intents_of(customer) == []                              # nothing charged at booking

    # The provider, on a laptop: the day view, the note, a diagnosis and a line, review, step-up, sign.
    page = laptop
    sign_in(page, live_server, provider.user.email)
    page.goto(f"{live_server}/staff/day", wait_until="load")
    card = page.locator(f"#appt-{appointment.id}")
    expect(card).to_contain_text("Pat Journey")
    card.get_by_role("button", name="Start note").click()
    page.wait_for_url(lambda url: "/staff/encounters/" in url)
    expect(page.get_by_role("heading", name="Visit note")).to_be_visible()
    page.get_by_label("Subjective").fill(NOTE)
    expect(page.locator("#draft-status")).to_contain_text("Saved")
    page.get_by_label("Objective").fill("Pharynx red, no exudate.")
    page.get_by_label("Assessment").fill("Viral upper respiratory infection.")
    page.get_by_label("Plan").fill("Fluids, rest; return if worse.")
    saved = saved_note(db, page, appointment.id, "plan", "Fluids, rest; return if worse.")    # it saved itself
    assert (saved.subjective, saved.assessment) == (NOTE, "Viral upper respiratory infection.")
    expect(page.locator("#draft-version")).to_have_value(str(saved.version))

    page.get_by_label("Add a diagnosis").fill(DIAGNOSIS)
    page.locator("#dx-results").get_by_role("button", name=DIAGNOSIS).click()
    expect(page.locator("#diagnoses")).to_contain_text(f"1. {DIAGNOSIS} {DIAGNOSIS_WORDS}")
    # The diagnosis's answer replaced the coding block: type once htmx has settled it (its new
    # inputs listen only after that), as a person would.
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
    page.get_by_label("Billing code").fill("consultation")
    expect(page.locator("#code-results")).to_contain_text("LOCAL LOC-CONSULT")
    page.locator("#code-results").get_by_label("LOCAL LOC-CONSULT").check()
    page.get_by_label("Units").fill(str(UNITS))
    expect(page.get_by_label(f"1 · {DIAGNOSIS}")).to_be_checked()
    page.get_by_role("button", name="Add line").click()
    expect(page.locator("#line-1")).to_contain_text("LOCAL LOC-CONSULT")
    expect(page.locator("#total")).to_contain_text("Total $175.00")
    expect(page.locator("#draft-status .banner")).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280

    review_and_sign(page, clock, provider.user.email, "$175.00")
    expect(page.locator("#signed-total")).to_contain_text("Total $175.00")

    # The charge job: one PaymentIntent, the fee schedule's price x units, off-session, succeeded.
    case = case_of(db, appointment.id)
    assert case.status == "pending" and case.charge.amount_cents == TOTAL
    assert jobs.charge_case(case.id) == "confirmed"
    assert jobs.charge_case(case.id) == "paid"                  # a duplicated job charges nothing more
    case = case_of(db, appointment.id)
    assert (case.status, case.recovered) == ("paid", False)
    [attempt] = attempts_of(db, case)
    intent = one_succeeded_intent(stripe_admin, customer, TOTAL)
    assert intent.id == attempt.stripe_payment_intent_id and attempt.amount_captured_cents == TOTAL
    assert DIAGNOSIS not in str(intent.to_dict()) and "LOC-CONSULT" not in str(intent.to_dict())
    assert db.get(Appointment, appointment.id).status == "completed"

    # The patient, on the phone: the itemized statement, paid, with no diagnosis.
    phone.goto(f"{live_server}/appointments/{appointment.id}")
    phone.get_by_role("link", name="Itemized statement").click()
    expect(phone.get_by_role("heading", name="Itemized statement")).to_be_visible()
    line = phone.locator('tr[data-line="1"]')
    expect(line.locator('[data-field="code"]')).to_contain_text("LOC-CONSULT")
    expect(line.locator('[data-field="units"]')).to_have_text(str(UNITS))
    expect(line.locator('[data-field="unit-price"]')).to_have_text("$87.50")
    expect(line.locator('[data-field="amount"]')).to_have_text("$175.00")
    expect(phone.locator('[data-field="total"]')).to_have_text("$175.00")
    expect(phone.locator('[data-field="paid"]')).to_have_text("$175.00")
    expect(phone.locator('[data-field="status"]')).to_have_text("Paid in full")
    expect(phone.get_by_role("link", name="Pay now")).to_have_count(0)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    text = phone.locator("main").inner_text()
    for secret in (DIAGNOSIS, "J06", DIAGNOSIS_WORDS, "respiratory", NOTE, "Pharynx"):
        assert secret not in text, secret


# -- 2 ---------------------------------------------------------------------------------------------

def test_3184_authentication_required_recovered_by_the_sms_link(live_server, phone, db, clock, practice, consult,
                                                                stripe_admin):
    visit, provider, patient = practice
    appointment = book_on_phone(phone, live_server, db, practice, "4000002760003184", challenge=True)
    customer = db.get(Appointment, appointment.id).patient.stripe_customer_id
    case_id = sign_through_the_emr(db, clock, appointment, provider, consult)

    assert jobs.charge_case(case_id) == "declined"
    case = case_of(db, appointment.id)
    assert (case.status, case.failure_kind, case.failure_code, case.next_retry_at) == (
        "recovering", "authentication", "authentication_required", None)
    [first] = attempts_of(db, case)
    assert stripe_admin.intent(first.stripe_payment_intent_id).status == "requires_payment_method"
    link = sms_link(db, appointment.id)
    clock.advance(SCHEDULE[0] + timedelta(seconds=1))
    assert jobs.case_due(case_id) == "nothing_due"                     # never retried automatically

    page = phone
    open_the_link(page, live_server, link, "$175.00")
    one_tap = page.get_by_role("button", name="Pay with Visa •••• 3184")
    expect(one_tap).to_be_enabled()
    one_tap.click()
    challenge = page.get_by_role("dialog")
    expect(challenge).to_be_visible()
    challenge.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_text("Paid", exact=True)).to_be_visible(timeout=15000)
    expect(page.get_by_text("$175.00 received")).to_be_visible()

    case = case_of(db, appointment.id)
    assert (case.status, case.recovered) == ("paid", True)
    assert case.charge.amount_captured_cents == TOTAL
    [attempt] = attempts_of(db, case)                                 # the same attempt and PaymentIntent
    assert attempt.id == first.id and attempt.status == "succeeded"
    assert one_succeeded_intent(stripe_admin, customer, TOTAL).id == first.stripe_payment_intent_id


# -- 3 ---------------------------------------------------------------------------------------------

def test_0341_retries_then_collections_then_written_off(live_server, phone, laptop, db, clock, factories, practice,
                                                        consult, stripe_admin):
    visit, provider, patient = practice
    appointment = book_on_phone(phone, live_server, db, practice, "4000000000000341")
    customer = db.get(Appointment, appointment.id).patient.stripe_customer_id
    case_id = sign_through_the_emr(db, clock, appointment, provider, consult)

    first = clock.now()
    assert jobs.charge_case(case_id) == "declined"
    case = case_of(db, appointment.id)
    assert (case.status, case.failure_kind) == ("recovering", "soft")
    assert case.next_retry_at == first + SCHEDULE[0] and case.escalate_at == first + SCHEDULE[-1]
    for n, offset in enumerate(SCHEDULE, start=1):
        clock.set(first + offset)
        assert jobs.case_due(case_id) == "declined"
        assert case_of(db, appointment.id).retries_done == n
    assert jobs.case_due(case_id) == "collections"
    case = case_of(db, appointment.id)
    assert case.status == "collections"
    [attempt] = attempts_of(db, case)                                 # one PaymentIntent, confirmed four times
    assert [i.id for i in stripe_admin.intents_of(customer)] == [attempt.stripe_payment_intent_id]
    assert keys_for(stripe_admin, attempt.stripe_payment_intent_id) == ["create", "confirm#1", "confirm#2",
                                                                        "confirm#3"]
    retried = db.scalars(select(AuditEvent).where(AuditEvent.action == "visit_charge.retried",
                                                  AuditEvent.appointment_id == appointment.id)
                         .order_by(AuditEvent.seq)).all()
    assert [e.details["key"] for e in retried] == ["confirm#1", "confirm#2", "confirm#3"]

    # Billing, on a laptop: the worklist, the write-off with a reason, a fresh code first.
    billing = factories.user("billing", full_name="Bea Biller")
    page = laptop
    sign_in(page, live_server, billing.email)
    page.goto(f"{live_server}/billing/collections", wait_until="load")
    row = page.locator(f"#case-{case_id}")
    expect(row.locator('[data-field="status"]')).to_have_text("In collections")
    expect(row.locator('[data-field="balance"]')).to_have_text("$175.00")
    expect(row.locator('[data-field="retries"]')).to_contain_text("Retries done: 3")
    reason = "Hardship: the patient lost their job"
    clock.advance(timedelta(minutes=16))                       # the sign-in's code is too old to write off with
    row.get_by_text("Write off…").click()
    row.get_by_label("Reason for the write-off").fill(reason)
    row.get_by_role("button", name="Write off $175.00").click()
    step_up(page, billing.email)
    page.wait_for_url(lambda url: "/billing/collections" in url and "step-up" not in url)
    assert case_of(db, appointment.id).status == "collections"         # nothing happened without the code
    row = page.locator(f"#case-{case_id}")
    row.get_by_text("Write off…").click()
    row.get_by_label("Reason for the write-off").fill(reason)
    row.get_by_role("button", name="Write off $175.00").click()
    expect(row.locator('[data-field="written-off"]')).to_contain_text(f"{reason} · approved by Bea Biller")
    expect(row.locator('[data-field="status"]')).to_have_text("Written off")

    case = case_of(db, appointment.id)
    assert (case.status, case.written_off_by_id, case.written_off_reason) == ("written_off", billing.id, reason)
    [written] = db.scalars(select(AuditEvent).where(AuditEvent.action == "collections.written_off",
                                                    AuditEvent.appointment_id == appointment.id)).all()
    assert (written.authorized_by, written.actor_id, written.reason) == (billing.id, billing.id, reason)
    assert jobs.case_due(case_id) == "canceled"                       # the open PaymentIntent is released
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "canceled"
    assert db.get(Charge, case.charge_id).amount_captured_cents == 0

    # The chain page: the attempts, the declines, the retries, the write-off and the outcome.
    page.goto(f"{live_server}/billing/appointments/{appointment.id}/chain", wait_until="load")
    steps = page.locator("[data-action]")
    actions = [steps.nth(i).get_attribute("data-action") for i in range(steps.count())]
    assert actions.count("visit_charge.failed") == 4 and actions.count("visit_charge.retried") == 3
    for action in ("encounter.signed", "visit_charge.opened", "visit_charge.attempted", "payment.attempted",
                   "visit_charge.escalated", "collections.written_off"):
        assert action in actions, action
    assert actions[-1] == "outcome.written_off"
    outcome = page.locator('[data-action="outcome.written_off"]')
    expect(outcome).to_contain_text(reason)
    expect(outcome).to_contain_text("Authorized by: Bea Biller")
    expect(page.locator('[data-action="collections.written_off"]')).to_contain_text("Bea Biller")
    expect(page.locator("main")).to_contain_text(attempt.stripe_payment_intent_id)
    assert DIAGNOSIS not in page.locator("main").inner_text() and NOTE not in page.locator("main").inner_text()


# -- 4 ---------------------------------------------------------------------------------------------

def test_card_removed_before_the_visit_then_added_on_the_link(live_server, phone, db, clock, practice, consult,
                                                              stripe_admin):
    visit, provider, patient = practice
    appointment = book_on_phone(phone, live_server, db, practice, "4242424242424242")
    customer = db.get(Appointment, appointment.id).patient.stripe_customer_id

    # The patient removes the card: warned that the visit relies on it; the visit then says "Card needed".
    page = phone
    page.goto(f"{live_server}/account/cards")
    saved = page.get_by_role("region", name="Visa •••• 4242")
    saved.get_by_text("Remove", exact=True).click()
    expect(saved.locator(".relies-on-card")).to_contain_text("is charged to this card after the visit")
    saved.get_by_role("button", name="Yes, remove Visa •••• 4242").click()
    expect(page.get_by_text("Visa •••• 4242 was removed.")).to_be_visible()
    expect(page.locator(".card-needed")).to_contain_text("needs a card")
    page.goto(f"{live_server}/appointments/{appointment.id}")
    expect(page.get_by_text("Card needed.")).to_be_visible()
    db.expire_all()
    assert db.get(Appointment, appointment.id).payment_method_id is None

    case_id = sign_through_the_emr(db, clock, appointment, provider, consult)
    assert jobs.charge_case(case_id) == "no_card"
    case = case_of(db, appointment.id)
    assert (case.status, case.failure_kind) == ("recovering", "no_card")
    assert attempts_of(db, case) == [] and stripe_admin.intents_of(customer) == []     # no Stripe call
    link = sms_link(db, appointment.id)

    open_the_link(page, live_server, link, "$175.00")
    expect(page.locator("#saved-cards")).to_have_count(0)               # nothing saved: a new card
    fill_card(page, "4242424242424242")
    page.get_by_role("button", name="Pay $175.00").click()
    expect(page.get_by_text("Paid", exact=True)).to_be_visible(timeout=15000)
    expect(page.get_by_text("$175.00 received")).to_be_visible()

    case = case_of(db, appointment.id)
    assert (case.status, case.recovered) == ("paid", True)
    [attempt] = attempts_of(db, case)
    assert attempt.status == "succeeded" and attempt.amount_captured_cents == TOTAL
    assert one_succeeded_intent(stripe_admin, customer, TOTAL).id == attempt.stripe_payment_intent_id
    cards = stripe_admin.client.v1.customers.payment_methods.list(customer, params={"type": "card"}).data
    assert [c.card.last4 for c in cards] == ["4242"]                    # the new card is saved for later
