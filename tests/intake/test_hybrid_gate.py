"""The hybrid timing's order: no times for a hybrid type until the patient has submitted intake and
has its estimate; submit builds the estimate and goes to its page; the hold carries the intake id and
attaches the intake and the estimate in its own transaction. Non-hybrid visits: intake from the link on
the confirmation, after booking."""
from __future__ import annotations

import re

from sqlalchemy import select

from tests.helpers.web import csrf_from
from tests.intake.conftest import ABOUT


def _provider_page(client, clinic, **args):
    query = "&".join(f"{k}={v}" for k, v in {"type_id": clinic["hybrid"].id, **args}.items())
    return client.get(f"/book/providers/{clinic['provider'].id}?{query}")


def _first_slot(html):
    return re.search(r'name="starts_at" value="([^"]+)"', html).group(1)


def test_a_hybrid_type_shows_no_times_until_intake_and_estimate(db, driver, clinic, new_member):
    from app.models import Appointment, Estimate, Intake

    page = _provider_page(driver.client, clinic)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "First, tell us about you and your insurance (about 5 min)" in html
    assert 'class="slot"' not in html
    start = re.search(r'href="(/intake/start\?[^"]+)"', html).group(1).replace("&amp;", "&")
    # A forged hold is refused the same way, and nothing is held.
    refused = driver.client.post(f"/book/providers/{clinic['provider'].id}/holds", data={
        "csrf_token": csrf_from(html), "type_id": clinic["hybrid"].id, "starts_at": "2026-12-08T15:00:00+00:00"})
    assert refused.status_code == 409 and "First, tell us about you" in refused.get_data(as_text=True)
    assert db.scalars(select(Appointment)).all() == []

    started = driver.client.get(start)
    intake_id = int(re.search(r"/intake/(\d+)/about", started.location).group(1))
    submitted = driver.fill(intake_id, member_id=new_member())
    assert submitted.status_code == 303
    assert submitted.location.endswith(f"/intake/{intake_id}/estimate?provider_id={clinic['provider'].id}")
    db.expire_all()
    intake = db.get(Intake, intake_id)
    assert intake.status == "submitted" and intake.submitted_at is not None
    [estimate] = db.scalars(select(Estimate).where(Estimate.intake_id == intake_id)).all()

    html = _provider_page(driver.client, clinic, intake_id=intake_id).get_data(as_text=True)
    assert 'class="slot"' in html and "Your intake is in." in html
    assert f'name="intake_id" value="{intake_id}"' in html
    held = driver.client.post(f"/book/providers/{clinic['provider'].id}/holds", data={
        "csrf_token": csrf_from(html), "type_id": clinic["hybrid"].id, "intake_id": intake_id,
        "starts_at": _first_slot(html)})
    assert held.status_code == 303, held.get_data(as_text=True)
    db.expire_all()
    [appointment] = db.scalars(select(Appointment)).all()
    assert appointment.status == "held" and held.location.endswith(f"/book/holds/{appointment.id}")
    assert db.get(Intake, intake_id).appointment_id == appointment.id
    from app.services import estimates

    assert estimates.for_appointment(db, appointment.id).id == estimate.id
    from app.services import audit_chain  # noqa: F401  (the chain reads these rows)
    from app.models import AuditEvent

    actions = db.scalars(select(AuditEvent.action).where(AuditEvent.appointment_id == appointment.id)).all()
    assert {"slot.selected", "intake.attached", "estimate.attached"} <= set(actions)


def test_a_self_pay_intake_opens_the_times_too(db, driver, clinic):
    intake_id = driver.start(clinic["hybrid"].id, clinic["provider"].id)
    assert driver.fill(intake_id, self_pay=True).status_code == 303
    html = _provider_page(driver.client, clinic).get_data(as_text=True)
    assert 'class="slot"' in html


def test_an_intake_used_by_a_booked_visit_does_not_open_the_times_again(db, driver, clinic, new_member):
    from app.models import Intake

    intake_id = driver.start(clinic["hybrid"].id)
    driver.fill(intake_id, member_id=new_member())
    html = _provider_page(driver.client, clinic).get_data(as_text=True)
    driver.client.post(f"/book/providers/{clinic['provider'].id}/holds", data={
        "csrf_token": csrf_from(html), "type_id": clinic["hybrid"].id, "starts_at": _first_slot(html)})
    db.expire_all()
    intake = db.get(Intake, intake_id)
    intake_appointment = intake.appointment_id
    from app.models import Appointment

    db.get(Appointment, intake_appointment).status = "confirmed"     # as the deposit's success would
    db.commit()
    html = _provider_page(driver.client, clinic).get_data(as_text=True)
    assert "First, tell us about you" in html


def test_submitting_a_hybrid_intake_that_cannot_get_its_estimate_keeps_the_draft(db, driver, clinic, monkeypatch):
    from app.models import Intake
    from app.services import estimates

    intake_id = driver.start(clinic["hybrid"].id)
    driver.post(intake_id, "about", ABOUT)

    def broken(*args, **kwargs):
        raise RuntimeError("estimate failed")

    driver.post(intake_id, "reason", {"reason": "Follow-up", "q_allergies": "none"})
    driver.post(intake_id, "insurance", {"coverage_choice": "self_pay"})
    driver.post(intake_id, "consents", {f"consent_{k}": ABOUT["legal_name"]
                                        for k in ("treatment", "privacy", "financial", "telehealth")})
    monkeypatch.setattr(estimates, "build", broken)
    response = driver.submit(intake_id)
    assert response.status_code == 503
    assert "Nothing you entered was lost" in response.get_data(as_text=True)
    db.expire_all()
    assert db.get(Intake, intake_id).status == "draft"


def test_a_non_hybrid_booking_links_to_intake_after_booking(app, db, driver, clinic, factories, clock, policy):
    from app.models import Intake
    from app.services import booking
    from app.services.audit import Actor
    from tests.intake.conftest import MON_10_NY

    patient = driver.client.user.patient
    appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=clinic["provider"].id,
                                    type_id=clinic["plain"].id, starts_at=MON_10_NY, policy=policy,
                                    actor=Actor.system("test"))
    booking.confirm(db, appointment, actor=Actor.system("test"), now=clock.now())
    db.commit()
    page = driver.client.get(f"/appointments/{appointment.id}").get_data(as_text=True)
    assert "Fill in your intake before the visit" in page
    assert f'href="/appointments/{appointment.id}/intake"' in page
    opened = driver.client.get(f"/appointments/{appointment.id}/intake")
    assert opened.status_code == 303
    intake_id = int(re.search(r"/intake/(\d+)/about", opened.location).group(1))
    db.expire_all()
    assert db.get(Intake, intake_id).appointment_id == appointment.id
    # The same link again resumes it; a different draft for the type (not this visit) is separate.
    assert driver.client.get(f"/appointments/{appointment.id}/intake").location == opened.location
    done = driver.fill(intake_id, self_pay=True, telehealth=False)
    assert done.status_code == 303 and done.location.endswith(f"/appointments/{appointment.id}")
    page = driver.client.get(f"/appointments/{appointment.id}").get_data(as_text=True)
    assert "Thank you: your intake is submitted." in page and "Your intake is in." in page
    assert driver.client.get(f"/appointments/{appointment.id}/intake").location.endswith(
        f"/intake/{intake_id}/review")
    # Someone else's appointment: 404.
    other = factories.patient()
    other_appointment = booking.take_hold(db, now=clock.now(), patient=other, provider_id=clinic["provider"].id,
                                          type_id=clinic["plain"].id, starts_at=MON_10_NY.replace(hour=17),
                                          policy=policy, actor=Actor.system("test"))
    db.commit()
    assert driver.client.get(f"/appointments/{other_appointment.id}/intake").status_code == 404
