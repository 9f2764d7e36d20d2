"""Issue 11, row 4: reminders due at once go in batches — a few statements per batch whatever its size,
one SMTP connection per batch — with each row's guarantees kept: one claim, one send, its result
recorded under its lease, a failure retried on its own, a batch out of time giving back what it did
not try. Jobs are run here by hand, as a worker would."""
import socket
from datetime import timedelta

import pytest
from sqlalchemy import event

from app.integrations.messaging import OutgoingMessage, SendOutcomeUnknown, SendResult
from app.integrations.smtp_email import SmtpEmail
from app.jobs import notifications as notification_jobs
from app.jobs.notifications import send_due_batch, sweep_notifications
from app.models import Notification
from app.services import notifications
from tests.helpers.messages import PUBLIC_BASE_URL


def reminders(db, clock, factories, count, *, tag="batch-test"):
    """``count`` reminders due in an hour (their batch job waits in the scheduler's registry, which
    these tests leave alone); then the clock is moved to that hour."""
    due = clock.now() + timedelta(hours=1)
    made = []
    for i in range(count):
        user = factories.user("patient")
        row = notifications.queue(db, dedupe_key=f"reminder:{tag}:{i}", template=notifications.REMINDER,
                                  user=user, scheduled_for=due, address=notifications.Address("email", user.email))
        made.append(row.id)
    db.commit()
    clock.set(due)
    return made


def rows(db, ids):
    db.expire_all()
    return [db.get(Notification, i) for i in ids]


def counting_statements(engine):
    seen = []

    def listener(conn, cursor, statement, params, context, executemany):
        seen.append(statement.split(None, 1)[0].upper())
    event.listen(engine, "before_cursor_execute", listener)
    return seen, lambda: event.remove(engine, "before_cursor_execute", listener)


def smtp_settings(configure, fake, **more):
    return configure(SMTP_HOST="127.0.0.1", SMTP_PORT=fake.port, SMTP_STARTTLS=False,
                     SMTP_FROM="Riverside Clinic <no-reply@clinic.example>", PUBLIC_BASE_URL=PUBLIC_BASE_URL, **more)


def count_connections(fake) -> list:
    """The fake SMTP server's sessions, one entry each."""
    sessions = []
    handler = fake.server.RequestHandlerClass

    class Counted(handler):
        def handle(self):
            sessions.append(self.client_address)
            super().handle()

    fake.server.RequestHandlerClass = Counted
    return sessions


def test_a_batch_takes_the_same_few_statements_for_10_rows_as_for_60(db, clock, factories, clinic, jobs_app,
                                                                     configure, queue):
    configure(SEND_BATCH_SIZE=100)
    from app.extensions import db as sqla

    counts = []
    for size in (10, 60):
        ids = reminders(db, clock, factories, size, tag=f"size-{size}")
        seen, stop = counting_statements(sqla.engine)
        try:
            assert send_due_batch("test", 0) == size
        finally:
            stop()
        assert {(r.status, r.attempts) for r in rows(db, ids)} == {("delivered", 1)}
        counts.append(len(seen))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 8, counts       # take, claim, read the clinic, lock the leases, record: not per row


def test_a_batch_of_emails_goes_over_one_smtp_connection_each_message_once(db, clock, factories, clinic, jobs_app,
                                                                           configure, fake_smtp, queue):
    smtp_settings(configure, fake_smtp)
    sessions = count_connections(fake_smtp)
    ids = reminders(db, clock, factories, 25)

    assert send_due_batch("test", 0) == 25

    assert len(sessions) == 1
    assert len(fake_smtp.messages) == 25
    got = [m["message"]["Message-ID"] for m in fake_smtp.messages]
    assert len(set(got)) == 25
    for row in rows(db, ids):
        assert (row.status, row.attempts, row.provider, row.error) == ("sent", 1, "smtp", None)
        assert row.provider_message_id in got
        assert row.provider_message_id.startswith(f"<notification.{row.id}.")


def test_one_refused_recipient_fails_alone_and_the_rest_of_the_batch_goes(db, clock, factories, clinic, jobs_app,
                                                                          configure, fake_smtp, queue):
    smtp_settings(configure, fake_smtp)
    ids = reminders(db, clock, factories, 5)
    refused = db.get(Notification, ids[2])
    refused.recipient = "nobody@clinic.example"          # the fake server refuses it: 550
    db.commit()

    send_due_batch("test", 0)

    states = {row.id: (row.status, row.attempts) for row in rows(db, ids)}
    assert states.pop(ids[2]) == ("failed", 1)
    assert set(states.values()) == {("sent", 1)}
    assert len(fake_smtp.messages) == 4


def test_a_failed_send_in_a_batch_is_retried_after_its_backoff_alone(db, app, clock, factories, clinic, jobs_app,
                                                                     configure, queue):
    settings = configure()
    calls = []

    class Flaky:
        name = "flaky"

        def send(self, message):
            calls.append(message.reference)
            if len(calls) == 2:
                from app.integrations.messaging import SendError
                raise SendError("try later")
            return SendResult("flaky", f"id-{len(calls)}", "sent")

    app.extensions["senders"]["email"] = Flaky()
    ids = reminders(db, clock, factories, 3)
    send_due_batch("test", 0)
    failed = rows(db, ids)[1]
    assert (failed.status, failed.attempts, failed.sent_at) == ("queued", 1, None)
    assert failed.scheduled_for == clock.now() + timedelta(seconds=settings.SEND_RETRY_DELAYS[0])
    assert [r.status for r in rows(db, ids)] == ["sent", "queued", "sent"]

    assert send_due_batch("test", 1) == 0                # nothing due during the backoff
    clock.advance(timedelta(seconds=settings.SEND_RETRY_DELAYS[0] + 1))
    sweep_notifications()
    for job_id in list(queue.get_job_ids()):
        job = queue.fetch_job(job_id)
        queue.remove(job_id)
        job.func(*job.args, **job.kwargs)
    assert [(r.status, r.attempts) for r in rows(db, ids)] == [("sent", 1), ("sent", 2), ("sent", 1)]
    assert len(calls) == 4


def test_a_row_that_cannot_be_rendered_is_a_failed_try_and_not_taken_by_every_batch(db, clock, factories, clinic,
                                                                                    jobs_app, configure, queue):
    settings = configure()
    ids = reminders(db, clock, factories, 3)
    db.get(Notification, ids[0]).template = "no_such_template"
    db.commit()

    assert send_due_batch("test", 0) == 3

    broken, *others = rows(db, ids)
    assert (broken.status, broken.attempts, broken.error) == ("queued", 1, "the message could not be rendered")
    assert broken.scheduled_for == clock.now() + timedelta(seconds=settings.SEND_RETRY_DELAYS[0])
    assert {(r.status, r.attempts) for r in others} == {("delivered", 1)}
    assert send_due_batch("test", 1) == 0                # not due again before its backoff


def test_a_batch_out_of_time_gives_back_what_it_did_not_try_and_queues_the_next(
        db, clock, factories, clinic, jobs_app, configure, queue, monkeypatch):
    configure()
    ids = reminders(db, clock, factories, 4)
    monkeypatch.setattr(notification_jobs, "SEND_DEADLINE", -1.0)     # out of time before the first send

    assert send_due_batch("test", 0) == 4

    for row in rows(db, ids):                        # given back as they were: due, unclaimed, no try counted
        assert (row.status, row.sent_at, row.attempts) == ("queued", None, 0)
    [job] = [queue.fetch_job(j) for j in queue.get_job_ids()]
    assert job.id.endswith("notify-batch-test-1")
    monkeypatch.undo()
    queue.remove(job.id)
    assert job.func(*job.args, **job.kwargs) == 4
    assert {(r.status, r.attempts) for r in rows(db, ids)} == {("delivered", 1)}


def test_a_full_batch_queues_the_next_one_first(db, clock, factories, clinic, jobs_app, configure, queue):
    configure(SEND_BATCH_SIZE=10)
    ids = reminders(db, clock, factories, 25)
    ran = [send_due_batch("test", 0)]
    while queue.get_job_ids():
        job = queue.fetch_job(queue.get_job_ids()[0])
        queue.remove(job.id)
        job.delete()
        ran.append(job.func(*job.args, **job.kwargs))
    assert ran == [10, 10, 5]
    assert {(r.status, r.attempts) for r in rows(db, ids)} == {("delivered", 1)}


def test_a_batch_interrupted_after_its_claim_is_sent_again_only_after_the_lease(db, app, clock, factories, clinic,
                                                                                jobs_app, configure, queue):
    """The process dies mid-batch (here: the sender blows up the whole job): the claimed rows wait out
    their lease, then go once more — the same Message-ID marks a second copy as the same email."""
    settings = configure()
    sent = []

    class Dies:
        name = "dies"

        def send(self, message):
            raise SystemExit("the worker was killed")

    class Works:
        name = "works"

        def send(self, message):
            sent.append(message.key)
            return SendResult("works", message.key, "sent")

    app.extensions["senders"]["email"] = Dies()
    ids = reminders(db, clock, factories, 3)
    keys = [notification_jobs.message_key(r) for r in rows(db, ids)]
    with pytest.raises(SystemExit):
        send_due_batch("test", 0)
    assert {(r.status, r.attempts) for r in rows(db, ids)} == {("sending", 1)}

    app.extensions["senders"]["email"] = Works()
    clock.advance(settings.SEND_LEASE - timedelta(seconds=1))
    sweep_notifications()
    assert send_due_batch("test", 1) == 0 and sent == []    # within the lease: nothing goes
    clock.advance(timedelta(seconds=2))
    sweep_notifications()
    queue.empty()
    send_due_batch("test", 2)
    assert sorted(sent) == sorted(keys)
    assert {(r.status, r.attempts) for r in rows(db, ids)} == {("sent", 2)}


def test_an_unknown_outcome_in_a_batch_is_recorded_unconfirmed_and_not_sent_again(db, app, clock, factories, clinic,
                                                                                  jobs_app, configure, queue):
    settings = configure()
    calls = []

    class Silent:
        name = "silent"

        def send(self, message):
            calls.append(message.reference)
            raise SendOutcomeUnknown("no reply after the message was handed over")

    app.extensions["senders"]["email"] = Silent()
    ids = reminders(db, clock, factories, 2)
    send_due_batch("test", 0)
    for delay in (*settings.SEND_RETRY_DELAYS, settings.SEND_LEASE.total_seconds()):
        clock.advance(timedelta(seconds=delay + 1))
        sweep_notifications()
        send_due_batch("test", 9)
    assert len(calls) == 2
    for row in rows(db, ids):
        assert (row.status, row.attempts, row.provider) == ("sent", 1, "silent")
        assert "handed over" in row.error


# -- the SMTP connection a batch keeps -----------------------------------------------------------------------

def message(i):
    return OutgoingMessage(channel="email", to=f"patient{i}@example.com", text="Your visit is tomorrow.",
                           subject="Reminder", key=f"notification.{i}.abc")


def test_a_kept_smtp_connection_the_server_closed_is_replaced_and_the_message_sent_once(fake_smtp):
    sender = SmtpEmail(host="127.0.0.1", port=fake_smtp.port, from_addr="Clinic <no-reply@clinic.example>",
                       starttls=False)
    sessions = count_connections(fake_smtp)
    connection = sender.open()
    try:
        connection.send(message(1))
        connection.smtp.sock.shutdown(socket.SHUT_RDWR)     # the server dropped the idle session meanwhile
        result = connection.send(message(2))
    finally:
        connection.close()
    assert len(sessions) == 2
    assert [m["message"]["Message-ID"] for m in fake_smtp.messages] == [
        "<notification.1.abc@clinic.example>", "<notification.2.abc@clinic.example>"]
    assert result.provider_message_id == "<notification.2.abc@clinic.example>"


def test_a_kept_smtp_connection_that_times_out_after_the_data_is_unknown_and_the_next_message_gets_a_new_one(
        fake_smtp):
    sender = SmtpEmail(host="127.0.0.1", port=fake_smtp.port, from_addr="Clinic <no-reply@clinic.example>",
                       starttls=False, timeout=0.3, data_timeout=0.3)
    sessions = count_connections(fake_smtp)
    connection = sender.open()
    try:
        fake_smtp.data_reply_delay = 1.0
        with pytest.raises(SendOutcomeUnknown):
            connection.send(message(1))
        fake_smtp.data_reply_delay = 0.0
        connection.send(message(2))
    finally:
        connection.close()
    assert len(sessions) == 2
    assert len(fake_smtp.messages) == 2                 # each handed over once; nothing resent on a guess
