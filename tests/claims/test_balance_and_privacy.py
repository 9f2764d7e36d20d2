"""The balance of a hybrid visit rides the post-visit machinery: a card that expired between the deposit
and the balance fails, the patient gets the pay link and pays with a new card. The signing path opens
the claim (and sends it at once with CLAIM_AUTO_SUBMIT). Nothing clinical, no member id and no payer
name reach Stripe, SMS or email."""
from __future__ import annotations

from dataclasses import replace
from sqlalchemy import select

from app.jobs import claims as jobs
from app.jobs import visit_charges as charge_jobs
from app.jobs.notifications import render
from app.models import (BillingCode, Charge, Claim, CollectionCase, Encounter, EncounterDiagnosis, EncounterLine,
                        Notification)
from app.services import emr, settlement, visit_charges
from app.services.audit import Actor
from tests.claims.conftest import DIAGNOSIS, MEMBER_BIRTH, MEMBER_NAME, NOTE, PAYER_NAMES, PRICE
from tests.helpers.claims import answered, reconciliation_of
from tests.helpers.payments import fresh

JOB = Actor.system("job")


def balance_case(db, appointment_id) -> CollectionCase:
    db.expire_all()
    charge = db.scalar(select(Charge).where(Charge.appointment_id == appointment_id, Charge.purpose == "balance"))
    return db.scalar(select(CollectionCase).where(CollectionCase.charge_id == charge.id))


def test_a_card_expired_since_the_deposit_fails_the_balance_and_the_link_pays_it(db, hybrid_visit, payer_sandbox,
                                                                               sandbox, browser_pay, stripe_admin):
    visit = hybrid_visit("W100000666", deposit=3900)
    answered(db, payer_sandbox, visit.claim_id)
    assert jobs.reconcile_visit(visit.appointment_id) == "balance_charge"
    sandbox.expire_card(visit.card)
    case = balance_case(db, visit.appointment_id)
    assert charge_jobs.charge_case(case.id) == "declined"
    case = fresh(db, CollectionCase, case.id)
    assert (case.status, case.failure_kind, case.failure_code, case.next_retry_at) == (
        "recovering", "hard", "expired_card", None)
    sent = db.scalars(select(Notification).where(Notification.appointment_id == visit.appointment_id,
                                                 Notification.template == "visit_payment_failed")).all()
    assert sorted(n.channel for n in sent) == ["email", "sms"]
    assert "$14.00" in render(db, sent[0]).text and "/pay/" in render(db, sent[0]).text
    attempt = visit_charges.payable_attempt(db, case, patient=case.appointment.patient, actor=JOB)
    browser_pay.pay(attempt, "5555555555554444")
    assert settlement.settle(db, attempt.id, source="browser", actor=JOB).state == "confirmed"
    case = fresh(db, CollectionCase, case.id)
    assert (case.status, case.recovered) == ("paid", True)
    assert case.charge.amount_captured_cents == 1400


def test_signing_a_hybrid_note_opens_the_claim_and_auto_submit_sends_it(db, app, factories, clock, hybrid_visit,
                                                                      payer_sandbox, monkeypatch, queue):
    visit = hybrid_visit("W100000003", deposit=0)        # for its coverage, code and fee schedule
    first = db.get(Encounter, visit.encounter_id)
    appointment = first.appointment
    # a second visit of the same patient, with an open note, signed through the EMR
    from app.models import Appointment

    start = appointment.starts_at.replace(day=appointment.starts_at.day - 1)
    second = Appointment(patient_id=appointment.patient_id, provider_id=appointment.provider_id,
                         type_id=appointment.type_id, status="completed", starts_at=start,
                         ends_at=start + (appointment.ends_at - appointment.starts_at), blocked_start=start,
                         blocked_end=start + (appointment.ends_at - appointment.starts_at), price_cents=0,
                         payment_timing="hybrid", modality="telehealth", payment_method_id=visit.card)
    db.add(second)
    db.flush()
    code = db.scalar(select(BillingCode).where(BillingCode.code == "99213"))
    provider = appointment.provider
    encounter = Encounter(appointment_id=second.id, patient_id=second.patient_id, provider_id=provider.id,
                          status="open", version=1, subjective=NOTE, opened_at=start, opened_by_id=provider.user_id)
    db.add(encounter)
    db.flush()
    db.add(EncounterDiagnosis(encounter_id=encounter.id, position=1, code=DIAGNOSIS))
    db.add(EncounterLine(encounter_id=encounter.id, position=1, billing_code_id=code.id, code_system="CPT",
                         code="99213", modifier="", units=1, diagnosis_pointers=[1]))
    db.commit()
    monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], CLAIM_AUTO_SUBMIT=True))
    emr.sign(db, encounter.id, expected_version=1, user=provider.user,
             actor=Actor("user", provider.user_id, "provider"), now=clock.now())
    db.commit()
    claim = db.scalar(select(Claim).where(Claim.appointment_id == second.id))
    assert (claim.status, claim.rank, claim.billed_cents) == ("draft", "primary", PRICE)
    assert claim.coverage_id == fresh(db, Claim, visit.claim_id).coverage_id
    assert db.scalar(select(CollectionCase).where(CollectionCase.appointment_id == second.id)) is None
    queued = [j.func_name for j in queue.jobs]
    assert "app.jobs.claims.submit_claim" in queued
    assert jobs.submit_claim(claim.id) == "submitted"


def test_nothing_clinical_or_about_the_insurance_reaches_stripe_sms_or_email(db, hybrid_visit, payer_sandbox,
                                                                            sandbox, stripe_admin):
    charged = hybrid_visit("W100000204", deposit=3900)
    answered(db, payer_sandbox, charged.claim_id)
    jobs.reconcile_visit(charged.appointment_id)
    sandbox.expire_card(charged.card)
    charge_jobs.charge_case(balance_case(db, charged.appointment_id).id)
    refunded = hybrid_visit("W100000050", deposit=3900)
    answered(db, payer_sandbox, refunded.claim_id)
    jobs.reconcile_visit(refunded.appointment_id)
    jobs.send_refund(reconciliation_of(db, refunded.appointment_id).refund_id)
    secrets = (DIAGNOSIS, NOTE, "Wheezing", MEMBER_NAME, MEMBER_BIRTH, charged.member_id, refunded.member_id,
               *PAYER_NAMES.values(), "AETNA", "Aetna", "not covered", "medically", "99213")
    at_stripe = [i.to_dict() for v in (charged, refunded) for i in stripe_admin.intents_of(v.customer)]
    at_stripe += [r.to_dict() for r in stripe_admin.client.v1.refunds.list(
        params={"payment_intent": refunded.deposit_intent}).data]
    assert len(at_stripe) == 4          # two deposits, the balance attempt, the refund
    balance = [i for i in at_stripe if i.get("description", "") and "balance" in i["description"]]
    assert [b["description"] for b in balance] == [f"Visit {charged.appointment_id} balance"]
    text = str(at_stripe)
    for secret in secrets:
        assert secret not in text, secret
    sent = db.scalars(select(Notification).where(Notification.appointment_id.in_(
        (charged.appointment_id, refunded.appointment_id)))).all()
    assert {n.template for n in sent} >= {"visit_payment_failed", "refund_issued"}
    for notification in sent:
        message = render(db, notification)
        body = f"{message.subject or ''} {message.text} {message.html or ''}"
        for secret in secrets:
            assert secret not in body, (secret, notification.template)
    # the audit trail carries ids and amounts, never the member id or the payer's name
    from app.models import AuditEvent

    rows = db.scalars(select(AuditEvent).where(AuditEvent.action.like("claim.%") | AuditEvent.action.like(
        "remittance.%") | AuditEvent.action.like("reconciliation.%"))).all()
    assert rows
    dump = str([(r.reason, r.details) for r in rows])
    for secret in (charged.member_id, refunded.member_id, MEMBER_NAME, DIAGNOSIS, *PAYER_NAMES.values()):
        assert secret not in dump, secret
