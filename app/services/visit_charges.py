"""Post-visit charging: the signed encounter prices the visit and the saved card is charged
off-session; a failure is recovered (the patient's link, scheduled retries after soft declines
only) or ends in collections, a payment plan or a write-off.

The signed encounter is the only trigger: ``open_case`` runs in the signing transaction and asks
for the ``charge_visit`` job after the commit. Everything that moves money goes through the
payment spine (``settlement.settle``) like deposit-to-book, from a committed state.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.models import Charge, CollectionCase, Encounter
from app.services import audit
from app.services.audit import Actor
from app.services.unit_of_work import request

CHARGE_JOB = "charge_visit"          # unit-of-work request: app.jobs.visit_charges.charge_case(case_id)


def open_case(session: Session, encounter: Encounter, *, actor: Actor, now: datetime) -> CollectionCase | None:
    """In the signing transaction: the visit's charge (the signed lines' total) and its collections
    case, made once (a second call finds them); the charge job is asked for after the commit.
    None when the visit is not post-visit or prices to nothing."""
    appointment = encounter.appointment
    if appointment.payment_timing != "post_visit" or not encounter.total_cents:
        return None
    session.execute(pg_insert(Charge).values(
        appointment_id=appointment.id, purpose="visit", amount_cents=encounter.total_cents, currency="usd",
        status="pending", amount_captured_cents=0, amount_refunded_cents=0)
        .on_conflict_do_nothing(constraint="uq_charges_appointment_purpose"))
    charge = session.scalar(select(Charge).where(Charge.appointment_id == appointment.id, Charge.purpose == "visit"))
    case = session.scalar(select(CollectionCase).where(CollectionCase.charge_id == charge.id))
    if case is not None:
        return case
    case = CollectionCase(charge_id=charge.id, encounter_id=encounter.id, appointment_id=appointment.id,
                          status="pending", retries_done=0, plan_paid=0, recovered=False)
    session.add(case)
    session.flush()
    audit.record(session, actor=actor, action="visit_charge.opened", patient_id=appointment.patient_id,
                 appointment_id=appointment.id, encounter_id=encounter.id,
                 details={"charge_id": charge.id, "case_id": case.id, "amount_cents": charge.amount_cents})
    request(session, CHARGE_JOB, case.id)
    return case
