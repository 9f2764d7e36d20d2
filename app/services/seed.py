"""The demo clinic, seeded once by the run command. Each capability adds its
own demo data here, keyed so a second run adds nothing."""
from __future__ import annotations

from sqlalchemy.orm import Session

from app.models import ClinicSettings
from app.services import accounts
from app.services.audit import Actor

DEMO_PASSWORD = "demo-password"
DEMO_ACCOUNTS = [
    # (role, email, name, phone, timezone)
    ("patient", "patient@example.com", "Pat Demo", "+15555550101", "America/New_York"),
    ("provider", "provider@example.com", "Dr. Riley Demo", "+15555550102", "America/New_York"),
    ("billing", "billing@example.com", "Bailey Billing", None, "America/New_York"),
    ("admin", "admin@example.com", "Ada Admin", None, "America/New_York"),
]


def seed_demo(session: Session) -> list[tuple[str, str, str]]:
    """Create what is missing; return (role, email, password) of every demo login."""
    actor = Actor.system("seed")
    if session.get(ClinicSettings, 1) is None:
        session.add(ClinicSettings(id=1, name="Demo Family Clinic", phone="+15555550100",
                                   address="1 Main Street, Springfield", timezone="America/New_York"))
    for role, email, name, phone, tz in DEMO_ACCOUNTS:
        if accounts.find_by_email(session, email) is not None:
            continue
        if role == "patient":
            accounts.register_patient(session, full_name=name, email=email, phone=phone,
                                      timezone_name=tz, password=DEMO_PASSWORD, actor=actor)
        else:
            accounts.create_staff(session, actor=actor, full_name=name, email=email, role=role,
                                  timezone_name=tz, password=DEMO_PASSWORD, phone=phone)
    return [(role, email, DEMO_PASSWORD) for role, email, *_ in DEMO_ACCOUNTS]
