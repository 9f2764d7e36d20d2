"""The waitlist's service: a freed slot is offered to the first matching patient, in turn; an
offer not taken expires and the next patient is offered it; a tap takes a hold; a booking from an
offer counts as a refilled slot; leaving withdraws an open offer; the sweep is safe to run twice."""
from datetime import date, time, timedelta

import pytest

from app.services import booking, waitlist
from app.services.audit import Actor
from tests.waitlist.conftest import SLOT, book, cancel, offers_of, token_of, wait


def actions(db, patient_id):
    from app.models import AuditEvent

    return [a for (a,) in db.query(AuditEvent.action).filter(AuditEvent.patient_id == patient_id,
                                                             AuditEvent.action.like("waitlist.%"))
            .order_by(AuditEvent.seq)]


def test_a_canceled_slot_is_offered_to_the_first_matching_patient_only(db, factories, clock, policy, wl_clinic,
                                                                      offer_settings):
    from app.models import Notification

    owner = factories.patient()
    appointment = book(db, clock, policy, owner, wl_clinic)
    own_entry = wait(db, clock, owner, wl_clinic)                         # the canceler's own: never offered
    evenings = wait(db, clock, factories.patient(), wl_clinic, earliest=time(17), latest=time(20))
    weekends = wait(db, clock, factories.patient(), wl_clinic, weekdays=0b1100000)
    first = wait(db, clock, factories.patient(phone="+15555550188"), wl_clinic)
    by_specialty = wait(db, clock, factories.patient(), wl_clinic, provider=False)

    cancel(db, clock, appointment)

    [offer] = offers_of(db, first)
    assert offer.status == "offered" and offer.starts_at == SLOT and offer.freed_appointment_id == appointment.id
    assert offer.expires_at == clock.now() + timedelta(minutes=10)
    for other in (own_entry, evenings, weekends, by_specialty):
        assert offers_of(db, other) == []
    [message] = db.query(Notification).filter_by(template="waitlist_offer").all()
    assert message.user_id == first.patient.user_id and message.appointment_id is None
    assert message.context["link"].startswith(offer_settings.PUBLIC_BASE_URL.rstrip("/") + "/w/")
    assert actions(db, first.patient_id) == ["waitlist.joined", "waitlist.offered"]


def test_the_message_names_the_clinic_time_and_link_and_nothing_clinical(db, app, jobs_app, factories, clock, policy,
                                                                       wl_clinic, offer_settings):
    from app.jobs.notifications import render
    from app.models import Notification

    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    first = wait(db, clock, factories.patient(), wl_clinic)
    cancel(db, clock, appointment)
    [row] = db.query(Notification).filter_by(template="waitlist_offer").all()
    with app.test_request_context():
        message = render(db, row)
    assert "Tuesday, December 8 at 10:00 AM" in message.text
    assert "Riverside Clinic" in message.text and "/w/" in message.text
    for secret in ("Wendy", "List", "General practice", "Video consult", first.patient.user.full_name):
        assert secret not in message.text


def test_an_ignored_offer_expires_and_the_next_patient_is_offered_once(db, factories, clock, policy, wl_clinic,
                                                                        offer_settings):
    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    first = wait(db, clock, factories.patient(), wl_clinic)
    second = wait(db, clock, factories.patient(), wl_clinic)
    cancel(db, clock, appointment)
    assert offers_of(db, second) == []

    clock.advance(timedelta(minutes=5))
    assert waitlist.expire_due_offers(db, now=clock.now())["offers_expired"] == 0     # not yet
    db.commit()
    clock.advance(timedelta(minutes=5, seconds=1))
    counts = waitlist.expire_due_offers(db, now=clock.now())
    db.commit()
    assert counts["offers_expired"] == 1 and counts["offers_made"] == 1
    assert [o.status for o in offers_of(db, first)] == ["expired"]
    [offer] = offers_of(db, second)
    assert offer.status == "offered"
    again = waitlist.expire_due_offers(db, now=clock.now())                       # the sweep runs twice
    db.commit()
    assert again == {"offers_expired": 0, "offers_made": 0, "entries_ended": 0}
    assert len(offers_of(db, second)) == 1

    with pytest.raises(waitlist.OfferGone) as gone:                              # the first's link is dead
        waitlist.claim(db, token_of(db, offers_of(db, first)[0]), now=clock.now(), hold_policy=policy)
    assert gone.value.kind == "expired"
    db.rollback()


def test_a_tap_holds_the_slot_and_the_booking_counts_as_refilled(db, factories, clock, policy, wl_clinic,
                                                                 offer_settings):
    from app.models import Appointment, WaitlistEntry

    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    first = wait(db, clock, factories.patient(), wl_clinic)
    cancel(db, clock, appointment)
    [offer] = offers_of(db, first)
    token = token_of(db, offer)

    hold = waitlist.claim(db, token, now=clock.now(), hold_policy=policy)
    db.commit()
    assert hold.status == "held" and hold.patient_id == first.patient_id and hold.starts_at == SLOT
    assert offers_of(db, first)[0].status == "claimed"
    with pytest.raises(waitlist.OfferGone) as gone:                              # single use
        waitlist.claim(db, token, now=clock.now(), hold_policy=policy)
    assert gone.value.kind == "used" and gone.value.offer.hold_id == hold.id
    db.rollback()

    booking.confirm(db, db.get(Appointment, hold.id), actor=Actor.system("test"), now=clock.now())
    db.commit()
    assert offers_of(db, first)[0].status == "booked"
    assert db.get(WaitlistEntry, first.id).status == "fulfilled"
    assert waitlist.refilled_count(db) == 1 and waitlist.refilled_count(db, provider_id=wl_clinic.provider.id) == 1
    assert actions(db, first.patient_id) == ["waitlist.joined", "waitlist.offered", "waitlist.claimed",
                                            "waitlist.refilled", "waitlist.fulfilled"]


def test_a_released_offer_hold_goes_to_the_next_patient(db, factories, clock, policy, wl_clinic, offer_settings):
    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    first = wait(db, clock, factories.patient(), wl_clinic)
    second = wait(db, clock, factories.patient(), wl_clinic)
    cancel(db, clock, appointment)
    hold = waitlist.claim(db, token_of(db, offers_of(db, first)[0]), now=clock.now(), hold_policy=policy)
    db.commit()
    clock.advance(policy.ttl + timedelta(seconds=1))
    assert booking.expire_due_holds(db, now=clock.now()) == 1                   # the hold ran out: freed again
    db.commit()
    assert offers_of(db, first)[0].status == "lapsed"
    [offer] = offers_of(db, second)
    assert offer.status == "offered" and offer.freed_appointment_id == hold.id


def test_a_reschedule_offers_the_time_it_left(db, factories, clock, policy, wl_clinic, offer_settings):
    appointment = book(db, clock, policy, factories.patient(), wl_clinic, starts_at=SLOT + timedelta(days=2))
    first = wait(db, clock, factories.patient(), wl_clinic)
    booking.reschedule(db, appointment, actor=Actor.system("test"), now=clock.now(),
                       new_starts_at=SLOT + timedelta(days=3))
    db.commit()
    [offer] = offers_of(db, first)
    assert offer.starts_at == SLOT + timedelta(days=2)


def test_a_new_hold_replacing_an_expired_one_offers_nothing(db, factories, clock, policy, wl_clinic, offer_settings):
    stale = booking.take_hold(db, now=clock.now(), patient=factories.patient(), provider_id=wl_clinic.provider.id,
                              type_id=wl_clinic.visit.id, starts_at=SLOT, policy=policy, actor=Actor.system("test"))
    db.commit()
    first = wait(db, clock, factories.patient(), wl_clinic)
    clock.advance(policy.ttl + timedelta(seconds=1))
    booking.take_hold(db, now=clock.now(), patient=factories.patient(), provider_id=wl_clinic.provider.id,
                      type_id=wl_clinic.visit.id, starts_at=SLOT, policy=policy, actor=Actor.system("test"))
    db.commit()
    assert stale.status == "released"
    assert offers_of(db, first) == []                                          # the time was taken at once


def test_leaving_withdraws_the_open_offer_and_the_next_patient_gets_it_when_it_expires(
        db, factories, clock, policy, wl_clinic, offer_settings):
    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    first = wait(db, clock, factories.patient(), wl_clinic)
    second = wait(db, clock, factories.patient(), wl_clinic)
    cancel(db, clock, appointment)
    [offer] = offers_of(db, first)
    assert waitlist.leave(db, first, actor=Actor.system("test"), now=clock.now())
    db.commit()
    assert offers_of(db, first)[0].status == "withdrawn"
    with pytest.raises(waitlist.OfferGone) as gone:
        waitlist.claim(db, token_of(db, offer), now=clock.now(), hold_policy=policy)
    assert gone.value.kind in ("used", "ended")
    db.rollback()
    assert waitlist.entries_for(db, first.patient_id) == []
    assert not waitlist.leave(db, first, actor=Actor.system("test"), now=clock.now())       # a repeat: no-op


def test_two_patients_offered_one_slot_tapping_at_once_get_one_hold(app, db, factories, clock, policy, wl_clinic,
                                                                    offer_settings, monkeypatch):
    from dataclasses import replace

    from app.extensions import db as flask_db
    from app.models import Appointment, WaitlistOffer
    from tests.helpers.concurrency import run_together

    monkeypatch.setitem(app.config, "SETTINGS", replace(offer_settings, WAITLIST_OFFER_FANOUT=2))
    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    first = wait(db, clock, factories.patient(), wl_clinic)
    second = wait(db, clock, factories.patient(), wl_clinic)
    cancel(db, clock, appointment)
    tokens = [token_of(db, offers_of(db, entry)[0]) for entry in (first, second)]
    now = clock.now()

    def tap(token):
        def run():
            with app.app_context():
                try:
                    hold = waitlist.claim(flask_db.session, token, now=now, hold_policy=policy)
                    flask_db.session.commit()
                    return ("held", hold.id)
                except waitlist.OfferGone as error:
                    flask_db.session.commit()
                    return (error.kind, None)
                finally:
                    flask_db.session.remove()
        return run

    results = run_together(tap(tokens[0]), tap(tokens[1]))
    assert sorted(kind for kind, _ in results) == ["held", "taken"]
    db.expire_all()
    holding = db.query(Appointment).filter(Appointment.provider_id == wl_clinic.provider.id,
                                           Appointment.status.in_(("held", "confirmed"))).all()
    assert len(holding) == 1
    statuses = sorted(o.status for o in db.query(WaitlistOffer).all())
    assert statuses == ["claimed", "withdrawn"]                                  # nothing half-done


def test_join_refuses_a_bad_window(db, factories, clock, wl_clinic):
    patient = factories.patient()
    for kwargs, words in [(dict(first_day=date(2026, 12, 1)), "past"),
                          (dict(last_day=date(2026, 12, 1)), "on or after"),
                          (dict(earliest=time(18), latest=time(8)), "after the earliest"),
                          (dict(weekdays=0), "at least one day")]:
        values = dict(first_day=date(2026, 12, 7), last_day=date(2026, 12, 20), weekdays=127, earliest=time(8),
                      latest=time(18))
        values.update(kwargs)
        with pytest.raises(waitlist.WaitlistError) as error:
            waitlist.join(db, patient=patient, type_id=wl_clinic.visit.id, provider_id=wl_clinic.provider.id,
                          specialty_id=None, timezone="America/New_York", now=clock.now(),
                          actor=Actor.system("test"), **values)
        assert words in str(error.value)
        db.rollback()


def test_entries_whose_last_day_passed_end_in_the_sweep(db, factories, clock, wl_clinic, offer_settings):
    entry = wait(db, clock, factories.patient(), wl_clinic, last_day=date(2026, 12, 8))
    clock.advance(timedelta(days=3))
    assert waitlist.expire_due_offers(db, now=clock.now())["entries_ended"] == 1
    db.commit()
    assert offers_of(db, entry) == [] and waitlist.entries_for(db, entry.patient_id) == []


def test_a_sweep_that_dies_before_its_commit_leaves_the_work_to_the_next_run_once(db, factories, clock, policy,
                                                                                  wl_clinic, offer_settings):
    from app.models import Notification

    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    first = wait(db, clock, factories.patient(), wl_clinic)
    second = wait(db, clock, factories.patient(), wl_clinic)
    cancel(db, clock, appointment)
    clock.advance(timedelta(minutes=11))
    waitlist.expire_due_offers(db, now=clock.now())
    db.rollback()                                                   # the process died before the commit
    assert [o.status for o in offers_of(db, first)] == ["offered"] and offers_of(db, second) == []
    assert waitlist.expire_due_offers(db, now=clock.now())["offers_made"] == 1
    db.commit()
    assert waitlist.expire_due_offers(db, now=clock.now())["offers_made"] == 0
    db.commit()
    [offer] = offers_of(db, second)
    assert db.query(Notification).filter_by(dedupe_key=f"waitlist_offer:{offer.id}").count() == 1


def test_the_job_at_an_offers_expiry_moves_on_only_when_due(db, jobs_app, factories, clock, policy, wl_clinic,
                                                             offer_settings):
    from app.jobs.waitlist import expire_offer

    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    first = wait(db, clock, factories.patient(), wl_clinic)
    second = wait(db, clock, factories.patient(), wl_clinic)
    cancel(db, clock, appointment)
    [offer] = offers_of(db, first)
    assert expire_offer(offer.id) == 0                              # early (a clock skew): nothing moves
    clock.advance(timedelta(minutes=10))
    assert expire_offer(offer.id) == 1
    assert expire_offer(offer.id) == 0                              # a repeat
    assert [o.status for o in offers_of(db, second)] == ["offered"]


def test_a_spanish_speaking_patient_is_offered_the_slot_in_spanish(db, app, jobs_app, factories, clock, policy,
                                                                   wl_clinic, offer_settings):
    from app.jobs.notifications import render
    from app.models import Notification

    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    user = factories.user("patient")
    user.locale = "es"
    db.commit()
    wait(db, clock, user.patient, wl_clinic)
    cancel(db, clock, appointment)
    [row] = db.query(Notification).filter_by(template="waitlist_offer").all()
    message = render(db, row)
    assert "se liberó un horario que esperaba" in message.text and "/w/" in message.text
    assert "diciembre" in message.text


def test_a_patient_who_lost_the_slot_is_offered_it_again_when_it_frees_again(
        app, db, factories, clock, policy, wl_clinic, offer_settings, monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(app.config, "SETTINGS", replace(offer_settings, WAITLIST_OFFER_FANOUT=2))
    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    first = wait(db, clock, factories.patient(), wl_clinic)
    second = wait(db, clock, factories.patient(), wl_clinic)
    cancel(db, clock, appointment)
    waitlist.claim(db, token_of(db, offers_of(db, first)[0]), now=clock.now(), hold_policy=policy)
    db.commit()
    with pytest.raises(waitlist.OfferGone) as gone:
        waitlist.claim(db, token_of(db, offers_of(db, second)[0]), now=clock.now(), hold_policy=policy)
    assert gone.value.kind == "taken"
    db.commit()                                                     # the withdrawal is kept
    assert [o.status for o in offers_of(db, second)] == ["withdrawn"]

    clock.advance(policy.ttl + timedelta(seconds=1))                 # the winner never paid
    booking.expire_due_holds(db, now=clock.now())
    db.commit()
    assert [o.status for o in offers_of(db, second)] == ["withdrawn", "offered"]
    assert [o.status for o in offers_of(db, first)] == ["lapsed"]
