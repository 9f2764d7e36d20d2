"""Hybrid visits after the visit: a signed hybrid encounter made directly through the models, with a
Coverage for a payer-simulator member of its own (fresh per test: accumulators never leak), a deposit
captured at the Stripe sandbox with the patient's saved card, and the claim ``claims.open_claim`` makes
(as ``emr.sign`` does)."""
from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, replace
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from app.jobs import set_app
from app.models import (Appointment, BillingCode, Charge, Claim, Coverage, Encounter, EncounterDiagnosis,
                        EncounterLine, Estimate, FeeScheduleEntry, Payer, PaymentAttempt, PaymentConsent)
from app.services import claims
from app.services.audit import Actor
from app.services.gateway import gateway
from tests.helpers.payments import attach_card

DIAGNOSIS = "J45.909"
NOTE = "Wheezing after the cat visit; inhaler twice a day."
CPT, PRICE = "99213", 15000                # the clinic's fee; AETNA-DEMO allows 95.00, BCBS-DEMO 90.00
MEMBER_NAME, MEMBER_BIRTH = "Robin Subscriber", "1980-04-02"
JOB = Actor.system("job")
SCHEDULE = (timedelta(seconds=10), timedelta(seconds=30), timedelta(seconds=70))
_numbers = itertools.count(1)

# Shapes of the simulator's demo members (devtools/payer_sandbox/README.md), as fresh members.
SHAPES = {
    "W100000001": dict(payer="AETNA-DEMO", plan_id="AETNA-PPO", deductible_met_cents=20000, oop_met_cents=40000),
    "W100000003": dict(payer="AETNA-DEMO", plan_id="AETNA-PPO", deductible_met_cents=50000, oop_met_cents=100000),
    "W100000004": dict(payer="AETNA-DEMO", plan_id="AETNA-PPO", deductible_met_cents=50000, oop_met_cents=295000),
    "OOP-30-SHORT": dict(payer="AETNA-DEMO", plan_id="AETNA-PPO", deductible_met_cents=50000,
                         oop_met_cents=297000),
    "W100000050": dict(payer="AETNA-DEMO", plan_id="AETNA-PPO", scenario="deny_co50"),
    "W100000197": dict(payer="AETNA-DEMO", plan_id="AETNA-PPO", scenario="deny_co197"),
    "W100000204": dict(payer="AETNA-DEMO", plan_id="AETNA-PPO", scenario="deny_pr204"),
    "W100000777": dict(payer="AETNA-DEMO", plan_id="AETNA-PPO", deductible_met_cents=50000, oop_met_cents=50000,
                       adjudication_overrides={"coinsurance_percent": 0}),
    "W100000666": dict(payer="AETNA-DEMO", plan_id="AETNA-PPO", deductible_met_cents=50000, oop_met_cents=50000,
                       adjudication_overrides={"coinsurance_percent": 40}),
    "BCBS-MET": dict(payer="BCBS-DEMO", plan_id="BCBS-PPO", deductible_met_cents=100000, oop_met_cents=100000),
}
PAYER_NAMES = {"AETNA-DEMO": "Aetna (simulated)", "BCBS-DEMO": "Blue Cross Blue Shield (simulated)"}


@dataclass
class HybridVisit:
    appointment_id: int
    encounter_id: int
    patient_id: int
    customer: str
    card: str | None
    deposit_charge_id: int | None
    deposit_intent: str | None
    member_id: str | None
    claim_id: int | None


@pytest.fixture(autouse=True)
def claim_settings(app, monkeypatch, payer_sandbox, queue):
    """Seconds for the retry schedule; claims wait for billing (no auto-submit) unless a test says so."""
    monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], VISIT_RETRY_SCHEDULE=SCHEDULE,
                                                        CLAIM_AUTO_SUBMIT=False))
    set_app(app)
    yield
    payer_sandbox.reset_faults()


@pytest.fixture
def new_member(payer_sandbox):
    """new_member(shape) -> (payer id, a fresh member id with the shape's plan and accumulators)."""
    def make(shape: str) -> tuple[str, str]:
        fields = dict(SHAPES[shape])
        payer = fields.pop("payer")
        member_id = f"H{int(time.time()) % 100000:05d}{next(_numbers):05d}"
        payer_sandbox.put_member(payer, member_id, **fields)
        return payer, member_id
    return make


def _payer(db, payer_id: str) -> Payer:
    payer = db.get(Payer, payer_id)
    if payer is None:
        payer = Payer(id=payer_id, name=PAYER_NAMES.get(payer_id, payer_id), default_allowed_percent=60)
        db.add(payer)
        db.flush()
    return payer


def _coverage(db, patient_id: int, rank: str, payer_id: str, member_id: str) -> Coverage:
    _payer(db, payer_id)
    coverage = Coverage(patient_id=patient_id, rank=rank, payer_id=payer_id, member_id=member_id,
                        group_number="G-1", plan_name="Demo plan", subscriber_name=MEMBER_NAME,
                        subscriber_birth_date=MEMBER_BIRTH, subscriber_relationship="self", status="active")
    db.add(coverage)
    db.flush()
    return coverage


@pytest.fixture
def hybrid_visit(db, factories, clock, browser_pay, stripe_admin, new_member):
    """hybrid_visit(shape="W100000003", deposit=3900, secondary=None, self_pay=False, card=True) -> HybridVisit.

    A completed hybrid telehealth visit (three hours ago) whose encounter is signed with one line, CPT
    99213 at $150.00; the patient's Stripe customer with a saved card (the appointment's card); the
    deposit captured off-session with it (none when ``deposit`` is 0); the primary (and secondary)
    Coverage for fresh simulator members named on the attached estimate; then ``claims.open_claim``."""
    def make(shape: str | None = "W100000003", *, deposit: int = 3900, secondary: str | None = None,
             self_pay: bool = False, consent: bool = True, provider_npi: str | None = None) -> HybridVisit:
        visit_type = factories.appointment_type(name="Follow-up (insurance)", price_cents=0, payment_timing="hybrid")
        provider = factories.provider(types=[visit_type], npi=provider_npi)
        patient = factories.patient()
        patient.user.phone_verified_at = clock.now() - timedelta(days=30)      # texts allowed
        start = clock.now() - timedelta(hours=3)
        customer = gateway().create_customer(key=f"test-customer-{uuid.uuid4()}",
                                             metadata={"patient_id": str(patient.id)})
        patient.stripe_customer_id = customer
        card = attach_card(browser_pay, stripe_admin, customer)
        patient.default_payment_method_id = card
        appointment = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit_type.id,
                                  status="completed", starts_at=start, ends_at=start + timedelta(minutes=30),
                                  blocked_start=start, blocked_end=start + timedelta(minutes=30), price_cents=0,
                                  payment_timing="hybrid", modality="telehealth", payment_method_id=card)
        db.add(appointment)
        db.flush()
        member_id = primary = second = None
        if shape is not None:
            payer_id, member_id = new_member(shape)
            primary = _coverage(db, patient.id, "primary", payer_id, member_id)
            if secondary:
                payer2, member2 = new_member(secondary)
                second = _coverage(db, patient.id, "secondary", payer2, member2)
        db.add(Estimate(patient_id=patient.id, appointment_type_id=visit_type.id, appointment_id=appointment.id,
                        coverage_id=primary.id if primary and not self_pay else None,
                        secondary_coverage_id=second.id if second and not self_pay else None,
                        kind="self_pay" if self_pay or primary is None else "insured", lines=[],
                        billed_cents=PRICE, patient_cents=deposit, deposit_rule="estimate", deposit_cents=deposit,
                        good_faith=self_pay or primary is None))
        charge_id = intent_id = None
        if deposit:
            charge = Charge(appointment_id=appointment.id, purpose="deposit", amount_cents=deposit, status="pending",
                            amount_captured_cents=0, amount_refunded_cents=0)
            db.add(charge)
            db.flush()
            attempt = PaymentAttempt(charge_id=charge.id, number=1, status="creating", amount_cents=deposit,
                                     save_card=True)
            db.add(attempt)
            db.flush()
            intent = gateway().create_offsession_intent(
                key=attempt.key("create"), amount=deposit, currency="usd", customer=customer, payment_method=card,
                metadata={"attempt_uuid": str(attempt.uuid), "appointment_id": str(appointment.id),
                          "charge_id": str(charge.id)}, description=f"Appointment {appointment.id}")
            assert intent.status == "succeeded"
            attempt.stripe_payment_intent_id, attempt.status = intent.id, "succeeded"
            attempt.amount_captured_cents, attempt.captured_at = deposit, clock.now() - timedelta(days=2)
            attempt.card_brand, attempt.card_last4 = "visa", "4242"
            charge.status, charge.amount_captured_cents = "captured", deposit
            charge_id, intent_id = charge.id, intent.id
        if consent:       # what the deposit checkout records (app/services/hybrid_deposit.py)
            from app.services import hybrid_deposit

            db.add(PaymentConsent(appointment_id=appointment.id, patient_id=patient.id, kind="hybrid_balance",
                                  wording=hybrid_deposit.CONSENT_WORDING,
                                  wording_version=hybrid_deposit.CONSENT_VERSION, payment_method_id=card,
                                  card_brand="visa", card_last4="4242", accepted_at=clock.now() - timedelta(days=2),
                                  accepted_by_id=patient.user_id))
        code = db.scalar(select(BillingCode).where(BillingCode.system == "CPT", BillingCode.code == CPT))
        if code is None:
            code = BillingCode(system="CPT", code=CPT, descriptor="Office visit, established patient, low",
                               active=True)
            db.add(code)
            db.flush()
            db.add(FeeScheduleEntry(billing_code_id=code.id, modifier="", price_cents=PRICE,
                                    effective_from=date(2026, 1, 1)))
        encounter = Encounter(appointment_id=appointment.id, patient_id=patient.id, provider_id=provider.id,
                              status="open", version=1, subjective=NOTE, opened_at=start,
                              opened_by_id=provider.user_id)
        db.add(encounter)
        db.flush()
        db.add(EncounterDiagnosis(encounter_id=encounter.id, position=1, code=DIAGNOSIS))
        db.add(EncounterLine(encounter_id=encounter.id, position=1, billing_code_id=code.id, code_system="CPT",
                             code=CPT, modifier="95", units=1, diagnosis_pointers=[1], unit_price_cents=PRICE,
                             amount_cents=PRICE))
        db.flush()
        encounter.status, encounter.signed_at, encounter.signed_by_id = "signed", clock.now(), provider.user_id
        encounter.content_hash, encounter.total_cents = "ab" * 32, PRICE
        db.flush()
        opened = claims.open_claim(db, encounter, actor=Actor("user", provider.user_id, "provider"), now=clock.now())
        db.commit()
        return HybridVisit(appointment.id, encounter.id, patient.id, customer, card, charge_id, intent_id, member_id,
                           opened.id if isinstance(opened, Claim) else None)
    return make
