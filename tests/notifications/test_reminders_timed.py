"""Reminders on the real RQ scheduler, timings in seconds, two scheduler-enabled
workers (separate processes), against a private Redis this test may flush."""
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from app.models import Appointment, Notification
from app.services import booking
from app.services.audit import Actor

ROOT = Path(__file__).resolve().parents[2]
OFFSETS = (8, 4)          # "24 h" and "1 h" before the start, in seconds


@pytest.fixture
def private_redis(tmp_path):
    from devtools.embedded import start_redis

    server = start_redis(tmp_path / "redis")
    yield server.url
    server.stop()


@pytest.fixture
def timed_app(app, private_redis, monkeypatch):
    """The test app pointed at the private Redis and second-scale timings, like the workers."""
    from dataclasses import replace

    settings = replace(app.config["SETTINGS"], REDIS_URL=private_redis,
                       REMINDER_OFFSETS=tuple(timedelta(seconds=s) for s in OFFSETS))
    monkeypatch.setitem(app.config, "SETTINGS", settings)
    monkeypatch.setitem(app.config, "REDIS_URL", private_redis)
    old = app.extensions.pop("redis", None)
    yield app
    conn = app.extensions.pop("redis", None)
    if conn is not None:
        conn.close()
    if old is not None:
        app.extensions["redis"] = old


@pytest.fixture
def workers(timed_app, tmp_path):
    settings = timed_app.config["SETTINGS"]
    env = dict(os.environ, APP_ENV="test", DATABASE_URL=timed_app.config["SQLALCHEMY_DATABASE_URI"],
               REDIS_URL=settings.REDIS_URL, REDIS_NAMESPACE=settings.REDIS_NAMESPACE,
               SECRET_KEY=settings.SECRET_KEY, AUDIT_HMAC_KEY=settings.AUDIT_HMAC_KEY,
               INSTANCE_PATH=str(tmp_path), SWEEP_INTERVAL_SECONDS="1",
               REMINDER_OFFSETS_SECONDS=",".join(str(s) for s in OFFSETS),
               STRIPE_SECRET_KEY=settings.STRIPE_SECRET_KEY or "", STRIPE_API_BASE=settings.STRIPE_API_BASE,
               STRIPE_PUBLISHABLE_KEY=settings.STRIPE_PUBLISHABLE_KEY or "",
               STRIPE_WEBHOOK_SECRET=settings.STRIPE_WEBHOOK_SECRET or "")
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT) for log in logs]
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for log in logs:
        log.close()


def confirmed_soon(db, factories, starts_in: float) -> Appointment:
    """A confirmed telehealth visit starting in a few seconds (inserted directly: no slot grid that fine)."""
    visit = factories.appointment_type()
    provider = factories.provider(types=[visit])
    patient = factories.patient()
    start = (datetime.now(timezone.utc) + timedelta(seconds=starts_in)).replace(microsecond=0)
    appointment = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit.id, status="held",
                              starts_at=start, ends_at=start + timedelta(minutes=30), blocked_start=start,
                              blocked_end=start + timedelta(minutes=30),
                              hold_expires_at=start - timedelta(seconds=1), price_cents=0,
                              payment_timing="post_visit", modality="telehealth")
    db.add(appointment)
    db.commit()
    booking.confirm(db, appointment, actor=Actor.system("test"), now=datetime.now(timezone.utc))
    db.commit()                 # booking_confirmed fires after this commit
    return appointment


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def rows(db, appointment_id):
    db.expire_all()
    return {n.template + (f":{n.context.get('offset_seconds')}" if n.template == "reminder" else ""): n
            for n in db.scalars(select(Notification).where(Notification.appointment_id == appointment_id))}


def test_confirmation_at_once_and_reminders_on_time_exactly_once(db, factories, timed_app, workers):
    appointment = confirmed_soon(db, factories, starts_in=14)
    confirmed_at = datetime.now(timezone.utc)
    sent = wait_until(lambda: (r := rows(db, appointment.id)).get("booking_confirmed")
                      and r["booking_confirmed"].status in ("sent", "delivered") and r, 15, "the confirmation")
    assert (sent["booking_confirmed"].sent_at - confirmed_at).total_seconds() < 10
    assert sent["booking_confirmed"].channel == "email"        # with the .ics
    done = wait_until(lambda: (r := rows(db, appointment.id)) and all(
        r.get(f"reminder:{s}") and r[f"reminder:{s}"].status in ("sent", "delivered") for s in OFFSETS) and r,
        60, "both reminders")
    for s in OFFSETS:
        reminder = done[f"reminder:{s}"]
        due = appointment.starts_at - timedelta(seconds=s)
        assert 0 <= (reminder.sent_at - due).total_seconds() < 60
        assert reminder.attempts == 1 and reminder.status in ("sent", "delivered")
        assert "reminder" in reminder.body.lower()
    time.sleep(2)       # both workers and the sweeper had every chance to send twice
    again = rows(db, appointment.id)
    assert all(n.attempts == 1 for n in again.values())


def test_moving_an_appointment_moves_its_reminders(db, factories, timed_app, workers):
    appointment = confirmed_soon(db, factories, starts_in=16)
    wait_until(lambda: {f"reminder:{s}" for s in OFFSETS} <= set(rows(db, appointment.id)), 15,
               "the reminders to be queued")
    db.refresh(appointment)
    old_start = appointment.starts_at
    new_start = old_start + timedelta(seconds=10)
    appointment.starts_at, appointment.ends_at = new_start, new_start + timedelta(minutes=30)
    appointment.blocked_start, appointment.blocked_end = new_start, new_start + timedelta(minutes=30)
    from app.services import signals

    signals.emit(db, signals.BOOKING_RESCHEDULED, appointment)
    db.commit()
    moved = wait_until(lambda: (r := rows(db, appointment.id)) and all(
        r[f"reminder:{s}"].scheduled_for == new_start - timedelta(seconds=s) for s in OFFSETS) and r,
        15, "the reminders to move")
    old_due = old_start - timedelta(seconds=OFFSETS[1])        # the later of the old due times
    assert all(n.sent_at is None for k, n in moved.items() if k.startswith("reminder"))
    done = wait_until(lambda: (r := rows(db, appointment.id)) and all(
        r[f"reminder:{s}"].status in ("sent", "delivered") for s in OFFSETS) and r, 60, "the moved reminders")
    for s in OFFSETS:
        assert done[f"reminder:{s}"].sent_at >= new_start - timedelta(seconds=s)
        assert done[f"reminder:{s}"].sent_at > old_due


def test_redis_flushed_while_workers_run_loses_nothing_and_sends_nothing_twice(db, factories, timed_app, workers,
                                                                              private_redis):
    appointment = confirmed_soon(db, factories, starts_in=16)
    wait_until(lambda: (r := rows(db, appointment.id)).get("booking_confirmed")
               and r["booking_confirmed"].sent_at, 15, "the confirmation")
    client = redis.Redis.from_url(private_redis)
    client.flushall()                   # every scheduled reminder job is gone
    client.close()
    done = wait_until(lambda: (r := rows(db, appointment.id)) and all(
        r.get(f"reminder:{s}") and r[f"reminder:{s}"].status in ("sent", "delivered") for s in OFFSETS) and r,
        60, "the sweeper to restore the reminders")
    for s in OFFSETS:
        assert done[f"reminder:{s}"].attempts == 1
        due = appointment.starts_at - timedelta(seconds=s)
        assert 0 <= (done[f"reminder:{s}"].sent_at - due).total_seconds() < 60
