"""Every SMS and email template, rendered for the seeded patients, carries no PHI:
no name, phone, email, birth date, provider, specialty, visit type or reason."""
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from app.jobs.notifications import render
from app.models import Appointment, AppointmentType, Notification, Provider, Specialty, User
from app.services.seed import seed_demo

TEMPLATES = sorted({p.name.split(".")[0] for p in
                    (Path(__file__).resolve().parents[2] / "app" / "templates" / "messages").glob("*.txt")})


def test_the_template_list_is_not_empty():
    assert {"booking_confirmed", "reminder", "payment_declined", "hold_released", "booking_canceled",
            "phone_code", "password_reset"} <= set(TEMPLATES)


@pytest.mark.parametrize("locale", [None, "es"])      # English, and Spanish (issue 17)
@pytest.mark.parametrize("channel", ["sms", "email"])
def test_no_template_carries_phi(app, db, channel, locale):
    seed_demo(db)
    db.commit()
    patients = db.scalars(select(User).where(User.role == "patient")).all()
    for patient in patients:
        patient.locale = locale
    providers = db.scalars(select(Provider)).all()
    forbidden = set()
    for user in db.scalars(select(User)):
        forbidden |= {user.full_name, *user.full_name.split(), user.phone or "\0"}
    forbidden |= {s.name for s in db.scalars(select(Specialty))}
    forbidden |= {t.name for t in db.scalars(select(AppointmentType))}
    forbidden -= {"Dr.", "Demo", "\0"}
    stems = ("diagnos", "reason", "behavioral", "therap", "anxiety",   # clinical words, as word starts
             "diagnó", "motivo", "terap", "ansiedad", "conductual")       # ... and in Spanish
    start = datetime(2027, 1, 11, 15, 0, tzinfo=timezone.utc)
    checked = 0
    for patient in patients:
        for provider in providers:       # one of them is in a condition-revealing specialty
            visit = provider.types[0]
            appointment = Appointment(patient_id=patient.patient.id, provider_id=provider.id, type_id=visit.id,
                                      status="confirmed", starts_at=start, ends_at=start + timedelta(minutes=30),
                                      blocked_start=start, blocked_end=start + timedelta(minutes=30),
                                      price_cents=visit.price_cents, payment_timing=visit.payment_timing,
                                      modality=visit.modality, telehealth_room="room-x", cancel_reason="anxiety")
            db.add(appointment)
            db.flush()
            for template in TEMPLATES:
                note = Notification(dedupe_key=f"t:{template}:{appointment.id}", channel=channel,
                                    template=template, recipient="x", user_id=patient.id,
                                    appointment_id=appointment.id, scheduled_for=start, status="queued",
                                    context={"link": "http://127.0.0.1:5000/r/token", "code": "123456",
                                             "by": "you", "amount": "$25.00"})
                note.user, note.appointment = patient, appointment
                message = render(db, note)
                for part in (message.text, message.subject or "", message.html or ""):
                    leaked = sorted(
                        [w for w in forbidden if w and re.search(rf"(?<!\w){re.escape(w)}(?!\w)", part, re.I)]
                        + [w for w in stems if re.search(rf"(?<!\w){w}", part, re.I)])
                    assert leaked == [], f"{template} ({channel}) carries {leaked}: {part!r}"
                checked += 1
            start += timedelta(hours=1)
    assert checked >= len(TEMPLATES) * 6
    db.rollback()
