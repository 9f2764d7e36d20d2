"""Messages (SMS, email, the calendar file) and the statement PDF in the patient's language (issue 17).

The language is the patient's profile's (``users.locale``); a patient without one gets English, as
before. Jobs render outside any request: the renderer forces the recipient's locale.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from app.jobs.notifications import render
from app.models import Appointment, Notification, Provider, User
from app.services.seed import seed_demo
from tests.i18n.pseudo import pseudo_translation, untranslated

MESSAGES = Path(__file__).resolve().parents[2] / "app" / "templates" / "messages"
# Messages to staff stay English (their recipients' pages are English too).
STAFF_TEMPLATES = {"dispute_opened_billing", "dispute_opened_provider", "ledger_mismatch", "provider_payment_alert",
                   "provider_payment_recovered", "slot_released_provider"}
PATIENT_TEMPLATES = sorted({p.name.split(".")[0] for p in MESSAGES.glob("*.txt")} - STAFF_TEMPLATES)
START = datetime(2027, 1, 10, 19, 10, tzinfo=timezone.utc)       # Sunday 2:10 PM in New York
CONTEXT = {"link": "http://127.0.0.1:5000/r/token", "code": "123456", "by": "you", "amount": "$25.00"}


@pytest.fixture
def visit(db):
    seed_demo(db)
    db.commit()
    patient = db.scalars(select(User).where(User.role == "patient").order_by(User.id)).first()
    patient.timezone = "America/New_York"
    provider = db.scalars(select(Provider).order_by(Provider.id)).first()
    kind = provider.types[0]
    appointment = Appointment(patient_id=patient.patient.id, provider_id=provider.id, type_id=kind.id,
                              status="confirmed", starts_at=START, ends_at=START + timedelta(minutes=30),
                              blocked_start=START, blocked_end=START + timedelta(minutes=30),
                              price_cents=kind.price_cents, payment_timing=kind.payment_timing,
                              modality="in_person")
    db.add(appointment)
    db.flush()
    return patient, appointment


def _message(db, patient, appointment, template, channel):
    note = Notification(dedupe_key=f"i18n:{template}:{channel}", channel=channel, template=template,
                        recipient="x", user_id=patient.id, appointment_id=appointment.id, scheduled_for=START,
                        status="queued", context=dict(CONTEXT))
    note.user, note.appointment = patient, appointment
    return render(db, note)


def test_a_spanish_speaking_patient_gets_the_confirmation_in_spanish(app, db, visit):
    patient, appointment = visit
    patient.locale = "es"
    sms = _message(db, patient, appointment, "booking_confirmed", "sms")
    assert sms.text.startswith(f"{_clinic(db)}: su cita está confirmada para el domingo, 10 de enero, 2:10 p.m. EST.")
    assert "Detalles, cambios e indicaciones para llegar:" in sms.text
    email = _message(db, patient, appointment, "booking_confirmed", "email")
    assert email.subject == f"Su cita con {_clinic(db)} está confirmada"
    assert "está confirmada para el <strong>domingo, 10 de enero, 2:10 p.m. EST</strong>" in email.html
    assert "Ver los detalles" in email.html
    (name, mimetype, ics), = email.attachments
    assert b"SUMMARY:Cita con" in ics and b"Detalles y cambios:" in ics


def test_a_patient_without_a_language_gets_english_as_before(app, db, visit):
    patient, appointment = visit
    patient.locale = None
    sms = _message(db, patient, appointment, "booking_confirmed", "sms")
    assert sms.text.startswith(f"{_clinic(db)}: your appointment is confirmed for Sunday, January 10 at 2:10 PM EST.")
    email = _message(db, patient, appointment, "booking_confirmed", "email")
    assert email.subject == f"Your appointment with {_clinic(db)} is confirmed"
    assert b"SUMMARY:Appointment with" in email.attachments[0][2]


@pytest.mark.parametrize("template", PATIENT_TEMPLATES)
def test_every_patient_message_is_from_the_catalogue(app, db, visit, template):
    """Rendered with the pseudo-translation: any English outside ``_()`` in a patient's message fails."""
    patient, appointment = visit
    patient.locale = "es"
    from app.services.notifications import local_time

    data = {_clinic(db), "+15550100000", local_time(START, patient.timezone, "es"), *CONTEXT.values()}
    from app.services.clinic import current_clinic

    data |= {v for v in (current_clinic(db).phone, current_clinic(db).address) if v}
    with app.test_request_context(), pseudo_translation(app):
        for channel in ("sms", "email"):
            message = _message(db, patient, appointment, template, channel)
            for part in (message.text, message.subject or "", message.html or ""):
                html = part if part.lstrip().startswith("<") else f"<p>{part}</p>"
                assert untranslated(html, data) == [], (template, channel, part)


@pytest.mark.parametrize("template", PATIENT_TEMPLATES)
def test_every_patient_message_reads_differently_in_spanish(app, db, visit, template):
    patient, appointment = visit
    patient.locale = None
    english = _message(db, patient, appointment, template, "email")
    patient.locale = "es"
    spanish = _message(db, patient, appointment, template, "email")
    assert spanish.text != english.text and spanish.subject != english.subject


def test_spanish_text_messages_stay_short(app, db, visit):
    """An SMS in Spanish is longer than in English; none runs past 4 segments (the accents make
    them UCS-2: 67 characters a segment)."""
    from app.services.notifications import SMS_TEMPLATES

    patient, appointment = visit
    patient.locale = "es"
    for template in sorted(SMS_TEMPLATES - STAFF_TEMPLATES):
        sms = _message(db, patient, appointment, template, "sms")
        assert len(sms.text) <= 4 * 67, (template, len(sms.text), sms.text)


def test_the_statement_pdf_in_spanish(app, db, factories):
    from flask_babel import force_locale

    from app.services import statements
    from app.services.clinic import current_clinic
    from tests.postvisit.test_statements import pdf_text, signed_visit

    signed = signed_visit(db, factories, status="recovering")
    found = statements.statement(db, signed.appointment)
    with app.test_request_context(), force_locale("es"):
        body = statements.statement_pdf(found, clinic=current_clinic(db), patient_display="Ana Ruiz",
                                        compress=False)
    text = pdf_text(body)
    for expected in ("Estado de cuenta detallado", "Paciente: Ana Ruiz", "Fecha del servicio: ",
                     "Descripci\u00f3n", "Saldo pendiente", "Precio unitario", "de diciembre de 2026"):
        assert expected in text, expected
    assert "Itemized statement" not in text and "Balance due" not in text
    with app.test_request_context(), force_locale("en"):
        english = pdf_text(statements.statement_pdf(found, clinic=current_clinic(db), compress=False))
    assert "Itemized statement" in english and "December 7, 2026" in english


def _clinic(db) -> str:
    from app.services.clinic import current_clinic

    return current_clinic(db).name
