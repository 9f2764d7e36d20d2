"""send_notification through the real Twilio and SMTP adapters: the row is the truth."""
from datetime import timedelta

from app.jobs import get_queue
from app.jobs.notifications import send_notification
from app.models import Notification
from app.services import notifications
from tests.helpers.messages import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, PUBLIC_BASE_URL


def twilio_settings(configure, fake):
    return configure(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_FROM_NUMBER=FROM_NUMBER,
                     TWILIO_API_BASE=fake.base_url, PUBLIC_BASE_URL=PUBLIC_BASE_URL)


def queue_code(db, clock, user, key="phone_code:test"):
    row = notifications.queue(db, dedupe_key=key, template="phone_code", user=user, scheduled_for=clock.now(),
                              address=notifications.Address("sms", user.phone), context={"code": "424242"})
    db.commit()
    return row.id


def test_sms_is_sent_through_twilio_once(db, clock, factories, clinic, jobs_app, configure, fake_twilio):
    twilio_settings(configure, fake_twilio)
    user = factories.user("patient", phone="+15555550199")
    notification_id = queue_code(db, clock, user)

    assert send_notification(notification_id) == "sent"
    assert send_notification(notification_id) == "not-queued"      # a second run is a no-op

    assert len(fake_twilio.requests) == 1
    form = fake_twilio.requests[0]["form"]
    assert form["To"] == "+15555550199"
    assert form["StatusCallback"] == f"{PUBLIC_BASE_URL}/twilio/status"
    assert "424242" in form["Body"] and "Riverside Clinic" in form["Body"]
    row = db.get(Notification, notification_id)
    assert (row.status, row.provider, row.attempts) == ("sent", "twilio", 1)
    assert row.provider_message_id.startswith("SM")
    # The log keeps what was sent, except the code itself: it is a secret.
    assert row.body == form["Body"].replace("424242", "••••••")
    assert "code" not in row.context
    assert row.sent_at == clock.now() and row.error is None


def test_a_run_that_lost_the_claim_sends_nothing(db, clock, factories, clinic, jobs_app, configure, fake_twilio):
    twilio_settings(configure, fake_twilio)
    notification_id = queue_code(db, clock, factories.user("patient"))
    assert notifications.claim(db, notification_id, now=clock.now())     # another worker got there first
    db.commit()

    assert send_notification(notification_id) == "not-queued"
    assert fake_twilio.requests == []


def test_email_is_sent_over_smtp(db, clock, factories, clinic, jobs_app, configure, fake_smtp):
    configure(SMTP_HOST="127.0.0.1", SMTP_PORT=fake_smtp.port, SMTP_STARTTLS=False,
              SMTP_FROM="Riverside Clinic <no-reply@clinic.example>")
    user = factories.user("patient")
    row = notifications.queue(db, dedupe_key="password_reset:x", template="password_reset", user=user,
                              scheduled_for=clock.now(), address=notifications.Address("email", user.email),
                              context={"link": f"{PUBLIC_BASE_URL}/password/reset/abc"})
    db.commit()

    assert send_notification(row.id) == "sent"
    assert send_notification(row.id) == "not-queued"

    assert len(fake_smtp.messages) == 1
    mail = fake_smtp.messages[0]["message"]
    assert fake_smtp.messages[0]["to"] == [user.email]
    assert mail["Subject"] == "Reset your Riverside Clinic password"
    assert f"{PUBLIC_BASE_URL}/password/reset/abc" in mail.get_body(preferencelist=("plain",)).get_content()
    db.refresh(row)
    assert (row.status, row.provider, row.provider_message_id) == ("sent", "smtp", mail["Message-ID"])
    assert row.subject == "Reset your Riverside Clinic password"
    assert f"{PUBLIC_BASE_URL}/password/reset/abc" in row.body


def test_permanent_failure_ends_failed_at_once(db, clock, factories, clinic, jobs_app, configure, fake_twilio):
    twilio_settings(configure, fake_twilio)
    notification_id = queue_code(db, clock, factories.user("patient"))
    fake_twilio.fail_next(400, 21211, "The 'To' number is not a valid phone number.")

    assert send_notification(notification_id) == "failed"
    row = db.get(Notification, notification_id)
    assert row.status == "failed" and "21211" in row.error and row.attempts == 1


def test_transient_failure_retries_then_fails_with_the_reason(db, app, clock, factories, clinic, jobs_app,
                                                              configure, fake_twilio):
    settings = twilio_settings(configure, fake_twilio)
    notification_id = queue_code(db, clock, factories.user("patient"))
    registry = get_queue().scheduled_job_registry
    for job_id in registry.get_job_ids():
        registry.remove(job_id)
    attempts = len(settings.SEND_RETRY_DELAYS) + 1
    for _ in range(attempts):
        fake_twilio.fail_next(500, 20500, "Internal Server Error")

    outcomes = []
    for attempt in range(1, attempts + 1):
        outcomes.append(send_notification(notification_id))
        row = db.get(Notification, notification_id)
        db.refresh(row)
        assert row.attempts == attempt
        assert "20500" in row.error
        if outcomes[-1] == "retry":          # due again only after its backoff
            delay = timedelta(seconds=settings.SEND_RETRY_DELAYS[attempt - 1])
            assert row.scheduled_for == clock.now() + delay
            assert send_notification(notification_id) == "not-due"
            clock.advance(delay)
    assert outcomes == ["retry"] * (attempts - 1) + ["failed"]
    assert row.status == "failed" and row.sent_at is not None
    assert len(fake_twilio.requests) == attempts
    # Each retry was handed to RQ's scheduler, for this row.
    scheduled = [get_queue().fetch_job(job_id) for job_id in registry.get_job_ids()]
    assert [job.args for job in scheduled] == [(notification_id,)] * (attempts - 1)
    assert all(job.func_name == "app.jobs.notifications.send_notification" for job in scheduled)


def test_transient_failure_then_success(db, clock, factories, clinic, jobs_app, configure, fake_twilio):
    twilio_settings(configure, fake_twilio)
    notification_id = queue_code(db, clock, factories.user("patient"))
    fake_twilio.fail_next(500, 20500, "Internal Server Error")

    assert send_notification(notification_id) == "retry"
    clock.advance(timedelta(seconds=10))
    assert send_notification(notification_id) == "sent"
    row = db.get(Notification, notification_id)
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)
