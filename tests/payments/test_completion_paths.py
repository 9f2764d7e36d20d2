"""The browser's return, the webhook and the poll: each alone, all at once, and two tabs."""
from rq import SimpleWorker
from sqlalchemy import select

from app.jobs import redis_connection
from app.jobs.payments import poll_payment, process_stripe_event
from app.services import payments
from tests.helpers.concurrency import run_together
from tests.helpers.payments import (SUCCESS, Appointment, StripeEvent, assert_captured_once, checkout_page, complete,
                                    count_action, fresh, sign_in, start)
from tests.helpers.web import IsolatedClient, login


def _attempt_of(db, appointment):
    db.expire_all()
    return payments.current_attempt(db, fresh(db, Appointment, appointment.id))


def _assert_done_once(db, stripe_admin, held, attempt):
    appointment = fresh(db, Appointment, held.id)
    assert appointment.status == "confirmed" and appointment.telehealth_room
    assert_captured_once(db, stripe_admin, attempt.id)
    assert count_action(db, held.id, "booking.confirmed") == 1
    assert count_action(db, held.id, "payment.succeeded") == 1


def test_browser_return_alone(app, db, client, held, clock, browser_pay, stripe_admin):
    sign_in(client, held.patient.user)
    response, secret, csrf = checkout_page(client, held.id)
    assert response.status_code == 200
    attempt = _attempt_of(db, held)
    assert secret == attempt.client_secret and attempt.status == "requires_payment_method"
    browser_pay.pay(attempt, SUCCESS)
    answer = complete(client, held.id, csrf)
    assert answer.status_code == 200
    assert answer.json["state"] == "confirmed"
    assert answer.json["redirect"] == f"/checkout/{held.id}/done"
    _assert_done_once(db, stripe_admin, held, attempt)
    done = client.get(f"/checkout/{held.id}/done")
    assert done.status_code == 200
    assert f"/visits/{held.id}/join" in done.get_data(as_text=True)
    # Reloading the page or completing again finds the work done.
    assert complete(client, held.id, csrf).json["state"] == "confirmed"
    assert client.get(f"/checkout/{held.id}").status_code == 302
    _assert_done_once(db, stripe_admin, held, attempt)


def test_webhook_alone_through_a_real_worker(app, db, held, clock, browser_pay, stripe_admin, sandbox,
                                             live_server, queue):
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, SUCCESS)
    assert sandbox.wait_for_webhooks(10)
    assert fresh(db, Appointment, held.id).status == "held"       # nothing happens until the job runs
    stored = list(db.scalars(select(StripeEvent)))
    assert "payment_intent.amount_capturable_updated" in {e.type for e in stored}
    assert all(e.processed_at is None for e in stored)

    SimpleWorker([queue], connection=redis_connection(app)).work(burst=True)
    _assert_done_once(db, stripe_admin, held, attempt)
    db.expire_all()
    assert all(e.processed_at is not None for e in db.scalars(select(StripeEvent)))
    assert {row.actor_type for row in _rows(db, held.id, "booking.confirmed")} == {"webhook"}


def _rows(db, appointment_id, action):
    from tests.helpers.payments import audit_rows

    return audit_rows(db, appointment_id, action)


def test_poll_alone(app, db, held, clock, browser_pay, stripe_admin, queue):
    def scheduled():
        return [queue.fetch_job(i).func_name for i in queue.scheduled_job_registry.get_job_ids()]

    attempt = start(db, held, clock)
    assert scheduled() == ["app.jobs.payments.poll_payment"]      # polling starts with the intent
    assert poll_payment(attempt.id) == "pending"                   # nothing paid yet: polls again
    assert scheduled() == ["app.jobs.payments.poll_payment"] * 2  # the next one, POLL_INTERVAL later
    browser_pay.pay(attempt, SUCCESS)
    assert poll_payment(attempt.id) == "confirmed"
    _assert_done_once(db, stripe_admin, held, attempt)
    assert poll_payment(attempt.id) == "final"


def test_all_three_paths_at_once(app, db, client, held, clock, browser_pay, stripe_admin, sandbox, live_server,
                                 queue):
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sign_in(client, held.patient.user)
    _, _, csrf = checkout_page(client, held.id)
    attempt = _attempt_of(db, held)
    browser_pay.pay(attempt, SUCCESS)
    assert sandbox.wait_for_webhooks(10)
    events = list(db.scalars(select(StripeEvent.id)))
    assert events
    held_id, attempt_id = held.id, attempt.id        # the threads never touch this session's objects
    results = run_together(lambda: complete(client, held_id, csrf),
                           lambda: poll_payment(attempt_id),
                           *[(lambda e=e: process_stripe_event(e)) for e in events])
    assert results[0].status_code == 200 and results[0].json["state"] == "confirmed"
    assert results[1] in ("confirmed", "final")
    _assert_done_once(db, stripe_admin, held, attempt)


def test_two_browser_tabs(app, db, held, clock, browser_pay, stripe_admin):
    app.test_client_class = IsolatedClient
    tabs = [app.test_client(), app.test_client()]
    for tab in tabs:
        assert login(tab, held.patient.user.email).status_code == 303
    held_id = held.id
    pages = run_together(*[(lambda t=tab: checkout_page(t, held_id)) for tab in tabs])
    assert [p[0].status_code for p in pages] == [200, 200]
    assert pages[0][1] == pages[1][1], "both tabs confirm the same PaymentIntent"
    attempt = _attempt_of(db, held)
    assert attempt.number == 1 and pages[0][1] == attempt.client_secret
    customer = fresh(db, Appointment, held.id).patient.stripe_customer_id
    assert len(stripe_admin.intents_of(customer)) == 1
    assert count_action(db, held.id, "payment.attempted") == 1

    browser_pay.pay(attempt, SUCCESS)
    answers = run_together(*[(lambda t=tab, p=page: complete(t, held_id, p[2])) for tab, page in
                              zip(tabs, pages)])
    assert [a.json["state"] for a in answers] == ["confirmed", "confirmed"]
    _assert_done_once(db, stripe_admin, held, attempt)
