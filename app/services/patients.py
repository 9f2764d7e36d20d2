"""A patient as staff see them: the patient's summary (who, contact, visits with the clinic), and
whether a provider may open it without breaking the glass.

A provider sees the patients on their schedule: anyone with an appointment with them that was
booked (held and then released, or never paid, does not count). Anyone else is opened only
through break-glass: a reason, audited and flagged for the admin (app/blueprints/staff/patients.py,
app/services/access_log.py)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, joinedload

from app.models import Appointment, Patient, User

BOOKED = ("confirmed", "checked_in", "completed", "no_show", "canceled")


@dataclass
class Summary:
    patient: Patient
    appointments: list[Appointment]


def summary(session: Session, patient_id: int, *, limit: int = 50) -> Summary | None:
    patient = session.scalars(select(Patient).options(joinedload(Patient.user))
                              .where(Patient.id == patient_id)).first()
    if patient is None:
        return None
    appointments = session.scalars(
        select(Appointment).options(joinedload(Appointment.provider), joinedload(Appointment.type))
        .where(Appointment.patient_id == patient_id, Appointment.status.in_(BOOKED))
        .order_by(Appointment.starts_at.desc()).limit(limit)).all()
    return Summary(patient, list(appointments))


def on_schedule(session: Session, *, provider_id: int, patient_id: int) -> bool:
    """Has the patient booked a visit with this provider?"""
    return bool(session.scalar(select(exists().where(
        Appointment.provider_id == provider_id, Appointment.patient_id == patient_id,
        Appointment.status.in_(BOOKED)))))


def find(session: Session, query: str, *, limit: int = 50) -> list[Patient]:
    """Patients whose email or name contains ``query`` (case-insensitive), for the admin's search."""
    needle = query.strip()
    if len(needle) < 2:
        return []
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(session.scalars(
        select(Patient).join(User, User.id == Patient.user_id).options(joinedload(Patient.user))
        .where((User.email.ilike(pattern)) | (User.full_name.ilike(pattern)))
        .order_by(User.full_name, Patient.id).limit(limit)).unique())
