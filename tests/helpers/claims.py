"""Shared steps for the hybrid claim tests: the payer's answer to a claim (sent, adjudicated at once by
the simulator, its remittance applied by the poll) and the visit's reconciliation row."""
from __future__ import annotations

from sqlalchemy import select

from app.jobs import claims as jobs
from app.models import Claim, Reconciliation
from tests.helpers.payments import fresh


def answered(db, payer_sandbox, claim_id: int) -> dict:
    """Billing sends the claim; the payer adjudicates it; the poll applies its remittance."""
    assert jobs.submit_claim(claim_id) == "submitted"
    claim = fresh(db, Claim, claim_id)
    payer_sandbox.adjudicate_now(str(claim.uuid))
    polled = jobs.poll_remittances()
    assert polled["applied"] == 1, polled
    return polled


def reconciliation_of(db, appointment_id: int) -> Reconciliation | None:
    db.expire_all()
    return db.scalar(select(Reconciliation).where(Reconciliation.appointment_id == appointment_id))
