"""Claim jobs (issue 15): thin callers of ``app.services.claims``; each loads by id, calls one
service and commits.

- ``submit_claim`` after a draft claim's commit (CLAIM_AUTO_SUBMIT, a secondary claim) — idempotent by
  the claim's uuid at the clearinghouse;
- ``poll_remittances`` every REMITTANCE_POLL_INTERVAL (``ticker``, a thread of worker.py, and the
  sweep when the last poll is older than that) and from billing's "Check now": the remittances after
  the cursor are applied and the cursor moved in one transaction;
- ``reconcile_visit`` after a remittance's commit; ``send_refund`` after a reconciliation's refund
  was stored;
- ``sweep_claims``, the periodic step: what the database says is due, whatever the queue lost
  (drafts to send, answered claims not reconciled, the poll when due). Refunds stored but never sent
  are finished by ``app.jobs.refunds.resume_unsent``; balance charges by ``sweep_visit_charges``.
"""
from __future__ import annotations

import logging
import threading

from flask import Flask, current_app

from app.integrations.clearinghouse import ClearinghouseError
from app.jobs import get_queue, job_session
from app.jobs import now as _now
from app.services import claims, settlement
from app.services.audit import Actor

log = logging.getLogger(__name__)
JOB = Actor.system("job")


def submit_claim(claim_id: int) -> str:
    with job_session() as session:
        result = claims.submit(session, claim_id, actor=JOB, now=_now())
        session.commit()
        return result


def poll_remittances(only_if_awaiting: bool = False) -> dict:
    """Apply what the clearinghouse answered since the cursor; an unreachable clearinghouse changes
    nothing (the next poll reads from the same cursor). The ticker's polls (``only_if_awaiting``)
    ask only while a claim is out with a payer."""
    with job_session() as session:
        if only_if_awaiting and not claims.awaiting_answers(session):
            return {"skipped": "nothing awaiting an answer"}
        try:
            result = claims.poll_remittances(session, now=_now())
        except ClearinghouseError as error:
            session.rollback()
            log.warning("remittance poll: the clearinghouse could not be read (%s)", type(error).__name__)
            return {"error": "unavailable"}
        session.commit()
        return {"fetched": result.fetched, "applied": len(result.applied), "ignored": result.ignored,
                "skipped": result.skipped, "cursor": result.cursor}


def reconcile_visit(appointment_id: int) -> str:
    with job_session() as session:
        row = claims.reconcile(session, appointment_id, actor=JOB, now=_now())
        outcome = row.outcome if row is not None else "waiting"
        session.commit()
        return outcome


def send_refund(refund_id: int) -> str:
    """Send a stored refund (commits; same idempotency key however often it runs)."""
    with job_session() as session:
        refund = settlement.send_refund(session, refund_id, actor=JOB)
        return refund.status


def sweep_claims() -> dict:
    """Drafts due for sending, answered claims not reconciled, and the remittance poll when due."""
    settings = current_app.config["SETTINGS"]
    with job_session() as session:
        drafts = claims.due_drafts(session, quiet=settings.PAYMENT_QUIET)
        due = claims.due_reconciliations(session, quiet=settings.PAYMENT_QUIET)
        poll = claims.client() is not None and claims.poll_due(session, now=_now())
        session.rollback()
    out: dict = {}
    for claim_id in drafts:
        try:
            submit_claim(claim_id)
        except Exception:
            log.exception("claim %s: submission failed; the next sweep tries again", claim_id)
    if poll:
        polled = poll_remittances()
        if polled.get("applied"):
            out["remittances"] = polled["applied"]
    reconciled = 0
    for appointment_id in due:
        try:
            reconcile_visit(appointment_id)
            reconciled += 1
        except Exception:
            log.exception("appointment %s: reconciliation failed; the next sweep tries again", appointment_id)
    if drafts:
        out["claims_sent"] = len(drafts)
    if reconciled:
        out["reconciled"] = reconciled
    return out


def ticker(app: Flask, stop: threading.Event) -> None:
    """Enqueue ``poll_remittances`` every REMITTANCE_POLL_INTERVAL until ``stop`` (a daemon thread of
    worker.py); nothing when no clearinghouse is configured."""
    settings = app.config["SETTINGS"]
    interval = settings.REMITTANCE_POLL_INTERVAL.total_seconds()
    if not settings.CLEARINGHOUSE_URL or interval <= 0:
        return
    while not stop.wait(interval):
        try:
            with app.app_context():
                get_queue("default", app).enqueue(poll_remittances, True, result_ttl=0,
                                                  ttl=max(interval * 2, 30))
        except Exception:       # Redis briefly away: the next tick, or the sweep, polls
            log.exception("could not enqueue the remittance poll")
