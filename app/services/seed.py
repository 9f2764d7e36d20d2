"""The demo clinic, seeded once by the run command. Each capability adds its
own demo data here, keyed so a second run adds nothing."""
from __future__ import annotations

from sqlalchemy.orm import Session

from datetime import datetime, time, timedelta

from sqlalchemy import select

from app.models import (AppointmentType, AvailabilityException, AvailabilityRule, ClinicSettings, Provider,
                        Specialty)
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
    _seed_scheduling(session, actor)
    _seed_codes(session, actor)
    _seed_insurance(session, actor)
    _seed_identifiers(session)
    return [(role, email, DEMO_PASSWORD) for role, email, *_ in DEMO_ACCOUNTS]


SPECIALTIES = [("Family medicine", False), ("Dermatology", False), ("Behavioral health", True),
               ("Physical therapy", False)]
TYPES = [
    # name, minutes, buffer before/after, cents, timing, modality, notice min, horizon d, cancel h
    ("Telehealth consult", 30, 0, 5, 12500, "deposit_to_book", "telehealth", 60, 60, 24),
    ("In-person visit", 45, 5, 10, 18000, "post_visit", "in_person", 120, 90, 24),
    ("Follow-up (insurance)", 30, 0, 5, 7500, "hybrid", "telehealth", 60, 60, 24),   # = LOC-FOLLOWUP's price
]
PROVIDERS = [
    # email, name, specialty index, timezone, weekly hours (weekday, start, end), type indexes
    ("provider@example.com", "Dr. Riley Demo", 0, "America/New_York", [(d, 9, 17) for d in range(5)], (0, 1, 2)),
    ("dr.chen@example.com", "Dr. Wei Chen", 0, "America/Chicago", [(d, 8, 12) for d in range(5)], (0, 2)),
    ("dr.okafor@example.com", "Dr. Ngozi Okafor", 1, "America/New_York", [(0, 9, 15), (2, 9, 15), (4, 9, 15)], (0, 1)),
    ("dr.larsen@example.com", "Dr. Erik Larsen", 1, "America/Los_Angeles", [(d, 10, 18) for d in range(1, 6)], (0,)),
    ("dr.patel@example.com", "Dr. Priya Patel", 2, "America/Chicago", [(d, 12, 20) for d in range(5)], (0, 2)),
    ("dr.brooks@example.com", "Dr. Sam Brooks", 3, "America/Los_Angeles", [(d, 7, 13) for d in range(5)], (1,)),
]


def _seed_scheduling(session: Session, actor: Actor) -> None:
    if session.scalar(select(Specialty).limit(1)) is not None:
        return
    specialties = [Specialty(name=name, is_sensitive=sensitive) for name, sensitive in SPECIALTIES]
    types = [AppointmentType(name=n, duration_minutes=m, buffer_before_minutes=bb, buffer_after_minutes=ba,
                             price_cents=c, payment_timing=t, modality=mo, min_notice_minutes=nm,
                             horizon_days=h, cancellation_window_hours=ch)
             for n, m, bb, ba, c, t, mo, nm, h, ch in TYPES]
    session.add_all(specialties + types)
    session.flush()
    next_month = (datetime.now() + timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
    for i, (email, name, spec, tz, hours, type_idx) in enumerate(PROVIDERS):
        user = accounts.find_by_email(session, email) or accounts.create_staff(
            session, actor=actor, full_name=name, email=email, role="provider", timezone_name=tz,
            password=DEMO_PASSWORD)
        provider = Provider(user_id=user.id, specialty_id=specialties[spec].id, timezone=tz,
                            bio=f"{name.split()[-1]} sees patients of all ages.",
                            offers_telehealth=any(types[t].modality == "telehealth" for t in type_idx),
                            offers_in_person=any(types[t].modality == "in_person" for t in type_idx))
        provider.types = [types[t] for t in type_idx]
        session.add(provider)
        session.flush()
        for weekday, start, end in hours:
            session.add(AvailabilityRule(provider_id=provider.id, weekday=weekday, start_time=time(start),
                                         end_time=time(end)))
        off = next_month + timedelta(days=i)
        session.add(AvailabilityException(provider_id=provider.id, starts_local=off,
                                          ends_local=off + timedelta(days=2), reason="vacation",
                                          note="Out of office"))


# Demo NPIs (10 digits, valid Luhn check digit over 80840 + the first nine; not real clinicians') and TIN,
# for the Good Faith Estimate (45 CFR 149.610(c)) and claims. Set only where none is stored yet.
DEMO_CLINIC_NPI, DEMO_CLINIC_TIN = "1234567893", "12-3456789"
DEMO_PROVIDER_NPIS = {
    "provider@example.com": "1122334455", "dr.chen@example.com": "1456789019",
    "dr.okafor@example.com": "1678901236", "dr.larsen@example.com": "1765432103",
    "dr.patel@example.com": "1543219871", "dr.brooks@example.com": "1987654328",
}


def _seed_identifiers(session: Session) -> None:
    clinic = session.get(ClinicSettings, 1)
    if clinic is not None:
        clinic.npi = clinic.npi or DEMO_CLINIC_NPI
        clinic.tax_id = clinic.tax_id or DEMO_CLINIC_TIN
    for email, npi in DEMO_PROVIDER_NPIS.items():
        user = accounts.find_by_email(session, email)
        provider = user and session.scalar(select(Provider).where(Provider.user_id == user.id))
        if provider is not None and not provider.npi and not session.scalar(
                select(Provider.id).where(Provider.npi == npi)):
            provider.npi = npi
    session.flush()


def _seed_codes(session: Session, actor: Actor) -> None:
    """The shipped HCPCS codes, the demo clinic's LOCAL codes, and demo prices (issue 14)."""
    from datetime import date

    from app.services import codes, fees

    codes.seed_shipped(session, actor)
    fees.seed_demo_prices(session, actor, effective_from=date(2025, 1, 1))


# -- insurance (issue 15) ------------------------------------------------------------------------------
# The payer simulator's demo payers (devtools/payer_sandbox/payer.py DEMO_PAYERS; a copy, since the app
# never imports devtools): id, name, default allowed percent of billed, and their allowed amounts per
# code. Only the codes the clinic has are loaded (CPT only once a licensed clinic imported its file);
# a code without a contracted amount is estimated at the payer's default percent, as the simulator
# adjudicates it.
DEMO_PAYERS = [
    ("AETNA-DEMO", "Aetna (simulated)", 60,
     {"CPT:99202": 7500, "CPT:99203": 11000, "CPT:99204": 16500, "CPT:99212": 6000, "CPT:99213": 9500,
      "CPT:99214": 13500, "CPT:99215": 18500, "CPT:90834": 11500, "CPT:90837": 15000, "HCPCS:G2012": 1400,
      "CPT:36415": 300}),
    ("BCBS-DEMO", "Blue Cross Blue Shield (simulated)", 55,
     {"CPT:99203": 10500, "CPT:99204": 15500, "CPT:99212": 5500, "CPT:99213": 9000, "CPT:99214": 12500,
      "CPT:90834": 10500, "CPT:36415": 250}),
    ("MEDICAID-DEMO", "State Medicaid (simulated)", 40,
     {"CPT:99203": 7000, "CPT:99213": 5500, "CPT:99214": 8000, "CPT:90834": 7500, "CPT:36415": 200}),
]
HYBRID_TYPE = "Follow-up (insurance)"
HYBRID_SETUP = dict(
    expected_codes=[{"system": "LOCAL", "code": "LOC-FOLLOWUP", "modifier": "", "units": 1}],
    intake_questions=[
        {"key": "better_worse", "label": "Since your last visit, are you feeling better, the same or worse?",
         "kind": "choice", "choices": ["Better", "The same", "Worse"], "required": True},
        {"key": "new_medicines", "label": "Have you started or stopped any medicines since your last visit?",
         "kind": "yesno", "required": True},
        {"key": "questions", "label": "Anything you want to ask at this visit?", "kind": "text", "required": False},
    ],
    intake_required=["demographics", "reason", "questions", "insurance", "consents"],
    deposit_rule="estimate")


def _seed_insurance(session: Session, actor: Actor) -> None:
    """The demo payers with their allowed amounts for the clinic's codes; the hybrid type's expected
    codes, questionnaire, required intake sections and deposit rule (when not set yet)."""
    from app.models import BillingCode
    from app.models.insurance import Payer, PayerAllowedAmount

    codes = {f"{c.system}:{c.code}": c.id for c in session.scalars(select(BillingCode))}
    for payer_id, name, percent, schedule in DEMO_PAYERS:
        if session.get(Payer, payer_id) is None:
            session.add(Payer(id=payer_id, name=name, default_allowed_percent=percent, is_active=True))
            session.flush()
        for key, cents in schedule.items():
            code_id = codes.get(key)
            if code_id is None or session.scalar(select(PayerAllowedAmount.id).where(
                    PayerAllowedAmount.payer_id == payer_id, PayerAllowedAmount.billing_code_id == code_id,
                    PayerAllowedAmount.modifier == "")):
                continue
            session.add(PayerAllowedAmount(payer_id=payer_id, billing_code_id=code_id, modifier="",
                                           allowed_cents=cents))
    hybrid = session.scalar(select(AppointmentType).where(AppointmentType.name == HYBRID_TYPE))
    if hybrid is not None and not hybrid.expected_codes:
        for field_name, value in HYBRID_SETUP.items():
            setattr(hybrid, field_name, value)
        if "CPT:99213" in codes:           # a licensed clinic's CPT file: the payers' contracted code
            hybrid.expected_codes = [{"system": "CPT", "code": "99213", "modifier": "95", "units": 1}]
    session.flush()
