"""The patient's itemized statement of a signed post-visit visit (page and PDF): the signed lines
and total as signed (a later fee change changes nothing), what was paid and with which card, the
balance due with a way to pay it, and never a diagnosis or note text. Another patient's is a 404;
neither page nor PDF is cached.

``signed_visit`` (also used by tests/postvisit/test_collections_ui.py and
tests/chain/test_post_visit_chain.py) builds the rows directly through the models: a post-visit
appointment, its encounter with a diagnosis and two billing lines priced and signed, the visit
charge and its collections case."""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.models import (Appointment, AuditEvent, BillingCode, Charge, CollectionCase, Encounter, EncounterDiagnosis,
                        EncounterLine, FeeScheduleEntry, PaymentAttempt)
from app.services import audit, statements
from app.services.audit import Actor
from tests.helpers.phone import sign_in, small_tap_targets
from tests.helpers.web import login

SERVICE_AT = datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc)      # Monday 10:00 New York
DIAGNOSIS = "J06.9"                                                   # acute upper respiratory infection
NOTE = "Sore throat for three days; the patient worries about strep."
LINES = (("HCPCS", "G2012", "95", "Brief virtual check-in by a qualified practitioner", 2, 2500),
         ("LOCAL", "L-CONSULT", "", "Extended telehealth consultation (clinic code)", 1, 123450))
TOTAL = 2 * 2500 + 123450                                             # $1,284.50


@dataclass
class Visit:
    appointment: Appointment
    encounter: Encounter
    charge: Charge
    case: CollectionCase
    provider_user_id: int


def signed_visit(db, factories, *, patient=None, status: str = "recovering", captured: int = 0,
                 payment_method_id: str | None = "pm_card_visa", audit_steps: bool = True, booked=None,
                 **case_fields) -> Visit:
    """A completed post-visit appointment whose encounter is signed (a diagnosis, two lines), with its
    visit charge (``captured`` cents taken) and collections case in ``status``. ``booked(db, appt)``
    adds what happened at booking (card set-up, consent) before the visit's rows."""
    visit_type = factories.appointment_type(name="Telehealth follow-up", price_cents=0, payment_timing="post_visit")
    provider = factories.provider(types=[visit_type], full_name="Dr. Ada Lovelace")
    patient = patient or factories.patient()
    appt = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit_type.id, status="completed",
                       starts_at=SERVICE_AT, ends_at=SERVICE_AT + timedelta(minutes=30), blocked_start=SERVICE_AT,
                       blocked_end=SERVICE_AT + timedelta(minutes=30), price_cents=0, payment_timing="post_visit",
                       modality="telehealth", payment_method_id=payment_method_id)
    db.add(appt)
    db.flush()
    provider_actor = Actor("user", provider.user_id, "provider")
    audit.record(db, actor=Actor("user", patient.user_id, "patient"), action="booking.confirmed",
                 patient_id=patient.id, appointment_id=appt.id, at=SERVICE_AT - timedelta(days=3))
    if booked is not None:
        booked(db, appt)
    encounter = Encounter(appointment_id=appt.id, patient_id=patient.id, provider_id=provider.id, status="open",
                          version=1, subjective=NOTE, assessment=f"Likely viral ({DIAGNOSIS}).",
                          opened_at=SERVICE_AT, opened_by_id=provider.user_id, opened_from="telehealth")
    db.add(encounter)
    db.flush()
    if audit_steps:
        audit.record(db, actor=provider_actor, action="encounter.opened", patient_id=patient.id,
                     appointment_id=appt.id, encounter_id=encounter.id, at=SERVICE_AT, details={"source": "telehealth"})
    db.add(EncounterDiagnosis(encounter_id=encounter.id, position=1, code=DIAGNOSIS))
    for position, (system, code, modifier, descriptor, units, price) in enumerate(LINES, start=1):
        billing_code = db.scalar(select(BillingCode).where(BillingCode.system == system, BillingCode.code == code))
        if billing_code is None:
            billing_code = BillingCode(system=system, code=code, descriptor=descriptor, active=True)
            db.add(billing_code)
            db.flush()
            db.add(FeeScheduleEntry(billing_code_id=billing_code.id, modifier=modifier, price_cents=price,
                                    effective_from=date(2026, 1, 1)))
        db.add(EncounterLine(encounter_id=encounter.id, position=position, billing_code_id=billing_code.id,
                             code_system=system, code=code, modifier=modifier, units=units, diagnosis_pointers=[1],
                             unit_price_cents=price, amount_cents=price * units))
        if audit_steps:
            audit.record(db, actor=provider_actor, action="encounter.line_added", patient_id=patient.id,
                         appointment_id=appt.id, encounter_id=encounter.id, at=SERVICE_AT + timedelta(minutes=20),
                         details={"position": position, "system": system, "code": code, "modifier": modifier,
                                  "units": units})
    db.flush()                       # the lines first, then the signature (the trigger freezes a signed note)
    signed_at = SERVICE_AT + timedelta(minutes=40)
    encounter.status, encounter.signed_at, encounter.signed_by_id = "signed", signed_at, provider.user_id
    encounter.content_hash, encounter.total_cents = "ab" * 32, TOTAL
    db.flush()
    if audit_steps:
        audit.record(db, actor=provider_actor, action="encounter.signed", patient_id=patient.id,
                     appointment_id=appt.id, encounter_id=encounter.id, at=signed_at,
                     details={"content_hash": encounter.content_hash, "total_cents": TOTAL, "lines": len(LINES)})
    charge = Charge(appointment_id=appt.id, purpose="visit", amount_cents=TOTAL, currency="usd",
                    status="captured" if captured >= TOTAL else "pending", amount_captured_cents=captured,
                    amount_refunded_cents=0)
    db.add(charge)
    db.flush()
    fields = dict(retries_done=0, plan_paid=0, recovered=False)
    if status not in ("pending", "charging", "paid"):
        fields.update(failure_kind="soft", failure_code="insufficient_funds")
    fields.update(case_fields)
    case = CollectionCase(charge_id=charge.id, encounter_id=encounter.id, appointment_id=appt.id, status=status,
                          **fields)
    db.add(case)
    db.flush()
    if audit_steps:
        audit.record(db, actor=Actor.system("job"), action="visit_charge.opened", patient_id=patient.id,
                     appointment_id=appt.id, encounter_id=encounter.id, at=signed_at + timedelta(seconds=1),
                     details={"charge_id": charge.id, "case_id": case.id, "amount_cents": TOTAL})
    db.commit()
    return Visit(appt, encounter, charge, case, provider.user_id)


def pay(db, visit: Visit, cents: int, *, number: int = 1, brand="visa", last4="4242", at=None) -> PaymentAttempt:
    """A captured attempt of the visit charge (the charge's captured amount follows)."""
    at = at or SERVICE_AT + timedelta(days=1)
    attempt = PaymentAttempt(charge_id=visit.charge.id, number=number, status="succeeded", amount_cents=cents,
                             amount_captured_cents=cents, captured_at=at, card_brand=brand, card_last4=last4,
                             stripe_payment_intent_id=f"pi_stmt_{visit.charge.id}_{number}")
    db.add(attempt)
    visit.charge.amount_captured_cents += cents
    db.commit()
    return attempt


def pdf_text(body: bytes) -> str:
    """The text of a PDF's content streams (fpdf2 deflates them): enough to see what it says."""
    out = []
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", body, re.S):
        data = match.group(1)
        try:
            data = zlib.decompress(data)
        except zlib.error:
            pass
        out.append(data.decode("latin-1"))
    return "\n".join(out)


# -- the service --------------------------------------------------------------------------------

def test_statement_lists_the_signed_lines_paid_and_balance(db, factories):
    visit = signed_visit(db, factories, status="recovering")
    pay(db, visit, 5000, brand="mastercard", last4="4444")
    found = statements.statement(db, visit.appointment)
    assert [(l.code_system, l.code, l.modifier, l.units, l.unit_price_cents, l.amount_cents) for l in found.lines] == [
        ("HCPCS", "G2012", "95", 2, 2500, 5000), ("LOCAL", "L-CONSULT", "", 1, 123450, 123450)]
    assert found.lines[0].descriptor == LINES[0][3]
    assert (found.total_cents, found.paid_cents, found.refunded_cents, found.balance_cents) == (
        TOTAL, 5000, 0, TOTAL - 5000)
    assert [(p.amount_cents, p.card) for p in found.payments] == [(5000, "Mastercard ending in 4444")]
    assert found.status == "recovering" and "could not be charged" in found.status_label
    text = found.text()
    assert DIAGNOSIS not in text and "Sore throat" not in text


def test_a_fee_change_after_signing_changes_nothing_on_the_statement(db, factories):
    visit = signed_visit(db, factories, status="paid", captured=TOTAL)
    code = db.scalar(select(BillingCode).where(BillingCode.code == "G2012"))
    db.add(FeeScheduleEntry(billing_code_id=code.id, modifier="95", price_cents=9900, effective_from=date(2026, 12, 1)))
    db.commit()
    found = statements.statement(db, visit.appointment)
    assert found.lines[0].unit_price_cents == 2500 and found.total_cents == TOTAL
    assert found.balance_cents == 0 and found.status_label == "Paid in full"


def test_no_statement_before_signing(db, factories):
    visit = signed_visit(db, factories)
    other_type = factories.appointment_type(payment_timing="post_visit", price_cents=0)
    open_appt = Appointment(patient_id=visit.appointment.patient_id, provider_id=visit.appointment.provider_id,
                            type_id=other_type.id, status="completed", starts_at=SERVICE_AT + timedelta(days=1),
                            ends_at=SERVICE_AT + timedelta(days=1, minutes=30),
                            blocked_start=SERVICE_AT + timedelta(days=1),
                            blocked_end=SERVICE_AT + timedelta(days=1, minutes=30), price_cents=0,
                            payment_timing="post_visit", modality="telehealth")
    db.add(open_appt)
    db.flush()
    db.add(Encounter(appointment_id=open_appt.id, patient_id=open_appt.patient_id, provider_id=open_appt.provider_id,
                     status="open", version=1, opened_at=SERVICE_AT))
    db.commit()
    assert statements.statement(db, open_appt) is None


def test_written_off_balance_is_not_due(db, factories):
    approver = factories.user("billing")
    visit = signed_visit(db, factories, status="written_off", written_off_reason="Hardship", written_off_by_id=approver.id)
    found = statements.statement(db, visit.appointment)
    assert found.balance_cents == 0 and found.written_off_cents == TOTAL and found.status_label == "No balance due"


# -- the page and the PDF -------------------------------------------------------------------------

def test_patient_sees_the_itemized_statement_with_pay_now_and_no_diagnosis(app, db, client, factories):
    visit = signed_visit(db, factories, status="recovering")
    pay(db, visit, 5000)
    patient_user = visit.appointment.patient.user
    assert login(client, patient_user.email).status_code == 303

    page = client.get(f"/appointments/{visit.appointment.id}/statement")
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    for text in ("G2012-95", "L-CONSULT", "HCPCS", "LOCAL", LINES[0][3], "$25.00", "$50.00", "$1,234.50",
                 "$1,284.50", "Visa ending in 4242", "Download PDF"):
        assert text in html, text
    balance = re.search(r'data-field="balance">([^<]+)<', html).group(1)
    assert balance == "$1,234.50"
    assert f'href="/appointments/{visit.appointment.id}/pay"' in html and "Pay now" in html
    assert DIAGNOSIS not in html and "J06" not in html and "Sore throat" not in html and "viral" not in html
    viewed = db.scalars(select(AuditEvent).where(AuditEvent.action == "phi.viewed",
                                                 AuditEvent.appointment_id == visit.appointment.id)).all()
    assert [v.details["kind"] for v in viewed] == ["statement"], "the view of the statement is audited"

    # The appointment page links to the statement once the note is signed.
    appointment_page = client.get(f"/appointments/{visit.appointment.id}").get_data(as_text=True)
    assert f"/appointments/{visit.appointment.id}/statement" in appointment_page

    pdf = client.get(f"/appointments/{visit.appointment.id}/statement.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.headers["Content-Disposition"].startswith("attachment;")
    assert pdf.headers["Cache-Control"] == "no-store"
    body = pdf.get_data()
    assert body.startswith(b"%PDF")
    text = pdf_text(body)
    for expected in ("G2012-95", "L-CONSULT", "$25.00", "$50.00", "$1,234.50", "$1,284.50", "Balance due",
                     "Visa ending in 4242", "December 7, 2026", patient_user.full_name):
        assert expected in text, expected
    assert DIAGNOSIS not in text and "J06" not in text and "Sore throat" not in text and "viral" not in text


def test_a_paid_statement_offers_no_payment(app, db, client, factories):
    visit = signed_visit(db, factories, status="paid", captured=0)
    pay(db, visit, TOTAL)
    assert login(client, visit.appointment.patient.user.email).status_code == 303
    html = client.get(f"/appointments/{visit.appointment.id}/statement").get_data(as_text=True)
    assert "Pay now" not in html and "Paid in full" in html


def test_another_patient_gets_404_and_staff_403(app, db, client, factories):
    visit = signed_visit(db, factories)
    stranger = factories.patient()
    assert login(client, stranger.user.email).status_code == 303
    for suffix in ("statement", "statement.pdf"):
        assert client.get(f"/appointments/{visit.appointment.id}/{suffix}").status_code == 404
    denied = db.scalars(select(AuditEvent).where(AuditEvent.action == "access.denied")).all()
    assert len(denied) == 2
    staff = app.test_client()
    billing = factories.user("billing")
    assert login(staff, billing.email).status_code == 303
    assert staff.get(f"/appointments/{visit.appointment.id}/statement").status_code == 403


def test_an_unsigned_visit_has_no_statement_page(app, db, client, factories):
    patient = factories.patient()
    visit_type = factories.appointment_type(payment_timing="post_visit", price_cents=0)
    provider = factories.provider(types=[visit_type])
    appt = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit_type.id, status="confirmed",
                       starts_at=SERVICE_AT, ends_at=SERVICE_AT + timedelta(minutes=30), blocked_start=SERVICE_AT,
                       blocked_end=SERVICE_AT + timedelta(minutes=30), price_cents=0, payment_timing="post_visit",
                       modality="telehealth")
    db.add(appt)
    db.commit()
    assert login(client, patient.user.email).status_code == 303
    assert client.get(f"/appointments/{appt.id}/statement").status_code == 404
    assert "/statement" not in client.get(f"/appointments/{appt.id}").get_data(as_text=True)


@pytest.mark.e2e
def test_statement_reads_on_a_phone(live_server, phone, db, factories):
    """At 360 px the lines stack (nothing scrolls sideways), every tap target is big enough, and the
    Pay now and Download PDF buttons are there."""
    visit = signed_visit(db, factories, status="recovering")
    sign_in(phone, live_server, visit.appointment.patient.user.email)
    phone.goto(f"{live_server}/appointments/{visit.appointment.id}/statement")
    expect(phone.get_by_role("heading", name="Itemized statement")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    row = phone.locator('tr[data-line="2"]')
    expect(row.locator('[data-field="descriptor"]')).to_contain_text("Extended telehealth consultation")
    expect(row.locator('[data-field="amount"]')).to_have_text("$1,234.50")
    expect(phone.get_by_role("link", name="Pay now")).to_be_visible()
    expect(phone.get_by_role("link", name="Download PDF")).to_be_visible()
    assert small_tap_targets(phone) == []
    with phone.expect_download() as download:
        phone.get_by_role("link", name="Download PDF").click()
    assert download.value.suggested_filename == f"statement-{visit.appointment.id}.pdf"


def test_while_the_card_is_being_charged_there_is_no_pay_button(app, db, client, factories):
    visit = signed_visit(db, factories, status="charging")
    assert login(client, visit.appointment.patient.user.email).status_code == 303
    html = client.get(f"/appointments/{visit.appointment.id}/statement").get_data(as_text=True)
    assert "Pay now" not in html and "being charged" in html and "$1,284.50" in html
