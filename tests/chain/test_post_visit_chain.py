"""The audit chain of a post-visit appointment: appointment -> card set-up and consent -> encounter
(opened, signed with its hash, an addendum) -> the signed lines -> a failed then paid attempt ->
recovery -> outcome, on the page in that order, and the JSON / CSV exports equal to the database
(every audit row of the appointment, the lines' amounts, the attempts). No note text, no diagnosis."""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from sqlalchemy import or_, select

from app.models import Addendum, AuditEvent, EncounterLine, PaymentAttempt, PaymentConsent, PaymentFailure
from app.services import audit
from app.services.audit import Actor
from tests.helpers.web import login
from tests.postvisit.test_statements import DIAGNOSIS, NOTE, SERVICE_AT, TOTAL, signed_visit

ADDENDUM = "Addendum: throat culture negative."
JOB = Actor.system("job")


def card_set_up(db, appt):
    """At booking: the card set up (SetupIntent) and the patient's consent to the later charge."""
    patient_id = appt.patient_id
    booked = SERVICE_AT - timedelta(days=3)
    consent = PaymentConsent(appointment_id=appt.id, patient_id=patient_id, kind="post_visit_charge",
                             wording="I authorize the clinic to charge my card after the visit.",
                             wording_version="pv-1", payment_method_id="pm_card_visa", card_brand="visa",
                             card_last4="4242", accepted_at=booked, accepted_by_id=appt.patient.user_id)
    db.add(consent)
    db.flush()
    patient = Actor("user", appt.patient.user_id, "patient")
    audit.record(db, actor=patient, action="card_setup.started", patient_id=patient_id, appointment_id=appt.id,
                 at=booked)
    audit.record(db, actor=Actor.system("webhook"), action="card_setup.succeeded", patient_id=patient_id,
                 appointment_id=appt.id, at=booked + timedelta(seconds=5))
    audit.record(db, actor=patient, action="consent.recorded", patient_id=patient_id, appointment_id=appt.id,
                 at=booked + timedelta(seconds=5), details={"consent_id": consent.id, "wording_version": "pv-1"})


def failed_then_paid(db, factories):
    """A signed post-visit visit whose off-session charge was declined (insufficient funds), retried
    on the schedule and paid: rows through the models, audit rows as the services write them."""
    visit = signed_visit(db, factories, status="recovering", payment_method_id="pm_card_visa", booked=card_set_up)
    appt, patient_id = visit.appointment, visit.appointment.patient_id
    provider = Actor("user", visit.provider_user_id, "provider")
    addendum = Addendum(encounter_id=visit.encounter.id, text=ADDENDUM, signed_by_id=visit.provider_user_id,
                        signed_at=SERVICE_AT + timedelta(hours=2), content_hash="cd" * 32)
    db.add(addendum)
    db.flush()
    audit.record(db, actor=provider, action="encounter.addendum", patient_id=patient_id, appointment_id=appt.id,
                 encounter_id=visit.encounter.id, at=addendum.signed_at,
                 details={"addendum_id": addendum.id, "content_hash": addendum.content_hash})

    day1 = SERVICE_AT + timedelta(hours=1)
    attempt = PaymentAttempt(charge_id=visit.charge.id, number=1, status="requires_payment_method",
                             amount_cents=TOTAL, stripe_payment_intent_id=f"pi_chain_{visit.charge.id}")
    db.add(attempt)
    db.flush()
    db.add(PaymentFailure(attempt_id=attempt.id, dedupe_key="ch_1", code="card_declined",
                          decline_code="insufficient_funds", stripe_charge_id="ch_1"))
    intent = attempt.stripe_payment_intent_id
    audit.record(db, actor=JOB, action="visit_charge.attempted", patient_id=patient_id, appointment_id=appt.id,
                 encounter_id=visit.encounter.id, payment_attempt_id=attempt.id, stripe_object_id=intent, at=day1,
                 details={"amount_cents": TOTAL})
    audit.record(db, actor=JOB, action="payment.attempted", patient_id=patient_id, appointment_id=appt.id,
                 payment_attempt_id=attempt.id, stripe_object_id=intent, at=day1, details={"amount_cents": TOTAL})
    audit.record(db, actor=JOB, action="payment.declined", outcome="failure", patient_id=patient_id,
                 appointment_id=appt.id, payment_attempt_id=attempt.id, stripe_object_id=intent, at=day1,
                 details={"code": "card_declined", "decline_code": "insufficient_funds"})
    audit.record(db, actor=JOB, action="visit_charge.failed", outcome="failure", patient_id=patient_id,
                 appointment_id=appt.id, encounter_id=visit.encounter.id, payment_attempt_id=attempt.id, at=day1,
                 details={"kind": "soft", "code": "insufficient_funds"})
    audit.record(db, actor=JOB, action="visit_charge.retry_scheduled", patient_id=patient_id,
                 appointment_id=appt.id, encounter_id=visit.encounter.id, at=day1, details={"retry": 1})
    day2 = day1 + timedelta(days=1)
    attempt.status, attempt.amount_captured_cents, attempt.captured_at = "succeeded", TOTAL, day2
    attempt.card_brand, attempt.card_last4 = "visa", "4242"
    visit.charge.status, visit.charge.amount_captured_cents = "captured", TOTAL
    visit.case.status, visit.case.recovered, visit.case.retries_done, visit.case.resolved_at = "paid", True, 1, day2
    audit.record(db, actor=JOB, action="visit_charge.retried", patient_id=patient_id, appointment_id=appt.id,
                 encounter_id=visit.encounter.id, payment_attempt_id=attempt.id, at=day2, details={"retry": 1})
    audit.record(db, actor=JOB, action="payment.succeeded", patient_id=patient_id, appointment_id=appt.id,
                 payment_attempt_id=attempt.id, stripe_object_id=intent, at=day2)
    audit.record(db, actor=JOB, action="payment.captured", patient_id=patient_id, appointment_id=appt.id,
                 payment_attempt_id=attempt.id, stripe_object_id=intent, at=day2,
                 details={"amount_received": TOTAL})
    audit.record(db, actor=JOB, action="visit_charge.paid", patient_id=patient_id, appointment_id=appt.id,
                 encounter_id=visit.encounter.id, payment_attempt_id=attempt.id, at=day2,
                 details={"amount_cents": TOTAL, "recovered": True})
    db.commit()
    return visit, attempt


def test_post_visit_chain_page_and_export_match_the_database(app, db, client, factories):
    visit, attempt = failed_then_paid(db, factories)
    appt = visit.appointment
    billing_user = factories.user("billing")
    assert login(client, billing_user.email).status_code == 303

    page = client.get(f"/billing/appointments/{appt.id}/chain")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    stages = ["patient", "appointment", "card", "encounter", "signature", "codes", "charge", "addendum", "payment",
              "decline", "recovery", "capture", "paid", "outcome"]
    firsts = [html.index(f'data-stage="{stage}"') for stage in stages]
    assert firsts == sorted(firsts), "each stage appears, in chain order"
    for text in ("G2012-95", "L-CONSULT", "× 2", "ab" * 32, "cd" * 32, "$1,284.50", "insufficient_funds",
                 "outcome.paid", "recovered", attempt.stripe_payment_intent_id):
        assert text in html, text
    for secret in (DIAGNOSIS, NOTE, ADDENDUM, "viral"):
        assert secret not in html, secret

    data = json.loads(client.get(f"/billing/appointments/{appt.id}/chain.json").get_data(as_text=True))
    steps = data["steps"]
    events = db.scalars(select(AuditEvent).where(
        or_(AuditEvent.appointment_id == appt.id, AuditEvent.encounter_id == visit.encounter.id,
            AuditEvent.payment_attempt_id == attempt.id),
        AuditEvent.action.not_in(("audit.chain_viewed", "audit.chain_exported"))).order_by(AuditEvent.seq)).all()
    # Every audit row of the appointment, once each and in order (the view of this page included).
    assert [(s["audit_seq"], s["action"]) for s in steps if s["audit_seq"]] == [(e.seq, e.action) for e in events]
    # The signed lines, right after the signature, as the database holds them.
    signed_at = next(i for i, s in enumerate(steps) if s["action"] == "encounter.signed")
    line_steps = [s for s in steps if s["stage"] == "codes"]
    assert steps[signed_at + 1:signed_at + 1 + len(line_steps)] == line_steps
    lines = db.scalars(select(EncounterLine).where(EncounterLine.encounter_id == visit.encounter.id)
                       .order_by(EncounterLine.position)).all()
    assert [(s["code"], s["units"], s["amount_cents"]) for s in line_steps] == [
        (f"{l.code_system} {l.code}{'-' + l.modifier if l.modifier else ''}", l.units, l.amount_cents) for l in lines]
    assert [(l["code"], l["units"], l["unit_price_cents"], l["amount_cents"]) for l in data["encounter"]["lines"]] == [
        (l.code, l.units, l.unit_price_cents, l.amount_cents) for l in lines]
    assert data["encounter"]["content_hash"] == visit.encounter.content_hash
    assert sum(l["amount_cents"] for l in data["encounter"]["lines"]) == data["encounter"]["total_cents"] == TOTAL
    assert steps[signed_at]["content_hash"] == visit.encounter.content_hash
    # The attempts as the database holds them.
    attempts = db.scalars(select(PaymentAttempt).where(PaymentAttempt.charge_id == visit.charge.id)
                          .order_by(PaymentAttempt.id)).all()
    assert [(a["id"], a["status"], a["amount_cents"], a["amount_captured_cents"], a["stripe_payment_intent_id"])
            for a in data["attempts"]] == [(a.id, a.status, a.amount_cents, a.amount_captured_cents,
                                            a.stripe_payment_intent_id) for a in attempts]
    assert data["case"]["status"] == "paid" and data["case"]["recovered"] is True
    assert data["captured_cents"] == TOTAL and data["payment_timing"] == "post_visit"
    by_action = {s["action"]: s for s in steps}
    assert by_action["visit_charge.failed"]["decline_code"] == "insufficient_funds"
    assert by_action["payment.captured"]["amount_cents"] == TOTAL
    assert steps[-1]["action"] == "outcome.paid" and "recovered" in steps[-1]["reason"]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    dumped = json.dumps(data)
    for secret in (DIAGNOSIS, NOTE, ADDENDUM):
        assert secret not in dumped

    rows = list(csv.DictReader(io.StringIO(client.get(f"/billing/appointments/{appt.id}/chain.csv")
                                           .get_data(as_text=True))))
    assert [r["action"] for r in rows] == [s["action"] for s in steps]
    assert [r["code"] or None for r in rows] == [s["code"] for s in steps]
    assert [r["content_hash"] or None for r in rows] == [s["content_hash"] for s in steps]


def test_a_consent_and_a_signature_without_audit_rows_still_appear(app, db, client, factories):
    """Evidence from the tables: a signed encounter and a consent appear even with no audit row."""
    visit = signed_visit(db, factories, status="recovering", audit_steps=False)
    appt = visit.appointment
    db.add(PaymentConsent(appointment_id=appt.id, patient_id=appt.patient_id, kind="post_visit_charge",
                          wording="I authorize ...", wording_version="pv-1", card_brand="visa", card_last4="4242",
                          accepted_at=SERVICE_AT - timedelta(days=1)))
    db.commit()
    billing_user = factories.user("billing")
    assert login(client, billing_user.email).status_code == 303
    steps = json.loads(client.get(f"/billing/appointments/{appt.id}/chain.json").get_data(as_text=True))["steps"]
    actions = [s["action"] for s in steps]
    assert "encounter.signed" in actions and actions.count("encounter.line") == 2 and "consent.recorded" in actions
    assert steps[-1]["action"] == "outcome.recovering"
