"""The staff pages: availability and time off, visit types, the day view and its actions."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from app.models import Appointment, AppointmentType, AvailabilityException, AvailabilityRule, AuditEvent
from app.services import audit, booking
from app.services.audit import Actor
from app.services.schedule import provider_slots
from tests.helpers.web import login

UTC = timezone.utc
MON_10_NY = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)       # Monday 10:00 New York (clock: 08:00)


def book(db, factories, provider, visit, starts_at, clock, policy, **patient_fields):
    """A confirmed booking, made the way the booking pages make it: hold, then confirm."""
    patient = factories.patient(**patient_fields)
    actor = Actor("user", patient.user_id, "patient")
    appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id,
                                    type_id=visit.id, starts_at=starts_at, policy=policy, actor=actor)
    booking.confirm(db, appointment, actor=actor, now=clock.now())
    db.commit()
    return appointment


def sign_in(client, provider):
    response = login(client, provider.user.email)
    assert response.status_code == 303
    return provider.user


@pytest.fixture
def visit(factories):
    return factories.appointment_type(duration_minutes=30)


# -- weekly hours -------------------------------------------------------------------------------

def test_added_hours_become_slots_and_removed_hours_disappear(db, client, forms, factories, clock, visit):
    provider = factories.provider(types=[visit], hours=[])
    sign_in(client, provider)
    editor = f"/staff/providers/{provider.id}/availability"
    assert provider_slots(db, provider=provider, appointment_type=visit, now=clock.now()) == []

    response = forms.post(f"/staff/providers/{provider.id}/rules", page=editor,
                          data={"weekday": "1", "start": "09:00", "end": "11:00", "type_id": "0"})
    assert response.status_code == 303
    page = client.get(editor).get_data(as_text=True)
    assert "Tuesday 09:00–11:00" in page

    slots = provider_slots(db, provider=provider, appointment_type=visit, now=clock.now())
    # Tuesday Dec 8, 9:00 to 10:30 New York time (EST, UTC-5), every 30 minutes.
    assert [s.starts_at for s in slots] == [datetime(2026, 12, 8, 14, 0, tzinfo=UTC) + timedelta(minutes=30 * i)
                                            for i in range(4)]
    rule = db.scalars(select(AvailabilityRule).where(AvailabilityRule.provider_id == provider.id)).one()
    assert audit.actions_for(db, subject_user_id=provider.user_id)[-1] == "availability.rule_added"

    response = forms.post(f"/staff/providers/{provider.id}/rules/{rule.id}/delete", page=editor, data={})
    assert response.status_code == 303
    assert provider_slots(db, provider=provider, appointment_type=visit, now=clock.now()) == []
    assert audit.actions_for(db, subject_user_id=provider.user_id)[-1] == "availability.rule_deleted"


def test_hours_that_end_before_they_start_are_refused(db, client, forms, factories, visit):
    provider = factories.provider(types=[visit], hours=[])
    sign_in(client, provider)
    response = forms.post(f"/staff/providers/{provider.id}/rules",
                          page=f"/staff/providers/{provider.id}/availability",
                          data={"weekday": "1", "start": "11:00", "end": "09:00", "type_id": "0"})
    assert response.status_code == 422
    assert "The end must be after the start." in response.get_data(as_text=True)
    assert db.scalar(select(func.count(AvailabilityRule.id))) == 0


def test_a_provider_cannot_open_or_change_another_providers_editor(db, client, forms, factories, visit):
    mine = factories.provider(types=[visit])
    theirs = factories.provider(types=[visit], hours=[])
    sign_in(client, mine)
    assert client.get(f"/staff/providers/{mine.id}/availability").status_code == 200
    assert client.get(f"/staff/providers/{theirs.id}/availability").status_code == 404
    response = forms.post(f"/staff/providers/{theirs.id}/rules",
                          page=f"/staff/providers/{mine.id}/availability",
                          data={"weekday": "1", "start": "09:00", "end": "11:00", "type_id": "0"})
    assert response.status_code == 404
    assert db.scalar(select(func.count(AvailabilityRule.id)).where(
        AvailabilityRule.provider_id == theirs.id)) == 0
    # /staff/availability takes a provider to their own editor.
    assert client.get("/staff/availability").headers["Location"].endswith(
        f"/staff/providers/{mine.id}/availability")


def test_an_admin_edits_any_providers_hours(db, client, forms, factories, login_as, visit):
    provider = factories.provider(types=[visit], hours=[])
    login_as("admin")
    response = forms.post(f"/staff/providers/{provider.id}/rules",
                          page=f"/staff/providers/{provider.id}/availability",
                          data={"weekday": "2", "start": "13:00", "end": "15:00", "type_id": str(visit.id)})
    assert response.status_code == 303
    rule = db.scalars(select(AvailabilityRule).where(AvailabilityRule.provider_id == provider.id)).one()
    assert (rule.weekday, rule.type_id) == (2, visit.id)


# -- time off -----------------------------------------------------------------------------------

def test_time_off_over_a_confirmed_booking_is_saved_and_lists_the_booking(db, client, forms, factories, clock,
                                                                          policy, visit):
    provider = factories.provider(types=[visit])
    booked = book(db, factories, provider, visit, MON_10_NY, clock, policy, full_name="Ada Lovelace")
    sign_in(client, provider)
    editor = f"/staff/providers/{provider.id}/availability"

    response = forms.post(f"/staff/providers/{provider.id}/exceptions", page=editor, data={
        "starts_local": "2026-12-07T09:00", "ends_local": "2026-12-07T12:00", "reason": "other",
        "note": "Training"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "1 booking falls inside it" in html
    assert "Ada Lovelace" in html and "10:00 AM" in html

    exception = db.scalars(select(AvailabilityException)).one()
    assert (exception.starts_local, exception.ends_local, exception.reason) == (
        datetime(2026, 12, 7, 9, 0), datetime(2026, 12, 7, 12, 0), "other")
    assert db.get(Appointment, booked.id).status == "confirmed"      # listed, never touched
    row = db.scalars(select(AuditEvent).where(AuditEvent.action == "availability.exception_added")).one()
    assert row.details["conflicting_appointment_ids"] == [booked.id]
    # The editor keeps showing it until staff deal with it.
    assert "Still booked inside it" in client.get(editor).get_data(as_text=True)


def test_time_off_is_read_in_the_providers_zone(db, client, forms, factories, clock, policy, visit):
    provider = factories.provider(types=[visit])
    book(db, factories, provider, visit, MON_10_NY, clock, policy)    # 15:00 UTC
    sign_in(client, provider)
    # 15:00-16:00 New York is 20:00-21:00 UTC: after the booking, so nothing to list.
    response = forms.post(f"/staff/providers/{provider.id}/exceptions",
                          page=f"/staff/providers/{provider.id}/availability", data={
                              "starts_local": "2026-12-07T15:00", "ends_local": "2026-12-07T16:00",
                              "reason": "vacation", "note": ""})
    assert response.status_code == 303
    slots = provider_slots(db, provider=provider, appointment_type=visit, now=clock.now(),
                           start=datetime(2026, 12, 7, 19, 0, tzinfo=UTC), days=1)
    starts = {s.starts_at for s in slots}
    assert datetime(2026, 12, 7, 20, 0, tzinfo=UTC) not in starts         # 15:00 New York: time off
    assert datetime(2026, 12, 7, 21, 0, tzinfo=UTC) in starts             # 16:00 New York: open again


def test_time_off_that_ends_before_it_starts_is_refused(db, client, forms, factories, visit):
    provider = factories.provider(types=[visit])
    sign_in(client, provider)
    response = forms.post(f"/staff/providers/{provider.id}/exceptions",
                          page=f"/staff/providers/{provider.id}/availability", data={
                              "starts_local": "2026-12-07T15:00", "ends_local": "2026-12-07T09:00",
                              "reason": "vacation", "note": ""})
    assert response.status_code == 422
    assert "The end must be after the start." in response.get_data(as_text=True)
    assert db.scalar(select(func.count(AvailabilityException.id))) == 0


# -- visit types ---------------------------------------------------------------------------------

TYPE_FORM = dict(name="Telehealth follow-up", duration_minutes="30", buffer_before_minutes="5",
                 buffer_after_minutes="10", price="125.50", payment_timing="post_visit", modality="telehealth",
                 min_notice_minutes="120", horizon_days="45", cancellation_window_hours="24",
                 slot_interval_minutes="", is_active="y")


def test_an_admin_creates_a_type_with_its_price_in_cents(db, client, forms, login_as):
    login_as("admin")
    response = forms.post("/staff/types/new", data=TYPE_FORM)
    assert response.status_code == 303
    saved = db.scalars(select(AppointmentType)).one()
    assert saved.price_cents == 12550
    assert (saved.duration_minutes, saved.buffer_before_minutes, saved.buffer_after_minutes) == (30, 5, 10)
    assert (saved.payment_timing, saved.slot_interval_minutes, saved.is_active) == ("post_visit", None, True)
    assert "$125.50" in client.get("/staff/types").get_data(as_text=True)
    assert audit.actions_for(db)[-1] == "appointment_type.created"

    # Editing shows the price in dollars and keeps cents exact.
    assert 'value="125.50"' in client.get(f"/staff/types/{saved.id}").get_data(as_text=True)
    response = forms.post(f"/staff/types/{saved.id}", data={**TYPE_FORM, "price": "99", "is_active": ""})
    assert response.status_code == 303
    db.refresh(saved)
    assert (saved.price_cents, saved.is_active) == (9900, False)


@pytest.mark.parametrize("field, value, message", [
    ("price", "-5", "The price cannot be negative."),
    ("price", "12.345", "Enter a price in dollars"),
    ("duration_minutes", "0", "The visit must last at least one minute."),
    ("horizon_days", "0", "Enter at least 1 day."),
])
def test_bad_type_input_is_shown_next_to_the_field_and_nothing_is_saved(db, forms, login_as, field, value,
                                                                        message):
    login_as("admin")
    response = forms.post("/staff/types/new", data={**TYPE_FORM, field: value})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'id="{field}-error"' in html and message in html
    assert db.scalar(select(func.count(AppointmentType.id))) == 0


# -- provider profiles and specialties -------------------------------------------------------------

def test_an_admin_sets_up_a_provider_profile(db, client, forms, factories, login_as, visit):
    specialty = factories.specialty("Dermatology")
    user = factories.user("provider", full_name="Grace Hopper")
    login_as("admin")
    assert "Grace Hopper" in client.get("/staff/providers/new").get_data(as_text=True)
    response = forms.post("/staff/providers/new", data={
        "user_id": str(user.id), "specialty_id": str(specialty.id), "timezone": "America/Chicago",
        "bio": "Skin.", "offers_telehealth": "y", "type_ids": [str(visit.id)]})
    assert response.status_code == 303
    from app.services.staffing import provider_for_user

    provider = provider_for_user(db, user.id)
    assert (provider.timezone, provider.offers_in_person, [t.id for t in provider.types]) == (
        "America/Chicago", False, [visit.id])
    # Nobody is left without a profile, so the form has no one to offer.
    assert "Grace Hopper" not in client.get("/staff/providers/new").get_data(as_text=True)


def test_a_specialty_is_added_once(db, forms, login_as):
    from app.models import Specialty

    login_as("admin")
    assert forms.post("/staff/specialties", data={"name": "Oncology", "is_sensitive": "y"}).status_code == 303
    again = forms.post("/staff/specialties", data={"name": "oncology"})
    assert again.status_code == 422
    assert "already exists" in again.get_data(as_text=True)
    assert [(s.name, s.is_sensitive) for s in db.scalars(select(Specialty))] == [("Oncology", True)]


# -- the day view and its actions -------------------------------------------------------------------

def insert_confirmed(db, factories, provider, visit, starts_at, **patient_fields):
    appointment = Appointment(patient_id=factories.patient(**patient_fields).id, provider_id=provider.id,
                              type_id=visit.id, status="confirmed", starts_at=starts_at,
                              ends_at=starts_at + timedelta(minutes=visit.duration_minutes),
                              blocked_start=starts_at, blocked_end=starts_at + timedelta(minutes=visit.duration_minutes),
                              price_cents=visit.price_cents, payment_timing=visit.payment_timing,
                              modality=visit.modality)
    db.add(appointment)
    db.commit()
    return appointment


def test_the_day_view_lists_the_days_appointments_in_the_providers_zone(db, client, factories, clock, visit):
    provider = factories.provider(types=[visit], timezone="America/Los_Angeles")
    insert_confirmed(db, factories, provider, visit, datetime(2026, 12, 8, 17, 0, tzinfo=UTC),
                     full_name="Morning Patient")                                   # Tue 9:00 AM LA
    insert_confirmed(db, factories, provider, visit, datetime(2026, 12, 9, 6, 0, tzinfo=UTC),
                     full_name="Evening Patient")                                   # Tue 10:00 PM LA
    insert_confirmed(db, factories, provider, visit, datetime(2026, 12, 9, 17, 0, tzinfo=UTC),
                     full_name="Wednesday Patient")
    sign_in(client, provider)

    tuesday = client.get("/staff/day?date=2026-12-08").get_data(as_text=True)
    assert "Morning Patient" in tuesday and "9:00 AM" in tuesday
    assert "Evening Patient" in tuesday and "10:00 PM" in tuesday
    assert "Wednesday Patient" not in tuesday
    assert visit.name in tuesday and "Confirmed" in tuesday

    wednesday = client.get("/staff/day?date=2026-12-09").get_data(as_text=True)
    assert "Evening Patient" not in wednesday and "Wednesday Patient" in wednesday
    week = client.get("/staff/week?date=2026-12-09").get_data(as_text=True)
    assert all(name in week for name in ("Morning Patient", "Evening Patient", "Wednesday Patient"))

    # The provider's home loads today from the day view; a bad date is a clear 400.
    assert "/staff/day" in client.get("/provider").get_data(as_text=True)
    assert client.get("/staff/day?date=tomorrow").status_code == 400


def test_another_providers_appointments_stay_hidden(db, client, factories, clock, visit):
    mine = factories.provider(types=[visit])
    theirs = factories.provider(types=[visit])
    other = insert_confirmed(db, factories, theirs, visit, MON_10_NY, full_name="Not Yours")
    sign_in(client, mine)
    assert "Not Yours" not in client.get("/staff/day?date=2026-12-07").get_data(as_text=True)
    assert client.get(f"/staff/day?provider_id={theirs.id}").status_code == 404
    page = client.get("/staff/day?date=2026-12-07").get_data(as_text=True)
    from tests.helpers.web import csrf_from

    response = client.post(f"/staff/appointments/{other.id}/check_in", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 404
    assert db.get(Appointment, other.id).status == "confirmed"


def test_check_in_then_complete_changes_the_status_and_is_audited(db, client, forms, factories, clock, policy,
                                                                  visit):
    provider = factories.provider(types=[visit])
    appt = book(db, factories, provider, visit, MON_10_NY, clock, policy)
    sign_in(client, provider)
    day = "/staff/day?date=2026-12-07"

    response = forms.post(f"/staff/appointments/{appt.id}/check_in", page=day, data={})
    assert response.status_code == 303
    assert db.get(Appointment, appt.id).status == "checked_in"
    response = forms.post(f"/staff/appointments/{appt.id}/complete", page=day, data={},
                          headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'id="appt-' in response.get_data(as_text=True) and "Completed" in response.get_data(as_text=True)
    assert db.get(Appointment, appt.id).status == "completed"
    assert audit.actions_for(db, appointment_id=appt.id) == [        # check-in opens the visit's note
        "slot.selected", "booking.confirmed", "visit.checked_in", "encounter.opened", "visit.completed"]


def test_a_wrong_state_action_is_a_clear_409(db, client, forms, factories, clock, policy, visit):
    provider = factories.provider(types=[visit])
    appt = book(db, factories, provider, visit, MON_10_NY, clock, policy)
    sign_in(client, provider)
    response = forms.post(f"/staff/appointments/{appt.id}/complete", page="/staff/day?date=2026-12-07", data={})
    assert response.status_code == 409
    assert "Only a checked-in visit can be marked completed." in response.get_data(as_text=True)
    assert db.get(Appointment, appt.id).status == "confirmed"
    # No-show before the start time is refused too.
    response = forms.post(f"/staff/appointments/{appt.id}/no_show", page="/staff/day?date=2026-12-07", data={})
    assert response.status_code == 409
    assert "only after the start time" in response.get_data(as_text=True)
    assert audit.actions_for(db, appointment_id=appt.id) == ["slot.selected", "booking.confirmed"]


def test_no_show_after_the_start_is_recorded(db, client, forms, factories, clock, policy, login_as, visit):
    provider = factories.provider(types=[visit])
    appt = book(db, factories, provider, visit, MON_10_NY, clock, policy)
    clock.set(MON_10_NY + timedelta(minutes=15))
    login_as("admin")
    response = forms.post(f"/staff/appointments/{appt.id}/no_show",
                          page=f"/staff/day?date=2026-12-07&provider_id={provider.id}", data={})
    assert response.status_code == 303
    assert db.get(Appointment, appt.id).status == "no_show"
    assert audit.actions_for(db, appointment_id=appt.id)[-1] == "visit.no_show"


def test_staff_cancel_needs_a_reason(db, client, forms, factories, clock, policy, login_as, visit):
    provider = factories.provider(types=[visit])
    appt = book(db, factories, provider, visit, MON_10_NY, clock, policy)
    billing = login_as("billing")
    form_page = f"/staff/appointments/{appt.id}/cancel"
    assert client.get(form_page).status_code == 200

    refused = forms.post(form_page, data={"reason": "  "})
    assert refused.status_code == 422
    assert "Give a reason for canceling." in refused.get_data(as_text=True)
    assert db.get(Appointment, appt.id).status == "confirmed"

    response = forms.post(form_page, data={"reason": "Provider is ill"})
    assert response.status_code == 303
    canceled = db.get(Appointment, appt.id)
    assert (canceled.status, canceled.cancel_reason, canceled.canceled_by_id) == (
        "canceled", "Provider is ill", billing.id)
    assert audit.actions_for(db, appointment_id=appt.id)[-1] == "booking.canceled"
    row = db.scalars(select(AuditEvent).where(AuditEvent.appointment_id == appt.id,
                                              AuditEvent.action == "booking.canceled")).one()
    assert (row.reason, row.actor_id, row.actor_role) == ("Provider is ill", billing.id, "billing")

    # Canceling again says so plainly.
    again = forms.post(form_page, data={"reason": "Again"})
    assert again.status_code == 409
    assert "already canceled" in again.get_data(as_text=True)


def test_billing_cannot_mark_visits(db, client, forms, factories, clock, policy, login_as, visit):
    provider = factories.provider(types=[visit])
    appt = book(db, factories, provider, visit, MON_10_NY, clock, policy)
    login_as("billing")
    response = forms.post(f"/staff/appointments/{appt.id}/check_in",
                          page=f"/staff/day?date=2026-12-07&provider_id={provider.id}", data={})
    assert response.status_code == 403
    assert db.get(Appointment, appt.id).status == "confirmed"
