"""The day-before eligibility recheck (periodic, ELIGIBILITY_RECHECK_BEFORE) and the Good Faith
Estimate's delivery on BOOKING_CONFIRMED (email with a link, no PHI) and its page."""
import re
from datetime import timedelta

from sqlalchemy import select

from app.jobs import eligibility as jobs
from app.models import AuditEvent, EligibilityCheck, Estimate, Notification
from app.services import eligibility
from tests.helpers.web import login


def _before(app):
    return app.config["SETTINGS"].ELIGIBILITY_RECHECK_BEFORE


def test_day_before_recheck_runs_once_for_confirmed_insured_hybrid_visits(
        app, db, factories, hybrid_type, coverage, new_member, appointment_for, clock, payer_sandbox):
    plain = factories.appointment_type(name="Consult", payment_timing="deposit_to_book")
    insured = factories.patient()
    cov = coverage(insured, new_member(deductible_met_cents=10000))
    tomorrow = appointment_for(insured, hybrid_type, clock.now() + timedelta(hours=20))
    later = appointment_for(insured, hybrid_type, clock.now() + timedelta(days=3))
    not_hybrid = appointment_for(insured, plain, clock.now() + timedelta(hours=20))
    uninsured = appointment_for(factories.patient(), hybrid_type, clock.now() + timedelta(hours=20))
    held = appointment_for(insured, hybrid_type, clock.now() + timedelta(hours=22), status="held")
    due = eligibility.due_rechecks(db, now=clock.now(), before=_before(app))
    assert due == [tomorrow.id]
    assert not {later.id, not_hybrid.id, uninsured.id, held.id} & set(due)

    assert jobs.recheck(tomorrow.id) == 1
    db.expire_all()
    [row] = db.scalars(select(EligibilityCheck).where(EligibilityCheck.appointment_id == tomorrow.id)).all()
    assert (row.trigger, row.status, row.coverage_id, row.deductible_met_cents) == ("day_before", "active", cov.id, 10000)
    assert row.service_date == tomorrow.starts_at.date().isoformat()
    assert eligibility.raw_response(row)["active"] is True
    assert eligibility.latest(db, cov.id).id == row.id            # stored with the coverage
    assert eligibility.due_rechecks(db, now=clock.now(), before=_before(app)) == []
    assert jobs.recheck(tomorrow.id) == 0                          # twice: nothing more

    # Two days later the other visit is due.
    clock.advance(timedelta(days=2))
    assert eligibility.due_rechecks(db, now=clock.now(), before=_before(app)) == [later.id]


def test_day_before_recheck_of_a_coverage_that_ended(app, db, factories, hybrid_type, coverage, new_member,
                                                     appointment_for, clock, payer_sandbox):
    patient = factories.patient()
    member = new_member()
    cov = coverage(patient, member)
    visit = appointment_for(patient, hybrid_type, clock.now() + timedelta(hours=10))
    payer_sandbox.put_member("AETNA-DEMO", member, active=False, coverage_end="2026-12-01")
    jobs.recheck(visit.id)
    db.expire_all()
    assert eligibility.latest(db, cov.id).status == "inactive"


def test_unreachable_recheck_is_tried_again_later(app, db, factories, hybrid_type, coverage, new_member,
                                                  appointment_for, clock, payer_sandbox):
    patient = factories.patient()
    coverage(patient, new_member())
    visit = appointment_for(patient, hybrid_type, clock.now() + timedelta(hours=20))
    payer_sandbox.inject_fault("error", count=1, path="/eligibility")
    try:
        jobs.recheck(visit.id)
    finally:
        payer_sandbox.reset_faults()
    db.expire_all()
    assert [c.status for c in db.scalars(select(EligibilityCheck).where(
        EligibilityCheck.appointment_id == visit.id))] == ["unavailable"]
    assert eligibility.due_rechecks(db, now=clock.now(), before=_before(app)) == []      # not at once
    clock.advance(timedelta(minutes=16))
    assert eligibility.due_rechecks(db, now=clock.now(), before=_before(app)) == [visit.id]
    jobs.recheck(visit.id)
    db.expire_all()
    assert [c.status for c in db.scalars(select(EligibilityCheck).where(
        EligibilityCheck.appointment_id == visit.id).order_by(EligibilityCheck.id))] == ["unavailable", "active"]


def test_the_sweep_enqueues_the_due_rechecks(app, db, factories, hybrid_type, coverage, new_member,
                                             appointment_for, clock, queue):
    patient = factories.patient()
    coverage(patient, new_member())
    visit = appointment_for(patient, hybrid_type, clock.now() + timedelta(hours=20))
    assert jobs.sweep_eligibility_rechecks() == 1
    enqueued = [(j.func_name, j.args) for j in queue.jobs]
    assert ("app.jobs.eligibility.recheck", (visit.id,)) in enqueued


def test_booking_confirmed_is_wired_to_the_gfe_delivery():
    from app.jobs.subscriptions import subscriptions

    names = [h.__qualname__ for h in subscriptions()["booking_confirmed"]]
    assert "enqueue app.jobs.eligibility.deliver_good_faith_estimate" in names


def test_self_pay_booking_gets_its_gfe_by_email_and_on_its_page(app, db, client, factories, appointment_for,
                                                                clock):
    from app.jobs.notifications import render

    plain = factories.appointment_type(name="Telehealth consult", price_cents=12500, payment_timing="deposit_to_book")
    user = factories.user("patient", full_name="Gina Quill")
    visit = appointment_for(user.patient, plain, clock.now() + timedelta(days=20))
    assert jobs.deliver_good_faith_estimate(visit.id) is True
    assert jobs.deliver_good_faith_estimate(visit.id) is True          # twice: one message, one estimate
    db.expire_all()
    [gfe] = db.scalars(select(Estimate).where(Estimate.appointment_id == visit.id)).all()
    assert gfe.good_faith and gfe.billed_cents == 12500 and gfe.gfe_delivered_at == clock.now()
    assert gfe.gfe_due_by is not None and gfe.gfe_due_by > clock.now()
    [note] = db.scalars(select(Notification).where(Notification.template == "good_faith_estimate")).all()
    assert note.channel == "email" and note.appointment_id == visit.id
    message = render(db, note)
    assert f"/appointments/{visit.id}/good-faith-estimate" in message.text
    assert "Good Faith Estimate" in message.subject
    for phi in ("Gina", "Quill", "Telehealth consult", "125.00"):
        assert phi not in message.text and phi not in (message.subject or "")

    assert login(client, user.email).status_code == 303
    response = client.get(f"/appointments/{visit.id}/good-faith-estimate")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "no-store" in response.headers["Cache-Control"]
    assert "Good Faith Estimate" in html and "Gina Quill" in html and "$125.00" in html
    assert "$400" in html and "www.cms.gov/nosurprises" in html
    viewed = db.scalars(select(AuditEvent).where(AuditEvent.action == "phi.viewed",
                                                 AuditEvent.appointment_id == visit.id)).all()
    assert viewed and viewed[-1].details["kind"] == "good_faith_estimate"
    page = client.get(f"/appointments/{visit.id}").get_data(as_text=True)
    assert f'href="/appointments/{visit.id}/good-faith-estimate"' in page

    stranger = factories.user("patient")
    client.post("/logout", headers={"X-CSRFToken": re.search(r'"X-CSRFToken": "([^"]+)"', html).group(1)})
    assert login(client, stranger.email).status_code == 303
    assert client.get(f"/appointments/{visit.id}/good-faith-estimate").status_code == 404


def test_insured_hybrid_booking_gets_no_gfe(app, db, factories, hybrid_type, coverage, new_member,
                                            appointment_for, clock, job_actor):
    from app.services import estimates

    patient = factories.patient()
    coverage(patient, new_member())
    visit = appointment_for(patient, hybrid_type, clock.now() + timedelta(days=5))
    est = estimates.build(db, patient=patient, appointment_type=hybrid_type, service_date=visit.starts_at.date(),
                          now=clock.now(), actor=job_actor)
    estimates.attach(db, est, visit, now=clock.now(), actor=job_actor)
    db.commit()
    assert est.kind == "insured" and est.gfe_due_by is None
    assert jobs.deliver_good_faith_estimate(visit.id) is False
    db.expire_all()
    assert db.scalars(select(Notification).where(Notification.template == "good_faith_estimate")).all() == []
