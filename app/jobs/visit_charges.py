"""Post-visit charge jobs: thin callers of ``app.services.visit_charges`` (each a money routine
that commits at its own step boundaries, like ``settlement.settle``).

- ``charge_case`` after the signing commit (``charge_visit``);
- ``case_due`` at a case's next retry, escalation or instalment (``visit_case_due``, RQ enqueue_at);
- ``sweep_visit_charges``, the periodic step: what the database says is due, whatever the queue lost.
"""
from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app

from app.jobs import enqueue, enqueue_at, job_session
from app.jobs import now as _now
from app.services import visit_charges
from app.services.audit import Actor

log = logging.getLogger(__name__)


def charge_case(case_id: int) -> str:
    """Charge a signed visit's case off-session (a second run finds it charged: one PaymentIntent)."""
    with job_session() as session:
        return visit_charges.charge(session, case_id, actor=Actor.system("job"))


def case_due(case_id: int) -> str:
    """Whatever the case says is due now (a retry, the escalation, an instalment, a cancel); nothing
    when it is not yet due (an earlier job for a time that moved) or already done."""
    with job_session() as session:
        return visit_charges.run_due(session, case_id, actor=Actor.system("job"))


def schedule_charge(case_id: int) -> None:
    """Subscribed to ``charge_visit``."""
    enqueue(charge_case, case_id)


def schedule_due(case_id: int, when: datetime) -> None:
    """Subscribed to ``visit_case_due``: at ``when`` (at once if it has passed)."""
    enqueue_at(when, case_due, case_id)


def sweep_visit_charges() -> dict:
    """Cases with work due (pending or quiet charging ones, retries, escalations, instalments, a
    written-off case's open attempt): each run here, one failing never stopping the rest."""
    with job_session() as session:
        ids = visit_charges.due_case_ids(session, now=_now(), quiet=current_app.config["SETTINGS"].PAYMENT_QUIET)
        session.rollback()
    done = 0
    for case_id in ids:
        try:
            case_due(case_id)
            done += 1
        except Exception:
            log.exception("post-visit case %s: due work failed; the next sweep tries again", case_id)
    return {"visit_cases": done} if ids else {}
