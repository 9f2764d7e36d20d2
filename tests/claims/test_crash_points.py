"""Where a process can die in the claim's life, and what finishes the work: a submission accepted by
the clearinghouse but never recorded is sent again (same claim id: the first answer comes back, one
adjudication); a remittance applied but never reconciled is reconciled by the sweep; a refund stored
but never sent is sent by the refunds sweep with the same idempotency key."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import func, select

from app.jobs import claims as jobs
from app.jobs import refunds as refund_jobs
from app.models import AuditEvent, Claim, Reconciliation, Refund, Remittance
from app.services import claims
from app.services.audit import Actor
from tests.helpers.claims import reconciliation_of
from tests.helpers.payments import fresh


def test_killed_after_the_clearinghouse_accepted_the_claim_before_it_was_recorded(db, hybrid_visit, payer_sandbox,
                                                                                 clock):
    visit = hybrid_visit("W100000003", deposit=3900)
    assert claims.submit(db, visit.claim_id, actor=Actor.system("job"), now=clock.now()) == "submitted"
    db.rollback()                                   # the process died before its commit
    assert fresh(db, Claim, visit.claim_id).status == "draft"
    assert jobs.submit_claim(visit.claim_id) == "submitted"        # the retry (job retry or sweep)
    submitted = db.scalars(select(AuditEvent).where(AuditEvent.action == "claim.submitted")).all()
    assert [e.details["replayed"] for e in submitted] == [True]
    claim = fresh(db, Claim, visit.claim_id)
    payer_sandbox.adjudicate_now(str(claim.uuid))
    assert jobs.poll_remittances()["applied"] == 1
    assert jobs.reconcile_visit(visit.appointment_id) == "none"
    remits = [r for r in claims.client().remittances(0) if r.claim_id == str(claim.uuid)]
    assert len(remits) == 1                         # adjudicated once


def test_a_draft_whose_submission_failed_is_sent_by_the_sweep(db, app, factories, hybrid_visit, payer_sandbox,
                                                              monkeypatch, clock):
    visit = hybrid_visit("W100000003", deposit=3900)
    biller = factories.user("billing")
    claims.request_submit(db, db.get(Claim, visit.claim_id), user=biller, actor=Actor.of(biller), now=clock.now())
    db.commit()
    payer_sandbox.inject_fault("error", count=4, path="/claims")
    assert jobs.submit_claim(visit.claim_id) == "unavailable"
    claim = fresh(db, Claim, visit.claim_id)
    assert claim.status == "draft" and claim.last_error.startswith("unavailable")
    payer_sandbox.reset_faults()
    monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], PAYMENT_QUIET=timedelta(0)))
    assert claims.due_drafts(db, quiet=timedelta(0)) == [visit.claim_id]     # billing asked: the sweep sends it
    db.rollback()
    jobs.sweep_claims()
    claim = fresh(db, Claim, visit.claim_id)
    assert (claim.status, claim.last_error, claim.submitted_by_id) == ("submitted", None, biller.id)


def test_killed_after_applying_the_remittance_before_reconciling(db, app, hybrid_visit, payer_sandbox, monkeypatch,
                                                                queue):
    visit = hybrid_visit("W100000777", deposit=3900)
    assert jobs.submit_claim(visit.claim_id) == "submitted"
    payer_sandbox.adjudicate_now(str(fresh(db, Claim, visit.claim_id).uuid))
    assert jobs.poll_remittances()["applied"] == 1
    queue.empty()                                   # the reconcile job was lost with its worker
    assert reconciliation_of(db, visit.appointment_id) is None
    assert db.scalar(select(func.count()).select_from(Remittance)) == 1
    monkeypatch.setitem(app.config, "SETTINGS", replace(app.config["SETTINGS"], PAYMENT_QUIET=timedelta(0)))
    db.rollback()                                   # a fresh transaction: its now() is after the poll's
    assert claims.due_reconciliations(db, quiet=timedelta(0)) == [visit.appointment_id]
    db.rollback()
    result = jobs.sweep_claims()
    assert result.get("reconciled") == 1
    assert reconciliation_of(db, visit.appointment_id).outcome == "refund"
    db.rollback()
    assert claims.due_reconciliations(db, quiet=timedelta(0)) == []


def test_a_refund_stored_but_never_sent_is_finished_by_its_sweep(db, hybrid_visit, payer_sandbox, stripe_admin,
                                                                 clock, queue):
    visit = hybrid_visit("W100000777", deposit=3900)
    assert jobs.submit_claim(visit.claim_id) == "submitted"
    payer_sandbox.adjudicate_now(str(fresh(db, Claim, visit.claim_id).uuid))
    jobs.poll_remittances()
    assert jobs.reconcile_visit(visit.appointment_id) == "refund"
    queue.empty()                                   # killed before the send_refund job ran
    row = reconciliation_of(db, visit.appointment_id)
    assert db.get(Refund, row.refund_id).status == "creating"
    assert stripe_admin.client.v1.refunds.list(params={"payment_intent": visit.deposit_intent}).data == []
    clock.advance(refund_jobs.RESUME_AFTER + timedelta(seconds=1))
    assert refund_jobs.resume_unsent() == 1
    refund = fresh(db, Refund, row.refund_id)
    assert refund.status in ("pending", "succeeded") and refund.stripe_refund_id
    at_stripe = stripe_admin.client.v1.refunds.list(params={"payment_intent": visit.deposit_intent}).data
    assert [(r.id, r.amount) for r in at_stripe] == [(refund.stripe_refund_id, 1400)]
    assert refund_jobs.resume_unsent() == 0         # once
    assert db.scalar(select(func.count()).select_from(Reconciliation)) == 1
