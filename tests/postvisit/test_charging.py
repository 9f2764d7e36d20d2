"""Charging a signed post-visit encounter off-session, through the Stripe sandbox: success charges the
fee-schedule total once (one PaymentIntent, a receipt); a duplicated job or settle charges once; soft
declines are retried on the schedule with keys ``<uuid>:confirm#1..#3`` then go to collections and
are written off with a reason and an approver; ``authentication_required`` and a lost card are never
retried, the patient's link pays; no card -> the link's page takes a new card; a payment plan is
three captured instalments; nothing clinical reaches Stripe, SMS or email.

The visit is built directly through the models (a CardSetup-less shortcut: a test card attached to
the patient's Stripe customer, and the appointment pointing at it)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from app.jobs import set_app
from app.jobs import visit_charges as jobs
from app.jobs.notifications import render
from app.models import (Appointment, AuditEvent, BillingCode, Charge, CollectionCase, Encounter, EncounterDiagnosis,
                        EncounterLine, FeeScheduleEntry, Notification, PaymentAttempt)
from app.services import settlement, visit_charges
from app.services.audit import Actor
from app.services.gateway import gateway
from tests.helpers.payments import attach_card

DIAGNOSIS = "J45.909"
NOTE = "Wheezing after the cat visit; inhaler twice a day."
CODE, DESCRIPTOR = "L-ASTHMA", "Asthma review consultation (clinic code)"
UNIT, UNITS = 6000, 2
TOTAL = UNIT * UNITS
SCHEDULE = (timedelta(seconds=10), timedelta(seconds=30), timedelta(seconds=70))
PLAN_INTERVAL = timedelta(seconds=60)
JOB = Actor.system("job")


@pytest.fixture(autouse=True)
def visit_settings(app, monkeypatch):
    """Timings in seconds (the retry schedule, the plan's interval); this run's queue for the jobs."""
    monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], VISIT_RETRY_SCHEDULE=SCHEDULE,
                                                        PLAN_INTERVAL=PLAN_INTERVAL))
    set_app(app)


@dataclass
class Visit:
    appointment_id: int
    case_id: int
    charge_id: int
    patient_id: int
    customer: str
    card: str | None


def signed_visit(db, factories, clock, browser_pay, stripe_admin, number: str | None = "4242424242424242") -> Visit:
    """A completed post-visit appointment (the saved card ``number``, or none), its encounter signed
    with a diagnosis, a note and one line ($60.00 x 2), and the case ``open_case`` makes."""
    visit_type = factories.appointment_type(name="Follow-up", price_cents=0, payment_timing="post_visit")
    provider = factories.provider(types=[visit_type])
    patient = factories.patient()
    patient.user.phone_verified_at = clock.now() - timedelta(days=30)     # texts allowed
    start = clock.now() - timedelta(hours=3)
    patient.stripe_customer_id = gateway().create_customer(key=f"test-customer-{uuid.uuid4()}",
                                                           metadata={"patient_id": str(patient.id)})
    card = attach_card(browser_pay, stripe_admin, patient.stripe_customer_id, number) if number else None
    patient.default_payment_method_id = card
    appointment = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit_type.id,
                              status="completed", starts_at=start, ends_at=start + timedelta(minutes=30),
                              blocked_start=start, blocked_end=start + timedelta(minutes=30), price_cents=0,
                              payment_timing="post_visit", modality="telehealth", payment_method_id=card)
    db.add(appointment)
    db.flush()
    code = db.scalar(select(BillingCode).where(BillingCode.system == "LOCAL", BillingCode.code == CODE))
    if code is None:
        code = BillingCode(system="LOCAL", code=CODE, descriptor=DESCRIPTOR, active=True)
        db.add(code)
        db.flush()
        db.add(FeeScheduleEntry(billing_code_id=code.id, modifier="", price_cents=UNIT, effective_from=date(2026, 1, 1)))
    encounter = Encounter(appointment_id=appointment.id, patient_id=patient.id, provider_id=provider.id,
                          status="open", version=1, subjective=NOTE, opened_at=start, opened_by_id=provider.user_id)
    db.add(encounter)
    db.flush()
    db.add(EncounterDiagnosis(encounter_id=encounter.id, position=1, code=DIAGNOSIS))
    db.add(EncounterLine(encounter_id=encounter.id, position=1, billing_code_id=code.id, code_system="LOCAL",
                         code=CODE, modifier="", units=UNITS, diagnosis_pointers=[1], unit_price_cents=UNIT,
                         amount_cents=TOTAL))
    db.flush()
    encounter.status, encounter.signed_at, encounter.signed_by_id = "signed", clock.now(), provider.user_id
    encounter.content_hash, encounter.total_cents = "cd" * 32, TOTAL
    db.flush()
    case = visit_charges.open_case(db, encounter, actor=Actor("user", provider.user_id, "provider"), now=clock.now())
    db.commit()
    return Visit(appointment.id, case.id, case.charge_id, patient.id, patient.stripe_customer_id, card)


def case_of(db, visit: Visit) -> CollectionCase:
    db.expire_all()
    return db.get(CollectionCase, visit.case_id)


def attempts(db, visit: Visit) -> list[PaymentAttempt]:
    db.expire_all()
    return list(db.scalars(select(PaymentAttempt).where(PaymentAttempt.charge_id == visit.charge_id)
                           .order_by(PaymentAttempt.number)))


def actions(db, visit: Visit, prefix: str = "") -> list[str]:
    return [a for a in db.scalars(select(AuditEvent.action).where(AuditEvent.appointment_id == visit.appointment_id)
                                  .order_by(AuditEvent.seq)) if a.startswith(prefix)]


def messages(db, visit: Visit, template: str) -> list[Notification]:
    return list(db.scalars(select(Notification).where(Notification.appointment_id == visit.appointment_id,
                                                      Notification.template == template).order_by(Notification.id)))


def keys_for(stripe_admin, intent_id: str) -> list[str]:
    """The idempotency key of each confirmation Stripe saw for the intent (its payment_failed /
    succeeded events), oldest first."""
    events = [e.to_dict() for e in stripe_admin.client.v1.events.list(params={"limit": 100}).auto_paging_iter()]
    found = [e for e in events if e["type"] in ("payment_intent.payment_failed", "payment_intent.succeeded")
             and e["data"]["object"]["id"] == intent_id]
    return [e["request"]["idempotency_key"].split(":", 1)[1] for e in reversed(found)]     # listed newest first


def assert_nothing_clinical(text: str) -> None:
    for secret in (DIAGNOSIS, NOTE, CODE, DESCRIPTOR, "Wheezing", "Asthma"):
        assert secret not in text, f"{secret!r} leaked into {text!r}"


def test_a_signed_visit_is_charged_its_total_once_with_a_receipt(db, factories, clock, browser_pay, stripe_admin,
                                                                 queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin)
    assert jobs.charge_case(visit.case_id) == "confirmed"

    case = case_of(db, visit)
    assert (case.status, case.recovered, case.failure_kind) == ("paid", False, None)
    assert case.resolved_at == clock.now()
    [attempt] = attempts(db, visit)
    assert (attempt.status, attempt.amount_captured_cents) == ("succeeded", TOTAL)
    assert db.get(Charge, visit.charge_id).amount_captured_cents == TOTAL
    [intent] = stripe_admin.intents_of(visit.customer)
    assert (intent.id, intent.status, intent.amount_received, intent.capture_method) == (
        attempt.stripe_payment_intent_id, "succeeded", TOTAL, "automatic")
    receipts = messages(db, visit, "visit_payment_received")
    assert sorted(n.channel for n in receipts) == ["email", "sms"]
    text = render(db, receipts[0]).text
    assert "$120.00 was received" in text and f"/appointments/{visit.appointment_id}/statement" in text

    # A duplicated job, the webhook's settle and a second after_settle: still one charge.
    assert jobs.charge_case(visit.case_id) == "paid"
    assert jobs.case_due(visit.case_id) == "nothing_due"
    settlement.settle(db, attempt.id, source="webhook:payment_intent.succeeded", actor=JOB)
    visit_charges.after_settle(db, attempt.id, actor=JOB)
    assert len(stripe_admin.intents_of(visit.customer)) == 1
    assert len(attempts(db, visit)) == 1
    assert db.get(Charge, visit.charge_id).amount_captured_cents == TOTAL
    assert actions(db, visit, "payment.captured") == ["payment.captured"]
    assert actions(db, visit, "visit_charge.") == ["visit_charge.opened", "visit_charge.attempted",
                                                   "visit_charge.paid"]
    assert len(messages(db, visit, "visit_payment_received")) == 2


def test_soft_declines_retry_on_the_schedule_then_collections_then_a_write_off(db, factories, clock, browser_pay,
                                                                               stripe_admin, queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, "4000000000000341")
    first = clock.now()
    assert jobs.charge_case(visit.case_id) == "declined"
    case = case_of(db, visit)
    assert (case.status, case.failure_kind, case.failure_code) == ("recovering", "soft", "generic_decline")
    assert case.next_retry_at == first + SCHEDULE[0] and case.escalate_at == first + SCHEDULE[-1]
    assert len(messages(db, visit, "visit_payment_failed")) == 2        # SMS + email, one failure

    assert jobs.case_due(visit.case_id) == "nothing_due"                 # not yet
    for n, offset in enumerate(SCHEDULE, start=1):
        clock.set(first + offset)
        assert jobs.case_due(visit.case_id) == "declined"
        case = case_of(db, visit)
        assert case.retries_done == n
        if n < len(SCHEDULE):
            assert (case.status, case.next_retry_at) == ("recovering", first + SCHEDULE[n])
    # Retries exhausted and escalate_at reached: the last failure asked for the escalation.
    assert (case.status, case.next_retry_at) == ("recovering", None)
    assert jobs.case_due(visit.case_id) == "collections"
    assert case_of(db, visit).status == "collections"

    [attempt] = attempts(db, visit)                  # the same PaymentIntent all along
    assert [i.id for i in stripe_admin.intents_of(visit.customer)] == [attempt.stripe_payment_intent_id]
    assert keys_for(stripe_admin, attempt.stripe_payment_intent_id) == ["create", "confirm#1", "confirm#2",
                                                                        "confirm#3"]
    assert [a.details["key"] for a in db.scalars(select(AuditEvent).where(
        AuditEvent.action == "visit_charge.retried", AuditEvent.appointment_id == visit.appointment_id)
        .order_by(AuditEvent.seq))] == ["confirm#1", "confirm#2", "confirm#3"]
    assert len(messages(db, visit, "visit_payment_failed")) == 8        # one per failure, by SMS and email
    assert actions(db, visit, "visit_charge.escalated") == ["visit_charge.escalated"]

    billing = factories.user("billing")
    case = case_of(db, visit)
    with pytest.raises(visit_charges.CollectionsError):
        visit_charges.write_off(db, case, reason=" ", approver=billing, actor=Actor.of(billing), now=clock.now())
    provider = factories.user("provider")
    with pytest.raises(visit_charges.CollectionsError):
        visit_charges.write_off(db, case, reason="hardship", approver=provider, actor=Actor.of(billing),
                                now=clock.now())
    db.rollback()
    case = case_of(db, visit)
    visit_charges.write_off(db, case, reason="Hardship: the patient lost their job", approver=billing,
                            actor=Actor.of(billing), now=clock.now())
    db.commit()
    assert jobs.case_due(visit.case_id) == "canceled"                   # the open intent is released
    case = case_of(db, visit)
    assert (case.status, case.written_off_by_id) == ("written_off", billing.id)
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "canceled"
    row = db.scalars(select(AuditEvent).where(AuditEvent.action == "collections.written_off",
                                              AuditEvent.appointment_id == visit.appointment_id)).one()
    assert (row.authorized_by, row.reason) == (billing.id, "Hardship: the patient lost their job")
    with pytest.raises(visit_charges.CollectionsError):
        visit_charges.send_to_agency(db, case, actor=Actor.of(billing), now=clock.now())


def pay_on_session_with_saved_card(db, visit: Visit, sandbox, *, authenticate: bool) -> str:
    """What the pay page does with one tap: the payable attempt, confirmed on-session, 3-D Secure, settle."""
    case = case_of(db, visit)
    patient = case.appointment.patient
    attempt = visit_charges.payable_attempt(db, case, patient=patient, actor=Actor("link", patient.user_id, "patient"))
    intent = visit_charges.pay_saved(db, attempt, patient=patient, payment_method=visit.card,
                                     return_url="http://127.0.0.1/return", actor=JOB)
    db.commit()
    if authenticate:
        assert intent.status == "requires_action"
        sandbox.complete_3ds(attempt.stripe_payment_intent_id, success=True)
    return settlement.settle(db, attempt.id, source="browser", actor=JOB).state


def test_authentication_required_is_never_retried_and_the_link_pays_with_3d_secure(
        db, factories, clock, browser_pay, stripe_admin, sandbox, queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, "4000002760003184")
    assert jobs.charge_case(visit.case_id) == "declined"
    case = case_of(db, visit)
    assert (case.status, case.failure_kind, case.next_retry_at) == ("recovering", "authentication", None)
    failed = messages(db, visit, "visit_payment_failed")
    assert sorted(n.channel for n in failed) == ["email", "sms"]
    link = failed[0].context["link"]
    assert "/pay/" in link and link in render(db, failed[0]).text
    clock.advance(SCHEDULE[0] + timedelta(seconds=1))
    assert jobs.case_due(visit.case_id) == "nothing_due"                 # no automatic retry
    assert actions(db, visit, "visit_charge.retried") == []

    [first] = attempts(db, visit)
    assert pay_on_session_with_saved_card(db, visit, sandbox, authenticate=True) == "confirmed"
    case = case_of(db, visit)
    assert (case.status, case.recovered) == ("paid", True)
    [attempt] = attempts(db, visit)                  # the same PaymentIntent, now confirmed on-session
    assert attempt.id == first.id and attempt.amount_captured_cents == TOTAL
    assert db.get(Charge, visit.charge_id).amount_captured_cents == TOTAL
    assert len(stripe_admin.intents_of(visit.customer)) == 1


def test_a_lost_card_is_not_retried(db, factories, clock, browser_pay, stripe_admin, sandbox, queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin)
    sandbox.mark_card_lost(visit.card)
    assert jobs.charge_case(visit.case_id) == "declined"
    case = case_of(db, visit)
    assert (case.status, case.failure_kind, case.failure_code, case.next_retry_at) == (
        "recovering", "hard", "lost_card", None)
    failed = db.scalars(select(AuditEvent).where(AuditEvent.action == "visit_charge.failed",
                                                 AuditEvent.appointment_id == visit.appointment_id)).one()
    assert failed.details["advice_code"] == "do_not_try_again"
    assert len(messages(db, visit, "visit_payment_failed")) == 2
    clock.advance(SCHEDULE[1])
    assert jobs.case_due(visit.case_id) == "nothing_due"
    clock.advance(SCHEDULE[-1])
    assert jobs.case_due(visit.case_id) == "collections"
    assert actions(db, visit, "visit_charge.retried") == []


def test_no_card_makes_no_stripe_call_and_the_link_takes_a_new_card(db, factories, clock, browser_pay,
                                                                    stripe_admin, queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, number=None)
    assert jobs.charge_case(visit.case_id) == "no_card"
    case = case_of(db, visit)
    assert (case.status, case.failure_kind) == ("recovering", "no_card")
    assert attempts(db, visit) == [] and stripe_admin.intents_of(visit.customer) == []
    assert len(messages(db, visit, "visit_payment_failed")) == 2

    patient = case.appointment.patient
    attempt = visit_charges.payable_attempt(db, case, patient=patient, actor=JOB)
    intent = stripe_admin.intent(attempt.stripe_payment_intent_id)
    assert (intent.amount, intent.capture_method, intent.setup_future_usage) == (TOTAL, "automatic", "off_session")
    browser_pay.pay(attempt, "4242424242424242")
    assert settlement.settle(db, attempt.id, source="browser", actor=JOB).state == "confirmed"
    case = case_of(db, visit)
    assert (case.status, case.recovered) == ("paid", True)
    saved = stripe_admin.client.v1.customers.payment_methods.list(visit.customer, params={"type": "card"}).data
    assert [pm.card.last4 for pm in saved] == ["4242"]
    with pytest.raises(visit_charges.NothingDue):
        visit_charges.payable_attempt(db, case_of(db, visit), patient=patient, actor=JOB)


def test_a_payment_plan_of_three_instalments(db, factories, clock, browser_pay, stripe_admin, sandbox, queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin)
    sandbox.mark_card_lost(visit.card)
    assert jobs.charge_case(visit.case_id) == "declined"
    clock.advance(SCHEDULE[-1])
    assert jobs.case_due(visit.case_id) == "collections"
    # The patient gives billing a new card on the phone; billing sets up three monthly charges.
    new_card = attach_card(browser_pay, stripe_admin, visit.customer, "4242424242424242")
    db.get(Appointment, visit.appointment_id).payment_method_id = new_card
    db.commit()
    billing = factories.user("billing")
    case = case_of(db, visit)
    with pytest.raises(visit_charges.CollectionsError):
        visit_charges.start_plan(db, case, instalments=1, actor=Actor.of(billing), now=clock.now())
    visit_charges.start_plan(db, case, instalments=3, actor=Actor.of(billing), now=clock.now())
    db.commit()
    assert case_of(db, visit).plan_instalment_cents == TOTAL // 3

    for n in (1, 2, 3):
        assert jobs.case_due(visit.case_id) == "confirmed"
        case = case_of(db, visit)
        assert case.plan_paid == n
        assert jobs.case_due(visit.case_id) == "nothing_due"             # the next is a month away
        clock.advance(PLAN_INTERVAL)
    case = case_of(db, visit)
    assert (case.status, case.recovered) == ("paid", True)
    paid = [a for a in attempts(db, visit) if a.status == "succeeded"]
    assert [a.amount_captured_cents for a in paid] == [TOTAL // 3] * 3
    assert sum(a.amount_captured_cents for a in paid) == TOTAL == db.get(Charge, visit.charge_id).amount_captured_cents
    assert actions(db, visit, "collections.") == ["collections.plan_started"] + ["collections.instalment"] * 3
    assert jobs.case_due(visit.case_id) == "nothing_due"


def test_nothing_clinical_reaches_stripe_sms_or_email(db, factories, clock, browser_pay, stripe_admin, queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, "4000000000000341")
    jobs.charge_case(visit.case_id)
    clock.advance(SCHEDULE[-1])
    jobs.case_due(visit.case_id)
    case = case_of(db, visit)
    visit_charges.send_final_notice(db, case, actor=JOB, now=clock.now()) if case.status == "collections" else None
    db.commit()
    [intent] = stripe_admin.intents_of(visit.customer)
    assert intent.description == f"Visit {visit.appointment_id}"
    assert set(intent.metadata.to_dict()) == {"attempt_uuid", "appointment_id", "charge_id", "patient_id", "case_id"}
    assert_nothing_clinical(str(intent.to_dict()))
    sent = list(db.scalars(select(Notification).where(Notification.appointment_id == visit.appointment_id)))
    assert {n.template for n in sent} >= {"visit_payment_failed"}
    for notification in sent:
        message = render(db, notification)
        assert_nothing_clinical(f"{message.subject or ''} {message.text} {message.html or ''}")
