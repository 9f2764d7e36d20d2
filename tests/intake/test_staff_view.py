"""Staff see the intake on the appointment, with what changed since the patient's last intake; each
view is an audited PHI view; a provider sees only their own patients' visits."""
from __future__ import annotations

import re

from sqlalchemy import select

from tests.helpers.web import IsolatedClient, login
from tests.intake.conftest import ABOUT, MON_10_NY, insurance_form


def _booked(db, clinic, patient, clock, policy, starts_at=MON_10_NY):
    from app.services import booking
    from app.services.audit import Actor

    appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=clinic["provider"].id,
                                    type_id=clinic["plain"].id, starts_at=starts_at, policy=policy,
                                    actor=Actor.system("test"))
    booking.confirm(db, appointment, actor=Actor.system("test"), now=clock.now())
    db.commit()
    return appointment


def test_staff_see_the_intake_and_what_changed_since_last_time(app, db, driver, clinic, factories, clock, policy,
                                                               new_member):
    from app.models import AuditEvent

    first_member, second_member = new_member(), new_member()
    earlier = driver.start(clinic["hybrid"].id)
    assert driver.fill(earlier, member_id=first_member).status_code == 303

    appointment = _booked(db, clinic, driver.client.user.patient, clock, policy)
    opened = driver.client.get(f"/appointments/{appointment.id}/intake")
    intake_id = int(re.search(r"/intake/(\d+)/", opened.location).group(1))
    driver.post(intake_id, "about", {**ABOUT, "city": "Buffalo", "postal_code": "14201"})
    driver.post(intake_id, "reason", {"reason": "Knee pain"})
    driver.post(intake_id, "insurance", insurance_form(second_member))
    driver.post(intake_id, "consents", {f"consent_{k}": ABOUT["legal_name"] for k in ("treatment", "privacy", "financial")})
    assert driver.submit(intake_id).status_code == 303

    provider = IsolatedClient(app, app.response_class, use_cookies=True)
    login(provider, clinic["provider"].user.email)
    before = db.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))
    response = provider.get(f"/staff/appointments/{appointment.id}/intake")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "no-store" in response.headers["Cache-Control"]
    assert "Changed since last time" in html
    changes = dict(re.findall(r'data-change="([^"]+)"><td>[^<]*</td><td>([^<]*)</td>', html))
    assert changes["city"] == "Albany" and changes["postal_code"] == "12207"
    assert changes["primary_member_id"] == first_member
    assert "Buffalo" in html and second_member in html and "Knee pain" in html
    assert "legal_name" not in changes                        # unchanged fields are not listed
    assert "Consent to treatment: signed" in html
    db.expire_all()
    [view] = db.scalars(select(AuditEvent).where(AuditEvent.seq > before, AuditEvent.action == "phi.viewed")).all()
    assert (view.patient_id, view.appointment_id) == (appointment.patient_id, appointment.id)
    assert view.details["kind"] == "intake" and view.details["record"] == {"intake_id": intake_id}

    # The day view's card links to it.
    day = provider.get(f"/staff/day?date=2026-12-07").get_data(as_text=True)
    assert f"/staff/appointments/{appointment.id}/intake" in day

    # Another provider: not found. Billing: allowed.
    other = factories.provider(types=[clinic["plain"]])
    stranger = IsolatedClient(app, app.response_class, use_cookies=True)
    login(stranger, other.user.email)
    assert stranger.get(f"/staff/appointments/{appointment.id}/intake").status_code == 404
    billing = IsolatedClient(app, app.response_class, use_cookies=True)
    login(billing, factories.user("billing").email)
    assert billing.get(f"/staff/appointments/{appointment.id}/intake").status_code == 200


def test_a_visit_without_intake_says_so(app, db, driver, clinic, factories, clock, policy):
    appointment = _booked(db, clinic, driver.client.user.patient, clock, policy)
    admin = IsolatedClient(app, app.response_class, use_cookies=True)
    login(admin, factories.user("admin").email)
    html = admin.get(f"/staff/appointments/{appointment.id}/intake").get_data(as_text=True)
    assert "No intake for this visit yet." in html
    assert admin.get("/staff/appointments/99999999/intake").status_code == 404


def test_the_diff_compares_field_by_field():
    from app.services import intake as intakes

    before = {"demographics": {"city": "Albany", "state": "NY"}, "answers": {"Any allergies?": "none"},
              "insurance": {"primary_member_id": "A1", "secondary_member_id": "B2"}}
    after = {"demographics": {"city": "Albany", "state": "NJ"}, "answers": {"Any allergies?": "penicillin"},
             "insurance": {"primary_member_id": "A1"}}
    changes = intakes.diff(before, after)
    assert [(c.field, c.before, c.after) for c in changes] == [
        ("state", "NY", "NJ"), ("Any allergies?", "none", "penicillin"), ("secondary_member_id", "B2", None)]
    assert changes[2].label == "Secondary insurance: member id"
    assert intakes.diff(None, {"demographics": {"city": "Albany"}})[0].before is None
