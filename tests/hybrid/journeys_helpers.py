"""Steps of the hybrid journeys (tests/hybrid/test_hybrid_journeys.py): the clinic, a fresh payer-simulator
member, the patient's phone booking (intake with insurance -> estimate -> a time -> the deposit), the
provider's signature (pages or the EMR service), the claim's way to the payer and back (billing's pages or
the jobs), the patient's statement on the phone, what Stripe holds, and the PHI watch over everything that
left for Stripe, SMS or email."""
from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urlsplit

from playwright.sync_api import expect
from sqlalchemy import select

from app.jobs import claims as claim_jobs
from app.jobs.notifications import render
from app.models import (Appointment, AppointmentType, BillingCode, Charge, Claim, CollectionCase, FeeScheduleEntry,
                        Notification, Payer, PayerAllowedAmount, PaymentAttempt, PaymentConsent)
from app.services import codes, emr, hybrid_deposit
from app.services.audit import Actor
from tests.helpers.payments import Recording
from tests.helpers.phone import fill_card, review_and_sign, sign_in

SYSTEM = Actor.system("test")
PASSWORD = "amber-violin-tundra-42"

# The clinic's fee for CPT 99213 and what the simulator's AETNA-DEMO allows for it (its fee schedule,
# loaded into the clinic's payer_allowed_amounts as the seed does): the estimate and the remittance agree.
CPT, PRICE, ALLOWED = "99213", 15000, 9500
PAYER_ID, PAYER_NAME = "AETNA-DEMO", "Aetna (demo)"
# AETNA-PPO with the deductible met: copay 25.00, then 20% of the 70.00 left = 14.00; the share 39.00 is
# the deposit (rule 'estimate'); the insurer is expected to pay 56.00, the 55.00 above 95.00 written off.
COPAY, COINSURANCE, SHARE, INSURER = 2500, 1400, 3900, 5600
DEPOSIT = SHARE
DIAGNOSIS, DIAGNOSIS_WORDS = "J06.9", "Acute upper respiratory infection"
NOTE = "Wheezing at night for two weeks; inhaler helps."
QUESTIONS = [{"key": "allergies", "label": "Any allergies?", "kind": "text", "required": True}]

_numbers = itertools.count(1)


@dataclass
class Person:
    """The new patient: what they type (all of it PHI that must never leave the clinic)."""
    legal_name: str
    email: str
    birth_date: str = "1979-05-14"
    address: str = "48 Quillfeather Lane"
    city: str = "Albany"
    reason: str = "Wheezing at night since the cat moved in"
    allergies: str = "sulfa drugs"
    member_id: str = ""

    def secrets(self) -> list[str]:
        first, *_, last = self.legal_name.split()
        return [self.legal_name, first, last, self.email, "5555550", self.birth_date, "05/14/1979",
                self.address, "Quillfeather", self.reason, "Wheezing", self.allergies, self.member_id]


@dataclass
class Clinic:
    visit_type: AppointmentType
    provider: object
    code: BillingCode


@dataclass
class Booked:
    appointment_id: int
    patient_id: int
    customer: str
    card: str                       # the saved card (PaymentMethod id) the balance is charged to
    deposit_intent: str
    person: Person
    claim_id: int | None = None
    extra: dict = field(default_factory=dict)


# -- the clinic and the payer --------------------------------------------------------------------

def make_clinic(db, factories) -> Clinic:
    """CPT 99213 at $150.00, AETNA-DEMO on the payer list with its allowed amount, the hybrid type
    expecting 99213 (deposit = the estimated share) and a clinician offering it."""
    codes.seed_shipped(db, SYSTEM)
    code = BillingCode(system="CPT", code=CPT, descriptor="Office or other outpatient visit, established patient")
    db.add(code)
    db.flush()
    db.add(FeeScheduleEntry(billing_code_id=code.id, modifier="", price_cents=PRICE, effective_from=date(2026, 1, 1)))
    db.add(Payer(id=PAYER_ID, name=PAYER_NAME, default_allowed_percent=60))
    db.add(Payer(id="BCBS-DEMO", name="Blue Cross Blue Shield (demo)", default_allowed_percent=55))
    db.flush()
    db.add(PayerAllowedAmount(payer_id=PAYER_ID, billing_code_id=code.id, modifier="", allowed_cents=ALLOWED))
    db.commit()
    visit_type = factories.appointment_type(
        name="Follow-up (insurance)", price_cents=4000, payment_timing="hybrid", modality="telehealth",
        expected_codes=[{"system": "CPT", "code": CPT, "modifier": "", "units": 1}], intake_questions=QUESTIONS,
        deposit_rule="estimate")
    provider = factories.provider(types=[visit_type], full_name="Dr. Hana Hybrid")
    return Clinic(visit_type, provider, code)


def new_member(payer_sandbox, **fields) -> str:
    """A fresh AETNA-PPO member with the deductible met (accumulators never shared between tests);
    ``fields`` add a ``scenario`` or ``adjudication_overrides``."""
    member_id = f"J{int(time.time()) % 100000:05d}{next(_numbers):05d}"
    payer_sandbox.put_member(PAYER_ID, member_id, plan_id="AETNA-PPO", deductible_met_cents=50000,
                             oop_met_cents=50000, **fields)
    return member_id


# -- the patient, on a phone -------------------------------------------------------------------------

def narrow(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= 360, page.url


def sign_up(page, base: str, person: Person) -> None:
    """A new patient creates an account on the sign-up page, then signs in."""
    page.goto(base + "/signup")
    page.get_by_label("Full name").fill(person.legal_name)
    page.get_by_label("Email").fill(person.email)
    page.get_by_label("Mobile phone").fill("+15555550142")
    page.get_by_label("Timezone").fill("America/New_York")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(lambda url: urlsplit(url).path == "/login")
    expect(page.get_by_text("Thanks for signing up.")).to_be_visible()
    sign_in(page, base, person.email, PASSWORD)


def book_on_phone(page, base: str, db, clinic: Clinic, person: Person, *, card: str = "4242424242424242") -> Booked:
    """Signed in, the patient opens the hybrid type, fills intake with insurance, reads the estimate,
    chooses the first time and pays the deposit with ``card``: booked, the card kept for the balance."""
    provider, visit_type = clinic.provider, clinic.visit_type
    page.goto(f"{base}/book/providers/{provider.id}?type_id={visit_type.id}")
    expect(page.get_by_role("heading", name="First, tell us about you and your insurance (about 5 min)")
           ).to_be_visible()
    assert page.locator("button.slot").count() == 0                       # no times before intake
    page.get_by_role("link", name="Start intake").click()

    expect(page.get_by_role("heading", name="About you")).to_be_visible()
    narrow(page)
    page.get_by_label("Legal name (as on your ID)").fill(person.legal_name)
    page.get_by_label("Date of birth").fill(person.birth_date)
    page.get_by_label("Sex").select_option("female")
    page.get_by_label("Address", exact=True).fill(person.address)
    page.get_by_label("City").fill(person.city)
    page.get_by_label("State").fill("NY")
    page.get_by_label("ZIP code").fill("12207")
    page.get_by_role("button", name="Save and continue").click()

    expect(page.get_by_role("heading", name="Reason for your visit")).to_be_visible()
    page.get_by_label("What would you like help with?").fill(person.reason)
    page.get_by_label("Any allergies?").fill(person.allergies)
    page.get_by_role("button", name="Save and continue").click()

    expect(page.get_by_role("heading", name="Insurance")).to_be_visible()
    narrow(page)
    page.get_by_label("Use my insurance").check()
    primary = page.get_by_role("group", name="Your insurance")
    primary.get_by_label("Insurer").select_option(PAYER_ID)
    primary.get_by_label("Member ID").fill(person.member_id)
    page.get_by_role("button", name="Save and continue").click()

    expect(page.get_by_role("heading", name="Consents")).to_be_visible()
    expect(page.get_by_text("Your insurance: Your insurance is active.")).to_be_visible()    # the 271, in words
    for signature in page.get_by_label("Type your full name to sign").all():
        signature.fill(person.legal_name.lower())
    page.get_by_role("button", name="Sign and continue").click()

    expect(page.get_by_role("heading", name="Review and submit")).to_be_visible()
    page.get_by_role("button", name="Submit intake").click()

    # The estimate, line by line, before any time is chosen.
    page.wait_for_url(lambda url: "/estimate" in url)
    expect(page.get_by_role("heading", name="Your estimate")).to_be_visible()
    rows = {row: page.locator(f'[data-row="{row}"]') for row in
            ("billed", "allowed", "copay", "coinsurance", "insurer", "share", "deposit")}
    expect(rows["billed"]).to_contain_text("$150.00")
    expect(rows["allowed"]).to_contain_text("$95.00")
    expect(rows["allowed"]).to_contain_text("The clinic does not bill you the $55.00 above it.")
    expect(rows["copay"]).to_contain_text("$25.00")
    expect(rows["coinsurance"]).to_contain_text("(20%)")
    expect(rows["coinsurance"]).to_contain_text("$14.00")
    expect(rows["insurer"]).to_contain_text("$56.00")
    expect(rows["share"]).to_contain_text("$39.00")
    expect(rows["deposit"]).to_contain_text("$39.00")
    narrow(page)
    page.get_by_role("link", name="Choose a time").click()

    page.locator("button.slot").first.wait_for()
    expect(page.get_by_text("Your intake is in.")).to_be_visible()
    page.locator("button.slot").first.click()
    expect(page.get_by_role("heading", name="Review your visit")).to_be_visible()
    expect(page.locator(".your-share")).to_contain_text("$39.00")
    narrow(page)
    page.get_by_role("link", name="Pay deposit $39.00 now").click()

    expect(page.get_by_role("heading", name="Pay your deposit")).to_be_visible()
    expect(page.locator("#consent-wording")).to_have_text(hybrid_deposit.CONSENT_WORDING)
    fill_card(page, card)
    page.get_by_label("I agree: charge the deposit now").check()
    page.get_by_role("button", name="Pay deposit $39.00").click()
    expect(page.get_by_role("heading", name="You're booked")).to_be_visible(timeout=15000)
    expect(page.get_by_text("Deposit paid: $39.00")).to_be_visible()
    expect(page.get_by_text(f"Your card ending {card[-4:]} is saved for this visit.")).to_be_visible()
    narrow(page)

    db.expire_all()
    patient_id = db.scalar(select(Appointment.patient_id).join(Appointment.patient)
                           .where(Appointment.type_id == visit_type.id).order_by(Appointment.id.desc()).limit(1))
    appointment = db.scalars(select(Appointment).where(Appointment.patient_id == patient_id)).one()
    assert appointment.status == "confirmed" and appointment.payment_method_id
    [consent] = db.scalars(select(PaymentConsent).where(PaymentConsent.appointment_id == appointment.id)).all()
    assert (consent.kind, consent.card_last4) == ("hybrid_balance", card[-4:])
    deposit = deposit_attempt(db, appointment.id)
    assert deposit.amount_captured_cents == DEPOSIT
    booked = Booked(appointment.id, patient_id, appointment.patient.stripe_customer_id, appointment.payment_method_id,
                    deposit.stripe_payment_intent_id, person)
    db.rollback()
    return booked


def deposit_attempt(db, appointment_id: int) -> PaymentAttempt:
    db.expire_all()
    return db.scalars(select(PaymentAttempt).join(Charge, Charge.id == PaymentAttempt.charge_id)
                      .where(Charge.appointment_id == appointment_id, Charge.purpose == "deposit",
                             PaymentAttempt.status == "succeeded")).one()


# -- the provider ----------------------------------------------------------------------------------

def sign_in_the_browser(page, base: str, db, clock, clinic: Clinic, booked: Booked) -> None:
    """The provider, on a laptop: the day view, the note, a diagnosis, CPT 99213, review, step-up, sign."""
    provider = clinic.provider
    sign_in(page, base, provider.user.email)
    page.goto(f"{base}/staff/day", wait_until="load")
    card = page.locator(f"#appt-{booked.appointment_id}")
    expect(card).to_contain_text(booked.person.legal_name.split()[0])
    card.get_by_role("button", name="Start note").click()
    page.wait_for_url(lambda url: "/staff/encounters/" in url)
    expect(page.get_by_role("heading", name="Visit note")).to_be_visible()
    page.get_by_label("Subjective").fill(NOTE)
    expect(page.locator("#draft-status")).to_contain_text("Saved")
    page.get_by_label("Add a diagnosis").fill(DIAGNOSIS)
    page.locator("#dx-results").get_by_role("button", name=DIAGNOSIS).click()
    expect(page.locator("#diagnoses")).to_contain_text(f"1. {DIAGNOSIS} {DIAGNOSIS_WORDS}")
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
    page.get_by_label("Billing code").fill(CPT)
    expect(page.locator("#code-results")).to_contain_text(f"CPT {CPT}")
    page.locator("#code-results").get_by_label(f"CPT {CPT}").check()
    expect(page.get_by_label(f"1 · {DIAGNOSIS}")).to_be_checked()
    page.get_by_role("button", name="Add line").click()
    expect(page.locator("#line-1")).to_contain_text(f"CPT {CPT}")
    expect(page.locator("#total")).to_contain_text("Total $150.00")
    expect(page.locator("#draft-status .banner")).to_have_count(0)
    review_and_sign(page, clock, provider.user.email, "$150.00")
    booked.claim_id = claim_of(db, booked.appointment_id).id


def sign_through_the_emr(db, clock, clinic: Clinic, booked: Booked) -> None:
    """The same signature through the EMR service (the pages are journey 1's)."""
    provider = clinic.provider
    actor = Actor("user", provider.user_id, "provider")
    appointment = db.get(Appointment, booked.appointment_id)
    encounter = emr.open_encounter(db, appointment, actor=actor, user=provider.user, now=clock.now(),
                                   source="day_view")
    emr.save_draft(db, encounter.id, expected_version=encounter.version, fields={"subjective": NOTE}, actor=actor,
                   now=clock.now())
    emr.add_diagnosis(db, encounter.id, DIAGNOSIS, actor=actor, now=clock.now())
    emr.add_line(db, encounter.id, code_id=clinic.code.id, modifier="", units=1, pointers=[1], actor=actor,
                 now=clock.now())
    encounter = emr.get(db, encounter.id)
    emr.sign(db, encounter.id, expected_version=encounter.version, user=provider.user, actor=actor, now=clock.now())
    db.commit()
    booked.claim_id = claim_of(db, booked.appointment_id).id


# -- the claim, the payer's answer, the reconciliation --------------------------------------------------

def claim_of(db, appointment_id: int) -> Claim:
    db.expire_all()
    return db.scalars(select(Claim).where(Claim.appointment_id == appointment_id, Claim.rank == "primary")).one()


def balance_case(db, appointment_id: int) -> CollectionCase | None:
    db.expire_all()
    charge = db.scalar(select(Charge).where(Charge.appointment_id == appointment_id, Charge.purpose == "balance"))
    if charge is None:
        return None
    return db.scalar(select(CollectionCase).where(CollectionCase.charge_id == charge.id))


def submitted_automatically(db, queue, booked: Booked) -> None:
    """CLAIM_AUTO_SUBMIT: signing asked for ``submit_claim``; the worker runs it."""
    claim = claim_of(db, booked.appointment_id)
    assert claim.status == "draft"
    queued = [(j.func_name, j.args) for j in queue.jobs]
    assert ("app.jobs.claims.submit_claim", (claim.id,)) in queued, queued
    assert claim_jobs.submit_claim(claim.id) == "submitted"


def payer_answers(db, payer_sandbox, booked: Booked) -> str:
    """The simulator adjudicates at once (not after its delay); the poll job applies the remittance and
    the reconcile job (asked for after that commit) decides; its outcome."""
    claim = claim_of(db, booked.appointment_id)
    assert claim.status == "submitted"
    payer_sandbox.adjudicate_now(str(claim.uuid))
    polled = claim_jobs.poll_remittances()
    assert polled.get("applied") == 1, polled
    return claim_jobs.reconcile_visit(booked.appointment_id)


def billing_submits_and_checks(page, base: str, db, payer_sandbox, factories, booked: Booked, *, answer: str) -> None:
    """Billing, on a laptop: Submit on /billing/claims, the payer answers, "Check now" applies it and the
    worklist shows ``answer``."""
    billing = factories.user("billing", full_name="Bea Biller")
    page.context.clear_cookies()                                  # the provider's laptop, now billing's
    sign_in(page, base, billing.email)
    page.goto(f"{base}/billing/claims", wait_until="load")
    row = page.locator(f"#claim-{booked.claim_id}")
    expect(row.locator('[data-field="status"]')).to_have_text("Draft: not sent")
    expect(row).to_contain_text(f"Payer {PAYER_ID} · billed $150.00")
    row.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Sent to the clearinghouse: payer claim number")).to_be_visible()
    claim = claim_of(db, booked.appointment_id)
    assert claim.status == "submitted" and claim.payer_claim_number
    payer_sandbox.adjudicate_now(str(claim.uuid))
    page.goto(f"{base}/billing/claims", wait_until="load")
    page.get_by_role("button", name="Check now").click()
    expect(page.get_by_text("1 new answer from payers applied.")).to_be_visible()
    expect(page.locator(f"#claim-{booked.claim_id} [data-field='answer']")).to_contain_text(answer)


# -- what the patient sees, what Stripe holds -------------------------------------------------------------

def statement_on_phone(page, base: str, appointment_id: int) -> dict:
    """The statement page on the phone: {label: amount} of the insurer rows, the explanation, the status."""
    page.goto(f"{base}/appointments/{appointment_id}")
    page.get_by_role("link", name="Itemized statement").click()
    expect(page.get_by_role("heading", name="Itemized statement")).to_be_visible()
    narrow(page)
    rows = {}
    for row in page.locator("tr[data-hybrid-row]").all():
        rows[row.locator("th").inner_text().strip()] = row.locator("td").inner_text().strip()
    explanation = page.locator('#insurance-answer [data-field="explanation"]')
    return {"rows": rows, "explanation": explanation.inner_text() if explanation.count() else "",
            "status": page.locator('[data-field="status"]').inner_text(),
            "balance": page.locator('[data-field="balance-row"]').inner_text(),
            "text": page.locator("main").inner_text()}


def intents(stripe_admin, customer: str) -> list:
    return sorted(stripe_admin.intents_of(customer), key=lambda i: i.created)


def refunds_at_stripe(stripe_admin, intent_id: str) -> list:
    return list(stripe_admin.client.v1.refunds.list(params={"payment_intent": intent_id}).data)


def notifications_of(db, appointment_id: int, template: str | None = None) -> list[Notification]:
    db.expire_all()
    query = select(Notification).where(Notification.appointment_id == appointment_id)
    if template:
        query = query.where(Notification.template == template)
    return list(db.scalars(query.order_by(Notification.id)))


def pay_link(db, appointment_id: int, channel: str) -> str:
    """The path of the pay link in the failure message sent on ``channel``."""
    [message] = notifications_of(db, appointment_id, "visit_payment_failed")[-1:] if channel == "any" else [
        n for n in notifications_of(db, appointment_id, "visit_payment_failed") if n.channel == channel]
    text = render(db, message).text
    assert message.context["link"] in text
    return urlsplit(message.context["link"]).path


# -- PHI watch: every request to Stripe (server and the page's Stripe.js), every message --------------------

def watch_stripe_js(page, sandbox_base: str) -> list[str]:
    """What the page's Stripe.js sends to the sandbox (URL and body), as it happens."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(f"{r.url}\n{r.post_data or ''}") if r.url.startswith(sandbox_base)
            else None)
    return seen


def _decoded(text: str) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(text)


def run_the_queue(app) -> None:
    """Whatever the journey queued so far (the confirmation message, the GFE delivery, the jobs the test
    already ran by hand), run as the worker would: each job is safe to run again. None may fail."""
    from rq import SimpleWorker

    from app.jobs import get_queue, redis_connection, set_app

    set_app(app)
    queue = get_queue("default", app)
    before = set(queue.failed_job_registry.get_job_ids())      # the session's queue: earlier tests' failures
    SimpleWorker([queue], connection=redis_connection(app)).work(burst=True)
    failed = [j for j in queue.failed_job_registry.get_job_ids() if j not in before]
    assert failed == [], [(job.func_name, (job.latest_result().exc_string or "")[-400:])
                          for job in map(queue.fetch_job, failed)]


def assert_no_phi_left_home(db, stripe_admin, recording: Recording, browser_requests: list[str], booked: Booked,
                            *, more: tuple[str, ...] = ()) -> set[str]:
    """Nothing clinical or identifying in what the app sent to Stripe, what Stripe.js sent, what Stripe
    holds for the patient, or any SMS or email of the visit. Returns what the app POSTed to Stripe
    ("payment_intents", "payment_intents/pi/confirm", "refunds", ...)."""
    secrets = [*booked.person.secrets(), PAYER_NAME, "Aetna", PAYER_ID, "AETNA", "AETNA-PPO", DIAGNOSIS,
               DIAGNOSIS_WORDS, "respiratory", NOTE, CPT, "not covered", "medically", *more]
    secrets = [s for s in secrets if s]
    sent = _decoded("\n".join(f"{url}\n{body}" for _, url, body in recording.sent))
    assert any("/v1/payment_intents" in url for _, url, _ in recording.sent)
    held = [stripe_admin.client.v1.customers.retrieve(booked.customer).to_dict()]
    for intent in stripe_admin.intents_of(booked.customer):
        held.append(intent.to_dict())
        held += [r.to_dict() for r in refunds_at_stripe(stripe_admin, intent.id)]
    held_text = str(held)
    from_page = _decoded("\n".join(browser_requests))
    for secret in secrets:
        for where, text in (("sent to Stripe", sent), ("held by Stripe", held_text), ("Stripe.js", from_page)):
            assert secret.lower() not in text.lower(), f"{secret!r} {where}"
    keys = set(re.findall(r"metadata\[(\w+)\]", sent))
    assert keys <= {"attempt_uuid", "appointment_id", "charge_id", "patient_id", "refund_uuid", "case_id"}, keys
    messages = notifications_of(db, booked.appointment_id)
    assert messages, "the journey sent no message"
    for message in messages:
        rendered = render(db, message)
        body = f"{rendered.subject or ''}\n{rendered.text}\n{rendered.html or ''}\n{message.body or ''}"
        for secret in secrets:
            assert secret.lower() not in body.lower(), (secret, message.template, message.channel)
    return {re.sub(r"\b(pi|re|cus|pm|seti)_\w+", r"\1", url.split("/v1/", 1)[1].split("?")[0])
            for method, url, _ in recording.sent if method == "post"}


def chain_steps(page, base: str, appointment_id: int) -> list[tuple[str, str]]:
    """The audit chain page (billing): (stage, action) of each step, in order."""
    page.goto(f"{base}/billing/appointments/{appointment_id}/chain", wait_until="load")
    steps = page.locator("[data-action]")
    return [(steps.nth(i).get_attribute("data-stage"), steps.nth(i).get_attribute("data-action"))
            for i in range(steps.count())]
