"""The waitlist rows the PHI-view table (tests/foundation/test_phi_views.py) opens, made on first use
for the table's clinic and cached in the clinic dict."""
from __future__ import annotations


def waitlist_case(clinic: dict) -> dict:
    """{entry_id, token}: the clinic's patient waiting for the clinic's provider (Thursday, 8:00 to
    18:00), offered the free Thursday 10:00 New York (an offer link, as the message carries it)."""
    if "_waitlist" not in clinic:
        from datetime import datetime, time, timedelta, timezone

        from app.extensions import db
        from app.models import Appointment, Notification, Patient
        from app.services import waitlist
        from app.services.audit import Actor

        session = db.session
        appointment = session.get(Appointment, clinic["appointment_id"])
        thursday = datetime(2026, 12, 10, 15, 0, tzinfo=timezone.utc)

        entry = waitlist.join(session, patient=session.get(Patient, clinic["patient_id"]), type_id=appointment.type_id,
                              provider_id=appointment.provider_id, specialty_id=None,
                              first_day=thursday.date() - timedelta(days=3), last_day=thursday.date(),
                              weekdays=0b1111111, earliest=time(8), latest=time(18), timezone="America/New_York",
                              now=datetime(2026, 12, 7, 13, 0, tzinfo=timezone.utc), actor=Actor.system("test"))
        [offer] = waitlist.offer_next(session, provider_id=appointment.provider_id, starts_at=thursday,
                                      now=datetime(2026, 12, 7, 13, 0, tzinfo=timezone.utc))
        session.commit()
        link = session.query(Notification).filter_by(dedupe_key=f"waitlist_offer:{offer.id}").one().context["link"]
        clinic["_waitlist"] = {"entry_id": entry.id, "token": link.rsplit("/w/", 1)[1]}
    return clinic["_waitlist"]
