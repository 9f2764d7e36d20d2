"""Issue 11, "Messages lost or sent twice": a send interrupted after its claim, a mail server slower
than our timeout, and retries that ignored their backoff and piled up jobs during an outage.

Jobs are run here by hand, as a worker would (the queue is this run's, emptied around each test);
jobs in the scheduler's registry are run only once the test says their time has come."""
from datetime import timedelta

from app.jobs.notifications import render, schedule_send, send_notification, sweep_notifications
from app.models import Notification
from app.services import notifications
from tests.helpers.messages import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, PUBLIC_BASE_URL

SEND = "app.jobs.notifications.send_notification"


def twilio_settings(configure, fake, **more):
    return configure(TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_FROM_NUMBER=FROM_NUMBER,
                     TWILIO_API_BASE=fake.base_url, PUBLIC_BASE_URL=PUBLIC_BASE_URL, **more)


def smtp_settings(configure, fake, **more):
    return configure(SMTP_HOST="127.0.0.1", SMTP_PORT=fake.port, SMTP_STARTTLS=False,
                     SMTP_FROM="Riverside Clinic <no-reply@clinic.example>", PUBLIC_BASE_URL=PUBLIC_BASE_URL, **more)


def queue_code(db, clock, user, key="phone_code:issue11"):
    row = notifications.queue(db, dedupe_key=key, template="phone_code", user=user, scheduled_for=clock.now(),
                              address=notifications.Address("sms", user.phone), context={"code": "424242"})
    db.commit()
    return row.id


def queue_email(db, clock, user, key="password_reset:issue11"):
    row = notifications.queue(db, dedupe_key=key, template="password_reset", user=user, scheduled_for=clock.now(),
                              address=notifications.Address("email", user.email),
                              context={"link": f"{PUBLIC_BASE_URL}/password/reset/abc"})
    db.commit()
    return row.id


def jobs_for(queue, notification_id, *, scheduled=True):
    """The send jobs waiting for this row: in the queue and (unless told not to) the scheduler's registry."""
    ids = list(queue.get_job_ids())
    if scheduled:
        ids += list(queue.scheduled_job_registry.get_job_ids())
    jobs = [queue.fetch_job(job_id) for job_id in ids]
    return [job for job in jobs if job is not None and job.func_name == SEND and job.args[:1] == (notification_id,)]


def run_jobs(queue, notification_id, *, scheduled=True) -> list[str]:
    """Run (and take away) this row's jobs, as a worker would; scheduled ones only when their time came."""
    outcomes = []
    for job in jobs_for(queue, notification_id, scheduled=scheduled):
        queue.remove(job)
        queue.scheduled_job_registry.remove(job)
        job.delete()
        outcomes.append(job.func(*job.args, **job.kwargs))
    return outcomes


def row_of(db, notification_id) -> Notification:
    db.expire_all()
    return db.get(Notification, notification_id)


def sent(outcomes) -> list[str]:
    return [o for o in outcomes if o in ("sent", "delivered")]


# -- 1. a claim is a lease --------------------------------------------------------------------------------

def test_a_send_interrupted_after_its_claim_is_taken_back_when_the_lease_expires_and_sent_once(
        db, clock, factories, clinic, jobs_app, configure, fake_twilio, queue):
    settings = twilio_settings(configure, fake_twilio)
    notification_id = queue_code(db, clock, factories.user("patient", phone="+15555550142"))
    for job in jobs_for(queue, notification_id):
        job.delete()                     # the job that ran and died with its process
    # The process claimed the row and committed, then died before sending or recording anything.
    assert notifications.claim(db, notification_id, now=clock.now())
    db.commit()

    clock.advance(settings.SEND_LEASE - timedelta(seconds=1))
    for _ in range(3):
        sweep_notifications()            # still within the lease: the sender may be at work
    assert row_of(db, notification_id).status == "sending"
    assert jobs_for(queue, notification_id) == [] and fake_twilio.requests == []

    clock.advance(timedelta(seconds=2))  # the lease ran out
    for _ in range(3):
        sweep_notifications()
    row = row_of(db, notification_id)
    assert (row.status, row.sent_at) == ("queued", None)
    assert "lease" in row.error
    assert len(jobs_for(queue, notification_id)) == 1

    assert sent(run_jobs(queue, notification_id)) == ["sent"]
    for _ in range(3):
        sweep_notifications()
    assert run_jobs(queue, notification_id) == []
    row = row_of(db, notification_id)
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)
    assert len(fake_twilio.requests) == 1


def test_a_lease_that_runs_out_on_the_last_attempt_ends_failed(db, clock, factories, clinic, jobs_app, configure,
                                                               fake_twilio, queue):
    settings = twilio_settings(configure, fake_twilio)
    notification_id = queue_code(db, clock, factories.user("patient", phone="+15555550143"))
    for job in jobs_for(queue, notification_id):
        job.delete()
    db.get(Notification, notification_id).attempts = len(settings.SEND_RETRY_DELAYS)
    db.commit()
    assert notifications.claim(db, notification_id, now=clock.now())         # the last try, then a crash
    db.commit()

    clock.advance(settings.SEND_LEASE + timedelta(seconds=1))
    sweep_notifications()
    row = row_of(db, notification_id)
    assert row.status == "failed" and "lease" in row.error
    assert jobs_for(queue, notification_id) == [] and fake_twilio.requests == []


def test_a_late_result_after_the_lease_was_taken_back_is_kept_and_not_sent_again(
        db, app, clock, factories, clinic, jobs_app, configure, queue):
    """A sender slower than the lease: the sweep took the row back meanwhile, but no one claimed it again;
    the result that comes in is recorded, and the job the sweep queued finds nothing to do."""
    from app.integrations.messaging import SendResult

    settings = configure()
    calls = []

    class SlowSender:
        name = "slow"

        def send(self, message):
            calls.append(message.reference)
            clock.advance(settings.SEND_LEASE + timedelta(seconds=1))
            sweep_notifications()
            return SendResult("slow", "slow-1", "sent")

    app.extensions["senders"]["email"] = SlowSender()
    user = factories.user("patient")
    notification_id = queue_email(db, clock, user)
    assert run_jobs(queue, notification_id) == ["sent"]
    assert run_jobs(queue, notification_id) in ([], ["not-queued"])
    row = row_of(db, notification_id)
    assert (row.status, row.provider_message_id, row.attempts) == ("sent", "slow-1", 1)
    assert len(calls) == 1


# -- 2. a mail server slower than the timeout ------------------------------------------------------------

def _everything_that_could_send_it_again(db, clock, queue, settings, notification_id) -> list[str]:
    outcomes = []
    for delay in (*settings.SEND_RETRY_DELAYS, settings.SEND_LEASE.total_seconds()):
        clock.advance(timedelta(seconds=delay + 1))
        sweep_notifications()
        outcomes += run_jobs(queue, notification_id)
    return outcomes


def test_a_mail_server_slower_than_the_command_timeout_gets_the_message_exactly_once(
        db, clock, factories, clinic, jobs_app, configure, fake_smtp, queue):
    settings = smtp_settings(configure, fake_smtp, SMTP_TIMEOUT=0.3, SMTP_DATA_TIMEOUT=5.0)
    fake_smtp.data_reply_delay = 1.0            # it has the message, and answers after a second
    notification_id = queue_email(db, clock, factories.user("patient"))

    outcomes = run_jobs(queue, notification_id)
    outcomes += _everything_that_could_send_it_again(db, clock, queue, settings, notification_id)

    assert sent(outcomes) == ["sent"]
    assert len(fake_smtp.messages) == 1
    row = row_of(db, notification_id)
    assert (row.status, row.attempts, row.error) == ("sent", 1, None)
    assert row.provider_message_id == fake_smtp.messages[0]["message"]["Message-ID"]


def test_a_mail_server_that_never_answers_the_end_of_data_gets_it_once_and_the_row_says_so(
        db, clock, factories, clinic, jobs_app, configure, fake_smtp, queue):
    settings = smtp_settings(configure, fake_smtp, SMTP_TIMEOUT=0.3, SMTP_DATA_TIMEOUT=0.5)
    fake_smtp.data_reply_delay = 1.5            # slower than even the DATA timeout: the outcome is unknown
    notification_id = queue_email(db, clock, factories.user("patient"))

    outcomes = run_jobs(queue, notification_id)
    outcomes += _everything_that_could_send_it_again(db, clock, queue, settings, notification_id)

    assert len(fake_smtp.messages) == 1         # handed over once: never sent again on a guess
    row = row_of(db, notification_id)
    assert row.status == "sent" and row.attempts == 1          # a definite state, and not retried
    assert "unconfirmed" in row.error
    assert row.provider == "smtp"
    assert row.provider_message_id == fake_smtp.messages[0]["message"]["Message-ID"]
    assert outcomes[0] == "sent"


def test_a_timeout_before_the_message_was_handed_over_is_retried_with_the_same_message_id(
        db, clock, factories, clinic, jobs_app, configure, fake_smtp, queue):
    """Nothing was handed over (the server was down): a plain retry after its backoff, and every
    try carries the same Message-ID, derived from the row."""
    settings = smtp_settings(configure, fake_smtp)
    user = factories.user("patient")
    notification_id = queue_email(db, clock, user)
    row = row_of(db, notification_id)
    first = render(db, row)
    again = render(db, row)
    assert first.key and first.key == again.key                   # stable: derived from the row
    fake_smtp.server.shutdown()                                    # the server is down for the first try
    fake_smtp.server.server_close()
    assert run_jobs(queue, notification_id) == ["retry"]
    assert fake_smtp.messages == []
    row = row_of(db, notification_id)
    assert row.scheduled_for == clock.now() + timedelta(seconds=settings.SEND_RETRY_DELAYS[0])


# -- 2b. a Twilio API slower than our timeout ------------------------------------------------------------

def test_an_sms_whose_twilio_call_times_out_is_recorded_unconfirmed_and_never_sent_twice(
        db, app, clock, factories, clinic, jobs_app, configure, fake_twilio, slow_twilio, queue):
    """The request reached Twilio (which created the message) but its answer came after our timeout:
    the outcome is unknown, so the row says so and no retry, sweep or lease sends it again."""
    from app.integrations.twilio_sms import TwilioSms

    settings = twilio_settings(configure, fake_twilio)
    app.extensions["senders"]["sms"] = TwilioSms(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN,
                                                 from_number=FROM_NUMBER, api_base=fake_twilio.base_url,
                                                 timeout=0.3)
    slow_twilio(1.0)
    notification_id = queue_code(db, clock, factories.user("patient", phone="+15555550145"))

    outcomes = run_jobs(queue, notification_id)
    outcomes += _everything_that_could_send_it_again(db, clock, queue, settings, notification_id)

    assert len(fake_twilio.requests) == 1            # Twilio got it once: never sent again on a guess
    row = row_of(db, notification_id)
    assert (row.status, row.attempts, row.provider) == ("sent", 1, "twilio")
    assert "unconfirmed" in row.error
    assert outcomes[0] == "sent"


def test_an_sms_that_never_reached_twilio_is_retried(db, app, clock, factories, clinic, jobs_app, configure,
                                                     fake_twilio, queue):
    """Connection refused: nothing was handed over, so it is a plain failure, retried after its backoff."""
    twilio_settings(configure, fake_twilio)
    fake_twilio.server.shutdown()
    fake_twilio.server.server_close()
    notification_id = queue_code(db, clock, factories.user("patient", phone="+15555550146"))
    assert run_jobs(queue, notification_id) == ["retry"]
    row = row_of(db, notification_id)
    assert (row.status, row.attempts) == ("queued", 1) and "unconfirmed" not in (row.error or "")


# -- 3. retries honour their backoff, and no job is queued twice -----------------------------------------

def test_sweeps_during_a_backoff_queue_at_most_one_job_and_the_row_goes_once_after_it(
        db, clock, factories, clinic, jobs_app, configure, fake_twilio, queue):
    settings = twilio_settings(configure, fake_twilio)
    notification_id = queue_code(db, clock, factories.user("patient", phone="+15555550144"))
    fake_twilio.fail_next(500, 20500, "Internal Server Error")
    assert run_jobs(queue, notification_id) == ["retry"]
    delay = timedelta(seconds=settings.SEND_RETRY_DELAYS[0])
    assert row_of(db, notification_id).scheduled_for == clock.now() + delay

    for step in range(10):               # an outage: the sweeper runs again and again during the backoff
        clock.advance(delay / 20)
        sweep_notifications()
        assert len(jobs_for(queue, notification_id)) <= 1
        assert sent(run_jobs(queue, notification_id, scheduled=False)) == []     # nothing goes early
    assert len(fake_twilio.requests) == 1

    clock.advance(delay)                 # the backoff is over
    for _ in range(10):
        sweep_notifications()
        assert len(jobs_for(queue, notification_id)) == 1
    assert sent(run_jobs(queue, notification_id)) == ["sent"]
    for _ in range(3):
        sweep_notifications()
    assert run_jobs(queue, notification_id) == []
    row = row_of(db, notification_id)
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(fake_twilio.requests) == 2


def test_every_enqueue_of_a_row_uses_one_deterministic_job_id(db, clock, factories, clinic, jobs_app, configure,
                                                              queue):
    configure()
    user = factories.user("patient")
    notification_id = queue_email(db, clock, user)
    [job] = jobs_for(queue, notification_id)
    assert f"notify-{notification_id}-0-" in job.id
    schedule_send(notification_id, clock.now())          # the after-commit hook again (e.g. a replayed commit)
    sweep_notifications()                                # and the sweeper, which finds it due
    assert [j.id for j in jobs_for(queue, notification_id)] == [job.id]
    queue.empty()                                        # Redis lost it: the sweep brings back one
    sweep_notifications()
    sweep_notifications()
    assert [j.id for j in jobs_for(queue, notification_id)] == [job.id]


def test_a_reminder_scheduled_ahead_is_not_queued_again_by_a_repeated_hook(db, clock, factories, clinic, jobs_app,
                                                                           configure, queue):
    configure()
    user = factories.user("patient")
    later = clock.now() + timedelta(hours=2)
    row = notifications.queue(db, dedupe_key="reminder:test", template="password_reset", user=user,
                              scheduled_for=later, address=notifications.Address("email", user.email),
                              context={"link": f"{PUBLIC_BASE_URL}/x"})
    db.commit()
    schedule_send(row.id, later)
    schedule_send(row.id, later)
    assert len(jobs_for(queue, row.id)) == 1
    assert queue.scheduled_job_registry.get_job_ids() == [jobs_for(queue, row.id)[0].id]
    # Its time comes and the scheduler has not moved it yet: the sweep hands that same job to the queue.
    [scheduled] = jobs_for(queue, row.id)
    clock.set(later)
    sweep_notifications()
    sweep_notifications()
    assert [j.id for j in jobs_for(queue, row.id)] == [scheduled.id]
    assert [j.id for j in jobs_for(queue, row.id, scheduled=False)] == [scheduled.id]
    assert sent(run_jobs(queue, row.id)) == ["delivered"]


# -- 4. reminders due at once go in batches ------------------------------------------------------------------

def test_reminders_due_at_once_go_in_a_few_batch_jobs_each_row_once(db, clock, factories, clinic, jobs_app,
                                                                    configure, queue):
    configure(SEND_BATCH_SIZE=40)
    due = clock.now() + timedelta(hours=1)
    users = [factories.user("patient") for _ in range(100)]
    for i, user in enumerate(users):
        notifications.queue(db, dedupe_key=f"reminder:batch:{i}", template=notifications.REMINDER, user=user,
                            scheduled_for=due, address=notifications.Address("email", user.email))
    db.commit()
    waiting = [queue.fetch_job(j) for j in queue.scheduled_job_registry.get_job_ids()]
    assert len(waiting) == 1                          # one job for the 100 rows due at that second

    clock.set(due)
    runs = 0
    while True:
        ids = list(queue.get_job_ids()) + list(queue.scheduled_job_registry.get_job_ids())
        if not ids:
            break
        for job_id in ids:
            job = queue.fetch_job(job_id)
            queue.remove(job_id)
            queue.scheduled_job_registry.remove(job_id)
            job.delete()
            job.func(*job.args, **job.kwargs)
            runs += 1
        sweep_notifications()
    assert runs <= 5                                  # 100 rows, 40 a batch (and the sweep's share)
    db.expire_all()
    rows = db.query(Notification).all()
    assert len(rows) == 100 and {(r.status, r.attempts) for r in rows} == {("delivered", 1)}
