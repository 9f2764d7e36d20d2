"""Eligibility checks against the payer simulator, stored with the coverage and the raw answer, for an
active, inactive, unknown or unreachable coverage (never raising for the clearinghouse)."""
from datetime import date

from sqlalchemy import select, text

from app.models import AuditEvent, EligibilityCheck
from app.services import eligibility

DAY = date(2026, 12, 10)


def run(db, cov, clock, actor, trigger="entry"):
    row = eligibility.check(db, cov, trigger=trigger, service_date=DAY, now=clock.now(), actor=actor)
    db.commit()
    return row


def test_active_coverage_stores_the_benefits_and_the_raw_271(db, factories, coverage, new_member, clock, job_actor):
    member = new_member(deductible_met_cents=20000, oop_met_cents=40000)
    cov = coverage(factories.patient(), member)
    row = run(db, cov, clock, job_actor)
    assert row.status == "active" and row.trigger == "entry" and row.coverage_id == cov.id
    assert (row.copay_cents, float(row.coinsurance_percent), row.deductible_cents, row.deductible_met_cents,
            row.oop_max_cents, row.oop_met_cents) == (2500, 20.0, 50000, 20000, 300000, 40000)
    assert row.plan_name == "Aetna Open Access PPO (demo)" and row.clearinghouse_id
    raw = eligibility.raw_response(row)
    assert raw["active"] is True and raw["member_id"] == member and raw["service_date"] == "2026-12-10"
    assert eligibility.latest(db, cov.id).id == row.id
    assert eligibility.plain_words(row) == "Your insurance is active."
    # Audited with ids, never the member id or the plan.
    event = db.scalars(select(AuditEvent).where(AuditEvent.action == "eligibility.checked")).one()
    assert event.details["eligibility_check_id"] == row.id and event.details["status"] == "active"
    assert member not in str(event.details) and "Aetna" not in str(event.details)
    # Encrypted at rest: the raw answer's member id is not in the table's text.
    stored = db.execute(text("SELECT response FROM eligibility_checks WHERE id = :id"), {"id": row.id}).scalar()
    assert member not in str(stored)


def test_inactive_coverage(db, factories, coverage, new_member, clock, job_actor):
    member = new_member(active=False, coverage_end="2025-12-31")
    row = run(db, coverage(factories.patient(), member), clock, job_actor)
    assert row.status == "inactive" and row.errors == [] and row.copay_cents is None
    assert eligibility.raw_response(row)["active"] is False
    assert "not active" in eligibility.plain_words(row)


def test_member_not_found(db, factories, coverage, clock, job_actor):
    row = run(db, coverage(factories.patient(), "NOPE12345678"), clock, job_actor)
    assert row.status == "error" and [e["code"] for e in row.errors] == ["75"]
    assert eligibility.raw_response(row)["errors"][0]["code"] == "75"
    assert "did not find this member" in eligibility.plain_words(row)


def test_birth_date_mismatch(db, factories, coverage, new_member, clock, job_actor):
    member = new_member(birth_date="1970-01-01")
    row = run(db, coverage(factories.patient(), member), clock, job_actor)
    assert row.status == "error" and "71" in [e["code"] for e in row.errors]


def test_unreachable_clearinghouse_is_stored_not_raised(db, factories, coverage, new_member, payer_sandbox,
                                                         clock, job_actor):
    member = new_member()
    cov = coverage(factories.patient(), member)
    payer_sandbox.inject_fault("error", count=1, path="/eligibility")
    try:
        row = run(db, cov, clock, job_actor)
    finally:
        payer_sandbox.reset_faults()
    assert row.status == "unavailable" and row.response is None and row.errors[0]["code"] == "unavailable"
    assert "couldn't reach your insurer" in eligibility.plain_words(row)
    payer_sandbox.inject_fault("drop", count=2, path="/eligibility")       # the client retries once
    try:
        dropped = run(db, cov, clock, job_actor)
    finally:
        payer_sandbox.reset_faults()
    assert dropped.status == "unavailable"
    again = run(db, cov, clock, job_actor)                                 # back: answered
    assert again.status == "active"
    assert eligibility.latest(db, cov.id).id == again.id
    assert eligibility.latest_answered(db, cov.id).id == again.id
    assert db.scalar(select(EligibilityCheck.id).where(EligibilityCheck.coverage_id == cov.id)
                     .order_by(EligibilityCheck.id).limit(1)) == row.id      # every attempt kept


def test_unknown_payer_is_an_error_answer(db, factories, coverage, clock, job_actor):
    from app.models import Payer

    db.add(Payer(id="NOBODY-DEMO", name="Nobody", default_allowed_percent=50))
    db.commit()
    row = run(db, coverage(factories.patient(), "W100000001", payer_id="NOBODY-DEMO"), clock, job_actor)
    assert row.status == "error" and row.errors[0]["code"] == "unknown_payer"
