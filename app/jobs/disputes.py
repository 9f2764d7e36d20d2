"""Dispute jobs (issue 16): thin callers of ``app.services.disputes``.

- ``poll`` every DISPUTE_POLL_INTERVAL (wired by worker.py / app/jobs/periodic.py): the disputes
  Stripe made in the last 30 days are applied (a lost ``charge.dispute.*`` webhook): new ones are put
  on billing's worklist, closed ones settle the ledger and the provider's share. Safe to run twice
  (each dispute is applied once per change). Stripe unreachable: nothing changes, the next poll
  tries again.
"""
from __future__ import annotations

import logging

from app.jobs import job_session
from app.jobs import now as _now
from app.services import disputes
from app.services.audit import Actor
from app.services.gateway import PaymentServiceError

log = logging.getLogger(__name__)
JOB = Actor.system("job")


def poll() -> dict:
    with job_session() as session:
        try:
            result = disputes.poll(session, now=_now(), actor=JOB)
        except PaymentServiceError as error:
            session.rollback()
            log.warning("dispute poll: Stripe could not be read (%s)", type(error).__name__)
            return {"error": "unavailable"}
        session.commit()
        return result
