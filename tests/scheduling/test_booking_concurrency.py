"""Races for one slot, from separate processes, decided by PostgreSQL."""
import multiprocessing
from datetime import datetime, timedelta, timezone

from sqlalchemy import event

from app.services import booking, schedule

UTC = timezone.utc
MON_10_NY = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


def _attempt(app, patient_id, provider_id, type_id, starts_at, now, policy, barrier, results):
    """One competitor, in its own forked process with its own connections."""
    from app.extensions import db
    from app.models import Patient
    from app.services.audit import Actor

    try:
        with app.app_context():
            db.engine.dispose(close=False)       # never share the parent's connections
            patient = db.session.get(Patient, patient_id)
            barrier.wait(timeout=60)             # everyone starts together
            try:
                booking.take_hold(db.session, now=now, patient=patient, provider_id=provider_id,
                                  type_id=type_id, starts_at=starts_at, policy=policy,
                                  actor=Actor("user", patient.user_id, "patient"))
                db.session.commit()
                results.put("held")
            except booking.SlotTaken:
                db.session.rollback()
                results.put("taken")
            finally:
                db.session.remove()
                db.engine.dispose()
    except Exception as error:   # reported to the parent, which fails the test
        results.put(f"error: {error!r}")


def test_fifty_processes_racing_for_one_slot_get_exactly_one_hold(app, db, factories, clock, policy):
    from app.models import Appointment

    visit = factories.appointment_type(duration_minutes=30)
    long_visit = factories.appointment_type(duration_minutes=60, slot_interval_minutes=30)
    provider = factories.provider(types=[visit, long_visit])
    patients = [factories.patient() for _ in range(50)]
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(50), ctx.Queue()
    # Half want 10:00-10:30, half 9:30-10:30 (another duration, overlapping): one winner in all.
    choices = [(visit.id, MON_10_NY) if i % 2 else (long_visit.id, MON_10_NY - timedelta(minutes=30))
               for i in range(50)]
    procs = [ctx.Process(target=_attempt, args=(app, p.id, provider.id, type_id, starts_at, clock.now(),
                                                policy, barrier, results))
             for p, (type_id, starts_at) in zip(patients, choices)]
    db.close()
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert sorted(set(outcomes)) == ["held", "taken"], outcomes
    assert outcomes.count("held") == 1 and outcomes.count("taken") == 49
    assert db.query(Appointment).filter_by(status="held").count() == 1


def test_availability_issues_the_same_number_of_statements_for_10_and_50_providers(app, db, factories, clock):
    visit = factories.appointment_type()
    visit_id = visit.id
    spec = factories.specialty()
    ids = [factories.provider(types=[visit], specialty=spec).id for _ in range(50)]
    engine = db.get_bind()

    def count_for(n):
        db.expunge_all()
        statements = []

        def listener(conn, cursor, statement, params, context, executemany):
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", listener)
        try:
            found = db.scalars(schedule.provider_query(provider_ids=ids[:n])).all()
            loaded = schedule.load_schedules(db, found, now=clock.now(), window_start=clock.now(),
                                             window_end=clock.now() + timedelta(days=30))
            assert len(loaded) == n
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        return len(statements)

    assert count_for(10) == count_for(50)
    db.expunge_all()
    # And the search page's service call, end to end:
    counts = []
    for n in (10, 50):
        spec_n = factories.specialty()
        spec_id = spec_n.id
        for _ in range(n):
            factories.provider(types=[visit], specialty=spec_n)
        db.expunge_all()
        visit = db.get(type(visit), visit_id)
        statements = []
        listener = lambda *a: statements.append(a[2])  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            results = schedule.search(db, now=clock.now(), appointment_type=visit, specialty_id=spec_id)
        finally:
            event.remove(engine, "before_cursor_execute", listener)
        assert len(results) == n and all(r.slots for r in results)
        counts.append(len(statements))
    assert counts[0] == counts[1]
