"""The patient's booking pages: search, slots, holds, cancel, reschedule, .ics."""
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.models import Appointment
from app.services import audit, booking
from app.services.audit import Actor
from tests.helpers.web import csrf_from, login

UTC = timezone.utc
MON_10_NY = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


@pytest.fixture
def clinic(factories):
    cardio = factories.specialty("Cardiology")
    derm = factories.specialty("Dermatology")
    visit = factories.appointment_type(name="Telehealth follow-up")
    alice = factories.provider(types=[visit], specialty=cardio, full_name="Dr. Alice Heart")
    bob = factories.provider(types=[visit], specialty=derm, timezone="America/Los_Angeles",
                             full_name="Dr. Bob Skin")
    return {"visit": visit, "alice": alice, "bob": bob, "cardio": cardio, "derm": derm}


@pytest.fixture
def patient_client(client, factories):
    user = factories.user("patient", timezone="America/New_York")
    assert login(client, user.email).status_code == 303
    client.user = user
    return client


def slot_times(html):
    return re.findall(r'name="starts_at" value="([^"]+)"', html)


def hold_via_page(client, provider_id, type_id, starts_at):
    page = client.get(f"/book/providers/{provider_id}?type_id={type_id}").get_data(as_text=True)
    return client.post(f"/book/providers/{provider_id}/holds",
                       data={"type_id": type_id, "starts_at": starts_at, "csrf_token": csrf_from(page)})


def test_search_filters_by_specialty_and_shows_first_available(patient_client, clinic, clock):
    html = patient_client.get(f"/book?type_id={clinic['visit'].id}").get_data(as_text=True)
    assert "Dr. Alice Heart" in html and "Dr. Bob Skin" in html
    assert "First available" in html
    only = patient_client.get(f"/book?type_id={clinic['visit'].id}&specialty_id={clinic['derm'].id}")
    assert "Dr. Bob Skin" in only.get_data(as_text=True)
    assert "Dr. Alice Heart" not in only.get_data(as_text=True)
    fragment = patient_client.get(f"/book?type_id={clinic['visit'].id}", headers={"HX-Request": "true"})
    assert fragment.get_data(as_text=True).lstrip().startswith('<section id="results"')


def test_search_bad_input_is_a_clear_400(patient_client, clinic):
    for query in ("type_id=abc", "date=31/12/2026", "modality=carrier-pigeon", "type_id=424242"):
        response = patient_client.get(f"/book?{query}")
        assert response.status_code == 400, query
        assert "Traceback" not in response.get_data(as_text=True)


def test_provider_page_shows_slots_in_the_patients_zone(patient_client, clinic, clock):
    # Bob works 9-17 Los Angeles time: his 9:00 is 12:00 for a New York patient.
    html = patient_client.get(f"/book/providers/{clinic['bob'].id}?type_id={clinic['visit'].id}").get_data(as_text=True)
    times = slot_times(html)
    assert times
    first = datetime.fromisoformat(times[0])
    assert first.astimezone(UTC).hour == 17        # 9:00 PST = 17:00 UTC
    assert ">12:00 PM<" in html
    assert "Times are shown in America/New_York" in html


def test_taking_a_slot_holds_it_and_shows_the_countdown(patient_client, clinic, clock, db):
    response = hold_via_page(patient_client, clinic["alice"].id, clinic["visit"].id, MON_10_NY.isoformat())
    assert response.status_code == 303
    review = patient_client.get(response.headers["Location"])
    html = review.get_data(as_text=True)
    assert 'data-countdown-seconds="600"' in html
    assert "10:00" in html
    hold = db.query(Appointment).one()
    assert hold.status == "held" and hold.patient.user_id == patient_client.user.id
    assert "slot.selected" in audit.actions_for(db, appointment_id=hold.id)


def test_a_taken_slot_disappears_and_taking_it_gives_the_nearest_free_ones(app, patient_client, clinic, clock,
                                                                           factories):
    assert hold_via_page(patient_client, clinic["alice"].id, clinic["visit"].id,
                         MON_10_NY.isoformat()).status_code == 303
    other = app.test_client()
    user = factories.user("patient")
    login(other, user.email)
    html = other.get(f"/book/providers/{clinic['alice'].id}?type_id={clinic['visit'].id}").get_data(as_text=True)
    assert MON_10_NY.isoformat() not in slot_times(html)
    response = other.post(f"/book/providers/{clinic['alice'].id}/holds",
                          data={"type_id": clinic["visit"].id, "starts_at": MON_10_NY.isoformat(),
                                "csrf_token": csrf_from(html)}, headers={"HX-Request": "true"})
    assert response.status_code == 409
    body = response.get_data(as_text=True)
    assert "that time was just taken" in body
    assert "Nearest free times" in body and slot_times(body)
    assert body.lstrip().startswith('<section id="slot-list"')


@pytest.mark.parametrize("starts_at, status", [
    ("not-a-time", 400),
    ("2026-12-07T10:00:00", 400),                 # no zone: forged
    ((MON_10_NY - timedelta(days=3)).isoformat(), 400),
    ((MON_10_NY + timedelta(minutes=13)).isoformat(), 400),
])
def test_bad_hold_requests_change_nothing(patient_client, clinic, clock, db, starts_at, status):
    response = hold_via_page(patient_client, clinic["alice"].id, clinic["visit"].id, starts_at)
    assert response.status_code == status
    assert db.query(Appointment).count() == 0


def test_unknown_provider_and_unoffered_type(patient_client, clinic, clock, factories, db):
    assert hold_via_page(patient_client, 999999, clinic["visit"].id, MON_10_NY.isoformat()).status_code == 404
    other = factories.appointment_type(name="Not offered")
    response = hold_via_page(patient_client, clinic["alice"].id, other.id, MON_10_NY.isoformat())
    assert response.status_code == 400
    assert "does not offer" in response.get_data(as_text=True)
    assert db.query(Appointment).count() == 0


def _confirmed(db, factories, clinic, clock, policy, patient, starts_at=MON_10_NY + timedelta(days=2)):
    appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=clinic["alice"].id,
                                    type_id=clinic["visit"].id, starts_at=starts_at, policy=policy,
                                    actor=Actor.system("test"))
    booking.confirm(db, appointment, actor=Actor.system("test"), now=clock.now())
    db.commit()
    return appointment


def test_another_patients_appointment_is_404_and_audited(patient_client, clinic, clock, factories, db, policy):
    theirs = _confirmed(db, factories, clinic, clock, policy, factories.patient())
    for url in (f"/appointments/{theirs.id}", f"/book/holds/{theirs.id}", f"/appointments/{theirs.id}.ics"):
        assert patient_client.get(url).status_code == 404
    denied = db.query(audit.AuditEvent).filter_by(action="access.denied").all()
    assert len(denied) == 3 and denied[0].actor_id == patient_client.user.id


def test_cancel_needs_a_reason_then_cancels(patient_client, clinic, clock, factories, db, policy):
    mine = _confirmed(db, factories, clinic, clock, policy, patient_client.user.patient)
    page = patient_client.get(f"/appointments/{mine.id}").get_data(as_text=True)
    refused = patient_client.post(f"/appointments/{mine.id}/cancel",
                                  data={"reason": "", "csrf_token": csrf_from(page)})
    assert refused.status_code == 422
    assert "Please give a reason" in refused.get_data(as_text=True)
    done = patient_client.post(f"/appointments/{mine.id}/cancel",
                               data={"reason": "Travelling", "csrf_token": csrf_from(page)})
    assert done.status_code == 303
    db.refresh(mine)
    assert mine.status == "canceled" and mine.cancel_reason == "Travelling"
    assert mine.canceled_by_id == patient_client.user.id
    again = patient_client.post(f"/appointments/{mine.id}/cancel",
                                data={"reason": "double click", "csrf_token": csrf_from(page)})
    assert again.status_code == 303          # a repeat is harmless
    assert audit.actions_for(db, appointment_id=mine.id).count("booking.canceled") == 1


def test_reschedule_moves_the_same_row(patient_client, clinic, clock, factories, db, policy):
    mine = _confirmed(db, factories, clinic, clock, policy, patient_client.user.patient)
    page = patient_client.get(f"/appointments/{mine.id}/reschedule").get_data(as_text=True)
    new = [t for t in slot_times(page) if t != mine.starts_at.isoformat()][3]
    moved = patient_client.post(f"/appointments/{mine.id}/reschedule",
                                data={"starts_at": new, "csrf_token": csrf_from(page)})
    assert moved.status_code == 303
    db.refresh(mine)
    assert mine.starts_at == datetime.fromisoformat(new) and mine.status == "confirmed"
    assert db.query(Appointment).count() == 1


def test_ics_for_a_confirmed_appointment(patient_client, clinic, clock, factories, db, policy):
    mine = _confirmed(db, factories, clinic, clock, policy, patient_client.user.patient)
    response = patient_client.get(f"/appointments/{mine.id}.ics")
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    body = response.get_data(as_text=True)
    assert "BEGIN:VEVENT" in body
    assert "DTSTART:20261209T150000Z" in body
    assert "Cardiology" not in body            # no condition-revealing specialty


def test_types_without_an_online_payment_flow_are_not_offered(patient_client, clinic, clock, factories, db,
                                                             monkeypatch):
    from app.services import schedule

    # Every timing has its online flow since issue 15: the gate is tested with hybrid taken out of it.
    monkeypatch.setattr(schedule, "ONLINE_TIMINGS", ("deposit_to_book", "post_visit"))
    later = factories.appointment_type(name="Pay after the visit", payment_timing="hybrid")
    clinic["alice"].types.append(later)
    db.commit()
    search = patient_client.get("/book").get_data(as_text=True)
    assert "Telehealth follow-up" in search and "Pay after the visit" not in search
    page = patient_client.get(f"/book/providers/{clinic['alice'].id}?type_id={later.id}").get_data(as_text=True)
    assert "Pay after the visit" not in page          # falls back to a type that can be finished online
    refused = hold_via_page(patient_client, clinic["alice"].id, later.id, MON_10_NY.isoformat())
    assert refused.status_code == 400 and "cannot be booked online yet" in refused.get_data(as_text=True)
    assert db.query(Appointment).count() == 0


# -- the slot page on a phone's data budget ---------------------------------------------------------------

EVERY_DAY_9_TO_5 = tuple((weekday, 9, 17) for weekday in range(7))
DAY_FORM_RE = re.compile(r'<form method="post" action="(/book/providers/\d+/holds)"(.*?)</form>', re.S)


def test_a_full_week_of_slots_is_under_20_kb_and_a_day_form_books_one(patient_client, factories, clock, db):
    visit = factories.appointment_type(name="Video consult", duration_minutes=30)
    busy = factories.provider(types=[visit], full_name="Dr. Every Day", hours=EVERY_DAY_9_TO_5)
    response = patient_client.get(f"/book/providers/{busy.id}?type_id={visit.id}")
    html = response.get_data(as_text=True)
    assert len(slot_times(html)) == 7 * 16                   # seven full days of half-hour slots
    size = len(response.get_data())
    assert size < 20 * 1024, f"the slot page is {size} bytes"

    day_forms = DAY_FORM_RE.findall(html)
    assert len(day_forms) == 7                               # one form (one CSRF token) per day
    action, tuesday = day_forms[1]
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', tuesday))
    assert set(fields) == {"csrf_token", "type_id"}
    # The tapped button is the submitter: its name=starts_at value=... is posted with the form's fields.
    tapped = re.findall(r'<button class="slot" name="starts_at" value="([^"]+)">([^<]+)</button>', tuesday)[2]
    assert tapped[1] == "10:00 AM"
    held = patient_client.post(action, data={**fields, "starts_at": tapped[0]})
    assert held.status_code == 303
    hold = db.query(Appointment).one()
    assert hold.starts_at == datetime.fromisoformat(tapped[0]) == datetime(2026, 12, 8, 15, 0, tzinfo=UTC)
    assert held.headers["Location"] == f"/book/holds/{hold.id}"
    again = patient_client.get(f"/book/providers/{busy.id}?type_id={visit.id}").get_data(as_text=True)
    assert tapped[0] not in slot_times(again) and len(slot_times(again)) == 7 * 16 - 1


def test_an_htmx_hold_sends_the_browser_to_the_whole_review_page(patient_client, clinic, clock, db):
    page = patient_client.get(f"/book/providers/{clinic['alice'].id}?type_id={clinic['visit'].id}")
    response = patient_client.post(f"/book/providers/{clinic['alice'].id}/holds",
                                   data={"type_id": clinic["visit"].id, "starts_at": MON_10_NY.isoformat(),
                                         "csrf_token": csrf_from(page.get_data(as_text=True))},
                                   headers={"HX-Request": "true"})
    hold = db.query(Appointment).one()
    # HX-Redirect: the browser loads the page itself (an HX-Location follow-up would get a fragment).
    assert response.status_code == 204 and response.headers["HX-Redirect"] == f"/book/holds/{hold.id}"
    assert "HX-Location" not in response.headers


NEAREST_RE = re.compile(r'<ul class="slots slots-dated">(.*?)</ul>', re.S)


def test_nearest_free_times_say_which_day_in_the_patients_zone(app, patient_client, clinic, clock, factories):
    # Bob works 9-17 Los Angeles time; the patient reads New York time.
    taken = datetime(2026, 12, 8, 18, 0, tzinfo=UTC)             # Tue 10:00 LA = 1:00 PM New York
    assert hold_via_page(patient_client, clinic["bob"].id, clinic["visit"].id, taken.isoformat()).status_code == 303
    other = app.test_client()
    login(other, factories.user("patient", timezone="America/New_York").email)
    page = other.get(f"/book/providers/{clinic['bob'].id}?type_id={clinic['visit'].id}").get_data(as_text=True)
    response = other.post(f"/book/providers/{clinic['bob'].id}/holds",
                          data={"type_id": clinic["visit"].id, "starts_at": taken.isoformat(),
                                "csrf_token": csrf_from(page)}, headers={"HX-Request": "true"})
    assert response.status_code == 409
    [nearest] = NEAREST_RE.findall(response.get_data(as_text=True))
    labels = re.findall(r'<button class="slot"[^>]*>([^<]+)</button>', nearest)
    assert labels and all(re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) Dec \d{1,2}, \d{1,2}:\d{2} [AP]M", label)
                          for label in labels), labels
    assert "Tue Dec 8, 12:30 PM" in labels and "Tue Dec 8, 1:30 PM" in labels


def test_nearest_free_times_on_an_ended_checkout_say_which_day(patient_client, clinic, clock, db, policy):
    hold = booking.take_hold(db, now=clock.now(), patient=patient_client.user.patient,
                             provider_id=clinic["alice"].id, type_id=clinic["visit"].id, starts_at=MON_10_NY,
                             policy=policy, actor=Actor.system("test"))
    booking.release(db, hold, actor=Actor.system("test"), now=clock.now(), reason="hold expired")
    db.commit()
    response = patient_client.get(f"/checkout/{hold.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 409 and "Nearest free times" in html
    labels = re.findall(r'<a class="button" href="/book/providers/[^"]+">([^<]+)</a>', html)
    assert "Mon Dec 7, 10:00 AM" in labels or "Mon Dec 7, 10:30 AM" in labels, labels
    assert all(re.match(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) Dec \d{1,2}, ", label) for label in labels), labels


# -- static files: fingerprinted and cached for a year; pages never cached -----------------------------------

def test_static_urls_carry_a_content_hash_and_are_cached_for_a_year_pages_never(app, patient_client, clinic,
                                                                                clock):
    import hashlib

    page = patient_client.get(f"/book/providers/{clinic['alice'].id}?type_id={clinic['visit'].id}")
    assert page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    urls = re.findall(r'(?:href|src)="(/(?:static|vendor)/[^"]+)"', html)
    assert {u.split("?")[0] for u in urls} >= {"/static/css/app.css", "/static/js/app.js", "/vendor/htmx.min.js"}
    for url in urls:
        path, _, query = url.partition("?")
        assert re.fullmatch(r"v=[0-9a-f]{12}", query), url
        if path.startswith("/static/"):
            content = (Path(app.static_folder) / path.removeprefix("/static/")).read_bytes()
            assert query == "v=" + hashlib.sha256(content).hexdigest()[:12], url
        with patient_client.get(url) as served:
            assert served.status_code == 200, url
            assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable", url
        # Without its fingerprint (or with a stale one) a file is not pinned in the cache.
        for other in (path, path + "?v=000000000000"):
            with patient_client.get(other) as unpinned:
                assert unpinned.headers["Cache-Control"] == "no-cache", other
    assert patient_client.get("/patient").headers["Cache-Control"] == "no-store"
