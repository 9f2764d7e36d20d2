"""Break-glass and the admin's access review (issue 12).

A provider opening a patient who is not on their schedule must give a reason; the access is
allowed, audited and flagged on the admin's review page. The admin sees who looked at a patient
and everything one user opened, and exports both as CSV."""
from __future__ import annotations

import csv
import dataclasses
import io
from datetime import timedelta

from sqlalchemy import select

from app.models import Appointment, AuditEvent
from app.services import access_log
from tests.helpers.web import IsolatedClient, csrf_from, login


def _client(app, user):
    client = IsolatedClient(app, app.response_class, use_cookies=True)
    answer = login(client, user.email)
    assert answer.status_code == 303, answer.status_code
    return client


def _rows(db, action, **where):
    query = select(AuditEvent).where(AuditEvent.action == action)
    for name, value in where.items():
        query = query.where(getattr(AuditEvent, name) == value)
    db.expire_all()
    return db.scalars(query.order_by(AuditEvent.seq)).all()


def _book(db, factories, clock, *, provider, patient, visit, days=1, status="confirmed"):
    starts = clock.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=days, hours=2)
    appt = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit.id, status=status,
                       starts_at=starts, ends_at=starts + timedelta(minutes=30), blocked_start=starts,
                       blocked_end=starts + timedelta(minutes=30), price_cents=12500,
                       payment_timing="deposit_to_book", modality="telehealth")
    db.add(appt)
    db.commit()
    return appt


def test_a_provider_opens_a_patient_on_their_schedule_directly(app, db, factories, clock):
    visit = factories.appointment_type()
    provider = factories.provider(types=[visit])
    patient = factories.patient(full_name="Dana Whitfield")
    _book(db, factories, clock, provider=provider, patient=patient, visit=visit)
    client = _client(app, provider.user)

    day = client.get("/staff/week?date=" + clock.now().date().isoformat()).get_data(as_text=True)
    assert f"/staff/patients/{patient.id}" in day          # the schedule links to the patient
    page = client.get(f"/staff/patients/{patient.id}")
    assert page.status_code == 200
    assert "Dana Whitfield" in page.get_data(as_text=True)
    assert _rows(db, access_log.BREAK_GLASS) == []
    [view] = [e for e in _rows(db, access_log.VIEWED, patient_id=patient.id)
              if e.details["endpoint"] == "staff.patient"]
    assert view.actor_id == provider.user_id and "record" not in view.details


def test_break_glass_asks_for_a_reason_then_allows_audits_and_flags(app, db, factories, clock):
    visit = factories.appointment_type()
    mine = factories.provider(types=[visit])
    theirs = factories.provider(types=[visit])
    patient = factories.patient(full_name="Rowan Achterberg")
    _book(db, factories, clock, provider=theirs, patient=patient, visit=visit)
    # a hold that was released never puts a patient on a schedule
    _book(db, factories, clock, provider=mine, patient=patient, visit=visit, days=2, status="released")
    client = _client(app, mine.user)

    ask = client.get(f"/staff/patients/{patient.id}")
    html = ask.get_data(as_text=True)
    assert ask.status_code == 200 and "not on your schedule" in html
    assert "Rowan Achterberg" not in html                       # the form names no one
    assert _rows(db, access_log.VIEWED, patient_id=patient.id) == []

    too_short = client.post(f"/staff/patients/{patient.id}/break-glass",
                            data={"reason": "need it", "csrf_token": csrf_from(html)})
    assert too_short.status_code == 422
    assert "10 to 500 characters" in too_short.get_data(as_text=True)
    assert _rows(db, access_log.BREAK_GLASS) == []

    given = client.post(f"/staff/patients/{patient.id}/break-glass",
                        data={"reason": "Covering for Dr. Theirs on call tonight", "csrf_token": csrf_from(html)})
    assert given.status_code == 303 and given.headers["Location"].endswith(f"/staff/patients/{patient.id}")
    [flag] = _rows(db, access_log.BREAK_GLASS, patient_id=patient.id)
    assert (flag.actor_id, flag.actor_role) == (mine.user_id, "provider")
    assert flag.reason == "Covering for Dr. Theirs on call tonight" and flag.details["flagged"] is True

    opened = client.get(f"/staff/patients/{patient.id}")
    assert opened.status_code == 200 and "Rowan Achterberg" in opened.get_data(as_text=True)
    [view] = _rows(db, access_log.VIEWED, patient_id=patient.id)
    assert view.details["record"] == {"break_glass": True}

    # the admin's review page flags it, with the reason and who
    admin = _client(app, factories.user("admin"))
    review = admin.get("/admin/access").get_data(as_text=True)
    assert 'data-flagged="yes"' in review and "Covering for Dr. Theirs on call tonight" in review
    assert mine.user.email in review
    report = admin.get(f"/admin/access/patients/{patient.id}").get_data(as_text=True)
    assert "Break-glass" in report and "Covering for Dr. Theirs" in report


def test_break_glass_lasts_only_its_window(app, db, factories, clock, monkeypatch):
    visit = factories.appointment_type()
    mine = factories.provider(types=[visit])
    patient = factories.patient()
    client = _client(app, mine.user)
    html = client.get(f"/staff/patients/{patient.id}").get_data(as_text=True)
    monkeypatch.setitem(app.config, "SETTINGS", dataclasses.replace(app.config["SETTINGS"], BREAK_GLASS_MINUTES=0))
    client.post(f"/staff/patients/{patient.id}/break-glass",
                data={"reason": "Urgent call from the patient's pharmacy", "csrf_token": csrf_from(html)})
    again = client.get(f"/staff/patients/{patient.id}")
    assert "not on your schedule" in again.get_data(as_text=True)     # the window is over: ask again


def test_an_unknown_patient_is_not_found_and_billing_cannot_open_patients(app, db, factories):
    provider = factories.provider()
    assert _client(app, provider.user).get("/staff/patients/987654").status_code == 404
    patient = factories.patient()
    assert _client(app, factories.user("billing")).get(f"/staff/patients/{patient.id}").status_code == 403


def test_who_looked_at_this_patient_and_the_user_report_export(app, db, factories, clock):
    visit = factories.appointment_type()
    provider = factories.provider(types=[visit])
    patient = factories.patient(full_name="Ines Okafor")
    appt = _book(db, factories, clock, provider=provider, patient=patient, visit=visit)
    other = factories.patient()
    _book(db, factories, clock, provider=provider, patient=other, visit=visit, days=3)

    own = _client(app, patient.user)
    assert own.get(f"/appointments/{appt.id}").status_code == 200
    staff = _client(app, provider.user)
    assert staff.get(f"/staff/appointments/{appt.id}/messages").status_code == 200
    assert staff.get(f"/staff/patients/{other.id}").status_code == 200

    admin_user = factories.user("admin")
    admin = _client(app, admin_user)
    found = admin.get("/admin/access?q=Okafor").get_data(as_text=True)
    assert f"/admin/access/patients/{patient.id}" in found and "Ines Okafor" in found

    page = admin.get(f"/admin/access/patients/{patient.id}").get_data(as_text=True)
    assert patient.user.email in page and provider.user.email in page      # the patient and the provider
    assert f"appointment #{appt.id}" in page

    exported = admin.get(f"/admin/access/patients/{patient.id}.csv")
    assert exported.mimetype == "text/csv"
    assert f"patient-{patient.id}-access.csv" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    views = {(r["actor_email"], r["kind"]) for r in rows if r["action"] == access_log.VIEWED}
    assert (patient.user.email, "appointment") in views and (provider.user.email, "message_log") in views
    assert all(r["patient_id"] == str(patient.id) for r in rows)      # the other patient is not in it
    assert all(r["ip"] and r["request_id"] for r in rows if r["action"] == access_log.VIEWED)

    staff_page = admin.get("/admin/staff").get_data(as_text=True)      # where the admin finds each report
    assert f"/admin/access/users/{provider.user_id}" in staff_page
    by_user = admin.get(f"/admin/access/users/{provider.user_id}.csv")
    user_rows = list(csv.DictReader(io.StringIO(by_user.get_data(as_text=True))))
    assert {r["patient_id"] for r in user_rows if r["action"] == access_log.VIEWED} >= {str(patient.id), str(other.id)}
    assert {r["actor_id"] for r in user_rows} == {str(provider.user_id)}
    user_page = admin.get(f"/admin/access/users/{provider.user_id}").get_data(as_text=True)
    assert "message log" in user_page

    # opening the reports is itself audited (as the admin's view of this patient)
    db.expire_all()
    assert any(e.actor_id == admin_user.id for e in _rows(db, access_log.VIEWED, patient_id=patient.id))


def test_a_day_list_names_every_patient_it_shows(app, db, factories, clock):
    visit = factories.appointment_type()
    provider = factories.provider(types=[visit])
    first, second = factories.patient(), factories.patient()
    a = _book(db, factories, clock, provider=provider, patient=first, visit=visit)
    starts = a.starts_at + timedelta(hours=1)
    db.add(Appointment(patient_id=second.id, provider_id=provider.id, type_id=visit.id, status="confirmed",
                       starts_at=starts, ends_at=starts + timedelta(minutes=30), blocked_start=starts,
                       blocked_end=starts + timedelta(minutes=30), price_cents=12500,
                       payment_timing="deposit_to_book", modality="telehealth"))
    db.commit()
    client = _client(app, provider.user)
    day = a.starts_at.astimezone(__import__("zoneinfo").ZoneInfo(provider.timezone)).date().isoformat()
    assert client.get(f"/staff/day?date={day}").status_code == 200
    [view] = [e for e in _rows(db, access_log.VIEWED) if e.details.get("endpoint") == "staff.day"]
    assert sorted(view.details["patient_ids"]) == sorted([first.id, second.id])
    assert view.patient_id is None
    admin = _client(app, factories.user("admin"))
    for patient in (first, second):      # each patient's report finds the one day-list view
        rows = access_log.patient_report(db, patient.id, views_only=True)
        assert [r.endpoint for r in rows if r.actor_id == provider.user_id] == ["staff.day"]
    assert admin.get(f"/admin/access/patients/{first.id}").status_code == 200
