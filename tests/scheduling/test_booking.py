"""Holds, the exclusion constraint, expiry, confirmation, cancel and reschedule."""
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from app.models import Appointment
from app.services import audit, booking, unit_of_work
from app.services.audit import Actor

UTC = timezone.utc
MON_10_NY = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)       # Monday 10:00 New York


@pytest.fixture
def setup(factories):
    visit = factories.appointment_type(buffer_before_minutes=5, buffer_after_minutes=10)
    provider = factories.provider(types=[visit])
    return provider, visit


def hold(db, patient, provider, visit, starts_at, clock, policy):
    appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id,
                                    type_id=visit.id, starts_at=starts_at, policy=policy,
                                    actor=Actor("user", patient.user_id, "patient"))
    db.commit()
    return appointment


def test_hold_blocks_the_slot_and_a_second_hold_is_told_it_was_taken(db, factories, setup, clock, policy):
    provider, visit = setup
    first = hold(db, factories.patient(), provider, visit, MON_10_NY, clock, policy)
    assert first.status == "held"
    assert first.hold_expires_at == clock.now() + policy.ttl
    assert first.blocked_start == MON_10_NY - timedelta(minutes=5)
    with pytest.raises(booking.SlotTaken) as taken:
        hold(db, factories.patient(), provider, visit, MON_10_NY, clock, policy)
    db.rollback()
    assert taken.value.nearest, "nearest free slots are offered"
    assert all(s.starts_at != MON_10_NY for s in taken.value.nearest)
    assert audit.actions_for(db, appointment_id=first.id) == ["slot.selected"]


def test_raw_overlapping_insert_fails_with_exclusion_violation(db, factories, setup, clock, policy, raw_conn):
    provider, visit = setup
    first = hold(db, factories.patient(), provider, visit, MON_10_NY, clock, policy)
    with pytest.raises(psycopg.errors.ExclusionViolation) as violation:
        raw_conn.execute(
            "INSERT INTO appointments (patient_id, provider_id, type_id, status, starts_at, ends_at, "
            "blocked_start, blocked_end, price_cents, payment_timing, modality, hold_extended) "
            "VALUES (%s, %s, %s, 'confirmed', %s, %s, %s, %s, 100, 'post_visit', 'telehealth', false)",
            (first.patient_id, provider.id, visit.id, MON_10_NY + timedelta(minutes=20),
             MON_10_NY + timedelta(minutes=50), MON_10_NY + timedelta(minutes=20), MON_10_NY + timedelta(minutes=50)))
    assert violation.value.sqlstate == "23P01"


def test_overlapping_hold_of_another_duration_is_refused(db, factories, clock, policy):
    short = factories.appointment_type(duration_minutes=30, slot_interval_minutes=15)
    long = factories.appointment_type(duration_minutes=60, slot_interval_minutes=15)
    provider = factories.provider(types=[short, long])
    hold(db, factories.patient(), provider, short, MON_10_NY + timedelta(minutes=30), clock, policy)
    with pytest.raises(booking.SlotTaken):
        hold(db, factories.patient(), provider, long, MON_10_NY, clock, policy)


def test_buffers_keep_neighbours_apart(db, factories, setup, clock, policy):
    provider, visit = setup    # 30 min visits, 5 before, 10 after
    hold(db, factories.patient(), provider, visit, MON_10_NY, clock, policy)
    # 10:30 would start inside the 10-minute after-buffer: never offered, so taken.
    with pytest.raises(booking.SlotTaken):
        hold(db, factories.patient(), provider, visit, MON_10_NY + timedelta(minutes=30), clock, policy)


@pytest.mark.parametrize("starts_at, message", [
    (MON_10_NY - timedelta(days=1), "already passed"),
    (MON_10_NY + timedelta(minutes=7), "not available"),             # off the grid: forged
    (datetime(2026, 12, 12, 15, 0, tzinfo=UTC), "not available"),    # Saturday: no hours
    (MON_10_NY + timedelta(days=60), "not available"),               # past the horizon
])
def test_bad_times_are_refused_and_change_nothing(db, factories, setup, clock, policy, starts_at, message):
    provider, visit = setup
    with pytest.raises(booking.InvalidSlot, match=message):
        hold(db, factories.patient(), provider, visit, starts_at, clock, policy)
    db.rollback()
    assert db.query(Appointment).count() == 0


def test_a_type_the_provider_does_not_offer_is_refused(db, factories, setup, clock, policy):
    provider, _ = setup
    other = factories.appointment_type()
    with pytest.raises(booking.InvalidSlot, match="does not offer"):
        hold(db, factories.patient(), provider, other, MON_10_NY, clock, policy)


def test_new_hold_releases_the_patients_previous_one(db, factories, setup, clock, policy):
    provider, visit = setup
    patient = factories.patient()
    first = hold(db, patient, provider, visit, MON_10_NY, clock, policy)
    second = hold(db, patient, provider, visit, MON_10_NY + timedelta(hours=1), clock, policy)
    db.refresh(first)
    assert (first.status, second.status) == ("released", "held")
    assert audit.actions_for(db, appointment_id=first.id) == ["slot.selected", "booking.released"]


def test_holds_are_rate_limited_per_patient(db, factories, clock, policy):
    from dataclasses import replace

    visit = factories.appointment_type()
    provider = factories.provider(types=[visit])
    patient = factories.patient()
    tight = replace(policy, holds_per_hour=3)
    for i in range(3):
        hold(db, patient, provider, visit, MON_10_NY + timedelta(hours=i), clock, tight)
    with pytest.raises(booking.TooManyHolds):
        hold(db, patient, provider, visit, MON_10_NY + timedelta(hours=4), clock, tight)


def test_expired_hold_frees_the_slot_lazily_and_is_audited(db, factories, setup, clock, policy):
    provider, visit = setup
    first = hold(db, factories.patient(), provider, visit, MON_10_NY, clock, policy)
    clock.advance(policy.ttl + timedelta(seconds=1))
    second = hold(db, factories.patient(), provider, visit, MON_10_NY, clock, policy)
    db.refresh(first)
    assert first.status == "released" and second.status == "held"
    assert audit.actions_for(db, appointment_id=first.id) == ["slot.selected", "booking.released"]


def test_expired_hold_is_released_by_its_job(app, db, factories, setup, clock, policy):
    from app.jobs.booking import expire_hold
    from app.jobs import set_app

    set_app(app)
    provider, visit = setup
    first = hold(db, factories.patient(), provider, visit, MON_10_NY, clock, policy)
    assert expire_hold(first.id) is False        # not yet due: left alone
    clock.advance(policy.ttl)
    assert expire_hold(first.id) is True
    assert expire_hold(first.id) is False        # safe to run twice
    db.expire_all()
    assert db.get(Appointment, first.id).status == "released"
    rows = audit.actions_for(db, appointment_id=first.id)
    assert rows == ["slot.selected", "booking.released"]


def test_hold_is_clamped_before_an_imminent_start(db, factories, clock, policy):
    visit = factories.appointment_type(min_notice_minutes=0, slot_interval_minutes=10)
    provider = factories.provider(types=[visit], hours=[(0, 8, 17)])
    starts = clock.now() + timedelta(minutes=10)      # 8:10 New York: a 10-minute hold would outlive start - 5
    appointment = hold(db, factories.patient(), provider, visit, starts, clock, policy)
    assert appointment.hold_expires_at == starts - policy.release_before_start
    assert appointment.hold_expires_at < clock.now() + policy.ttl


def test_signals_fire_after_commit_only(db, factories, setup, clock, policy):
    provider, visit = setup
    seen = []

    def listener(event):
        seen.append((event.appointment_id, event.status))

    wired = unit_of_work.subscriptions()
    unit_of_work.subscribe({**wired, "slot_selected": (*wired.get("slot_selected", ()), listener)})
    try:
        appointment = booking.take_hold(db, now=clock.now(), patient=factories.patient(),
                                        provider_id=provider.id, type_id=visit.id, starts_at=MON_10_NY,
                                        policy=policy, actor=Actor.system("test"))
        assert seen == []                 # not before the commit
        db.rollback()
        assert seen == []                 # never for a rolled-back hold
        appointment = hold(db, factories.patient(), provider, visit, MON_10_NY, clock, policy)
        assert seen == [(appointment.id, "held")]
    finally:
        unit_of_work.subscribe(wired)


def test_confirm_cancel_and_reschedule(db, factories, setup, clock, policy):
    provider, visit = setup
    patient = factories.patient()
    appointment = hold(db, patient, provider, visit, MON_10_NY + timedelta(days=2), clock, policy)
    booking.confirm(db, appointment, actor=Actor.system("test"), now=clock.now())
    db.commit()
    assert appointment.status == "confirmed" and appointment.telehealth_room
    new_start = MON_10_NY + timedelta(days=3)
    booking.reschedule(db, appointment, actor=Actor("user", patient.user_id, "patient"), now=clock.now(),
                       new_starts_at=new_start)
    db.commit()
    db.refresh(appointment)
    assert appointment.starts_at == new_start and appointment.status == "confirmed"
    rows = db.query(audit.AuditEvent).filter_by(appointment_id=appointment.id,
                                                action="booking.rescheduled").one()
    assert rows.details["old_starts_at"] == (MON_10_NY + timedelta(days=2)).isoformat()
    assert rows.details["new_starts_at"] == new_start.isoformat()
    # The old time is free again.
    other = hold(db, factories.patient(), provider, visit, MON_10_NY + timedelta(days=2), clock, policy)
    assert other.status == "held"
    with pytest.raises(booking.BookingRuleError, match="reason"):
        booking.cancel(db, appointment, actor=Actor.system("test"), now=clock.now(), reason=" ",
                       by_user_id=None)
    booking.cancel(db, appointment, actor=Actor("user", patient.user_id, "patient"), now=clock.now(),
                   reason="feeling better", by_user_id=patient.user_id)
    db.commit()
    assert appointment.status == "canceled" and appointment.cancel_reason == "feeling better"
    assert audit.actions_for(db, appointment_id=appointment.id) == [
        "slot.selected", "booking.confirmed", "booking.rescheduled", "booking.canceled"]


def test_reschedule_onto_a_taken_time_is_refused_and_keeps_the_booking(db, factories, setup, clock, policy):
    provider, visit = setup
    mine = hold(db, factories.patient(), provider, visit, MON_10_NY + timedelta(days=2), clock, policy)
    booking.confirm(db, mine, actor=Actor.system("test"), now=clock.now())
    db.commit()
    hold(db, factories.patient(), provider, visit, MON_10_NY + timedelta(days=3), clock, policy)
    with pytest.raises(booking.SlotTaken):
        booking.reschedule(db, mine, actor=Actor.system("test"), now=clock.now(),
                           new_starts_at=MON_10_NY + timedelta(days=3))
    db.rollback()
    db.refresh(mine)
    assert mine.starts_at == MON_10_NY + timedelta(days=2)


def test_reschedule_inside_the_window_is_refused(db, factories, setup, clock, policy):
    provider, visit = setup
    mine = hold(db, factories.patient(), provider, visit, MON_10_NY + timedelta(hours=3), clock, policy)
    booking.confirm(db, mine, actor=Actor.system("test"), now=clock.now())
    db.commit()
    with pytest.raises(booking.BookingRuleError, match="too late"):
        booking.reschedule(db, mine, actor=Actor.system("test"), now=clock.now(),
                           new_starts_at=MON_10_NY + timedelta(days=3))


def test_late_payment_retakes_a_released_slot_only_if_free(db, factories, setup, clock, policy):
    provider, visit = setup
    first = hold(db, factories.patient(), provider, visit, MON_10_NY, clock, policy)
    booking.release(db, first, actor=Actor.system("test"), now=clock.now(), reason="payment gave up")
    db.commit()
    booking.confirm(db, first, actor=Actor.system("test"), now=clock.now())
    db.commit()
    assert first.status == "confirmed"
    second = hold(db, factories.patient(), provider, visit, MON_10_NY + timedelta(hours=1), clock, policy)
    booking.release(db, second, actor=Actor.system("test"), now=clock.now(), reason="expired")
    db.commit()
    third = hold(db, factories.patient(), provider, visit, MON_10_NY + timedelta(hours=1), clock, policy)
    with pytest.raises(booking.SlotTaken):
        booking.confirm(db, second, actor=Actor.system("test"), now=clock.now())
    db.rollback()
    db.refresh(second)
    assert second.status == "released" and third.status == "held"


def test_visit_states(db, factories, setup, clock, policy):
    provider, visit = setup
    appointment = hold(db, factories.patient(), provider, visit, MON_10_NY, clock, policy)
    booking.confirm(db, appointment, actor=Actor.system("test"), now=clock.now())
    db.commit()
    with pytest.raises(booking.BookingRuleError):
        booking.mark(db, appointment, "no_show", actor=Actor.system("test"), now=clock.now())
    booking.mark(db, appointment, "check_in", actor=Actor.system("test"), now=clock.now())
    booking.mark(db, appointment, "complete", actor=Actor.system("test"), now=clock.now())
    db.commit()
    assert appointment.status == "completed"


def test_every_slot_the_engine_offers_can_actually_be_held(db, factories, clock, policy):
    """Rules with buffers, an exception and existing bookings: each offered start is holdable."""
    from dataclasses import replace
    from datetime import datetime as dt

    from app.models import AvailabilityException
    from app.services import schedule

    visit = factories.appointment_type(duration_minutes=45, buffer_before_minutes=5, buffer_after_minutes=10,
                                       slot_interval_minutes=15, min_notice_minutes=30)
    provider = factories.provider(types=[visit], hours=[(0, 9, 13), (1, 9, 13)])
    db.add(AvailabilityException(provider_id=provider.id, starts_local=dt(2026, 12, 8, 10, 0),
                                 ends_local=dt(2026, 12, 8, 11, 0), reason="other"))
    db.commit()
    booked = hold(db, factories.patient(), provider, visit, MON_10_NY + timedelta(minutes=30), clock, policy)
    booking.confirm(db, booked, actor=Actor.system("test"), now=clock.now())
    db.commit()
    offered = schedule.provider_slots(db, provider=provider, appointment_type=visit, now=clock.now(), days=2)
    assert len(offered) >= 10
    roomy = replace(policy, holds_per_hour=1000)
    patient = factories.patient()
    for slot in offered:
        taken = hold(db, patient, provider, visit, slot.starts_at, clock, roomy)
        assert taken.status == "held"
        booking.release(db, taken, actor=Actor.system("test"), now=clock.now(), reason="next slot")
        db.commit()
