"""When PostgreSQL says no: deadlocks and serialization failures are retried at the unit-of-work
edge (a hold, settle's first step); what outlasts the retries, and a database that is away, is a
friendly 503 with Retry-After (JSON for the checkout's fetch calls and the webhook), never a stack
trace, never PHI."""
import json
import time

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from app.models import Appointment
from app.services.retry import retry_transient
from tests.helpers.outages import (FRIENDLY_BUSY, FRIENDLY_OUTAGE, app_on, closed_database_url,
                                   transient_errors)
from tests.helpers.payments import (MON_10_NY, SUCCESS, assert_captured_once, checkout_page, complete,
                                    count_action, fresh, sign_in)
from tests.helpers.web import csrf_from, login

SECRET_NAME = "Zebulon Quackenbush"          # PHI that must never appear in an error answer


# -- deadlocks and serialization failures: retried ---------------------------------------------

@pytest.fixture
def clinic(factories):
    visit = factories.appointment_type(name="Telehealth follow-up")
    provider = factories.provider(types=[visit])
    return {"visit": visit, "provider": provider}


@pytest.fixture
def patient_client(client, factories):
    user = factories.user("patient", full_name=SECRET_NAME)
    assert login(client, user.email).status_code == 303
    client.user = user
    return client


def _hold(client, clinic, **headers):
    provider, visit = clinic["provider"], clinic["visit"]
    page = client.get(f"/book/providers/{provider.id}?type_id={visit.id}").get_data(as_text=True)
    return client.post(f"/book/providers/{provider.id}/holds", headers=headers,
                       data={"type_id": visit.id, "starts_at": MON_10_NY.isoformat(), "csrf_token": csrf_from(page)})


def _holds(db) -> int:
    return db.scalar(select(func.count(Appointment.id)).where(Appointment.status == "held"))


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_hold_that_hits_a_deadlock_once_is_taken_on_the_retry(patient_client, clinic, clock, db, raw_conn,
                                                                 sqlstate):
    with transient_errors(raw_conn, db, on="INSERT", times=1, sqlstate=sqlstate) as calls:
        response = _hold(patient_client, clinic)
        assert calls() == 2                           # refused once, then through
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    assert "/book/holds/" in response.headers["Location"]
    assert _holds(db) == 1
    assert db.scalar(select(func.count()).select_from(Appointment)) == 1   # the failed run left nothing


def test_a_hold_that_deadlocks_every_time_is_a_friendly_503(patient_client, clinic, clock, db, raw_conn):
    with transient_errors(raw_conn, db, on="INSERT", times=1000) as calls:
        response = _hold(patient_client, clinic)
        assert calls() == 3                           # bounded: three tries, then the answer
        body = response.get_data(as_text=True)
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        assert FRIENDLY_BUSY in body
        assert "Traceback" not in body and "injected" not in body and "40P01" not in body
        # htmx (the slot buttons) does not swap a 503: the page reloads and says why.
        tapped = _hold(patient_client, clinic, **{"HX-Request": "true",
                                                  "HX-Current-URL": "http://evil.example/book?x=1"})
        assert tapped.status_code == 503 and tapped.headers["Retry-After"]
        assert tapped.headers["HX-Redirect"] == "/book?x=1"          # our own site only
    assert _holds(db) == 0
    again = patient_client.get("/book")
    assert FRIENDLY_BUSY in again.get_data(as_text=True)            # the flashed message


def test_only_transient_errors_are_retried(db):
    calls = []

    def refused():
        calls.append(1)
        raise sa_exc.IntegrityError("INSERT", {}, Exception("not transient"))

    with pytest.raises(sa_exc.IntegrityError):
        retry_transient(db, refused)
    assert len(calls) == 1
    with pytest.raises(ValueError):
        retry_transient(db, lambda: None, attempts=0)


def _paid(client, held, browser_pay, db):
    from app.services import payments

    sign_in(client, held.patient.user)
    response, _, csrf = checkout_page(client, held.id)
    assert response.status_code == 200
    db.expire_all()
    attempt = payments.current_attempt(db, fresh(db, Appointment, held.id))
    browser_pay.pay(attempt, SUCCESS)
    return attempt, csrf


def test_a_confirm_that_hits_a_deadlock_once_settles_on_the_retry(app, db, client, held, clock, browser_pay,
                                                                  stripe_admin, raw_conn):
    """The issue: a paying patient losing a confirm race got a 500; now settle's first step is run again."""
    attempt, csrf = _paid(client, held, browser_pay, db)
    with transient_errors(raw_conn, db, on="UPDATE", times=1) as calls:
        answer = complete(client, held.id, csrf)
        assert calls() >= 2
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    assert answer.json["state"] == "confirmed"
    assert fresh(db, Appointment, held.id).status == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)
    assert count_action(db, held.id, "booking.confirmed") == 1
    assert count_action(db, held.id, "payment.succeeded") == 1


def test_a_confirm_that_deadlocks_every_time_is_a_json_503_and_the_money_ends_right(
        app, db, client, held, clock, browser_pay, stripe_admin, raw_conn):
    attempt, csrf = _paid(client, held, browser_pay, db)
    with transient_errors(raw_conn, db, on="UPDATE", times=1000):
        answer = complete(client, held.id, csrf)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"].isdigit()
    assert answer.is_json
    assert answer.json["state"] == "pending"        # checkout.js keeps asking: Stripe has the card
    assert answer.json["message"] and "Traceback" not in answer.get_data(as_text=True)
    assert fresh(db, Appointment, held.id).status == "held"        # nothing half-done
    assert count_action(db, held.id, "payment.succeeded") == 0
    # The next ask (the page's, the poll's or the webhook's) finds the work to do and does it once.
    again = complete(client, held.id, csrf)
    assert again.status_code == 200 and again.json["state"] == "confirmed"
    assert_captured_once(db, stripe_admin, attempt.id)
    assert count_action(db, held.id, "booking.confirmed") == 1


# -- the database is away: 503 + Retry-After ---------------------------------------------------

def _assert_friendly_503(response, *, json_body=False):
    body = response.get_data(as_text=True)
    assert response.status_code == 503, body[:500]
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"
    for leak in ("Traceback", "OperationalError", "psycopg", "127.0.0.1", "connection", SECRET_NAME):
        assert leak not in body, leak
    if json_body:
        assert response.is_json
    else:
        assert FRIENDLY_OUTAGE in body and "<html" in body.lower()
    return body


def _signed_stripe_event() -> tuple[bytes, str]:
    from devtools.stripe_sandbox.webhooks import sign

    payload = json.dumps({"id": "evt_outage_1", "object": "event", "type": "payment_intent.succeeded",
                          "created": int(time.time()),
                          "data": {"object": {"id": "pi_1", "object": "payment_intent"}}}).encode()
    return payload, sign(payload, "whsec_outage_test", int(time.time()))


def test_a_database_on_a_closed_port_answers_503_everywhere(service_urls, tmp_path):
    with app_on(closed_database_url(), service_urls["REDIS_URL"], tmp_path) as outage:
        client = outage.test_client()
        _assert_friendly_503(client.get("/checkout/1"))                              # a page
        _assert_friendly_503(client.post("/login", data={"email": "a@example.test", "password": "x"}))
        htmx = client.post("/login", data={"email": "a@example.test", "password": "x"},
                           headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/login"})
        assert htmx.status_code == 503 and htmx.headers["HX-Redirect"] == "/login"
        assert htmx.headers["Retry-After"]

        answer = client.post("/checkout/1/complete", headers={"Accept": "application/json"})
        _assert_friendly_503(answer, json_body=True)
        assert answer.json["state"] == "pending" and answer.json["message"]
        saved = client.post("/checkout/1/pay-saved", data={"payment_method": "pm_1"})
        _assert_friendly_503(saved, json_body=True)
        assert saved.json["state"] == "error"

        payload, signature = _signed_stripe_event()
        hook = client.post("/webhooks/stripe", data=payload,
                           headers={"Stripe-Signature": signature, "Content-Type": "application/json"})
        _assert_friendly_503(hook, json_body=True)          # Stripe retries a non-2xx

        # A signed-in patient's cookie: loading the user is what fails; the page still renders.
        with client.session_transaction() as cookie:
            cookie["_user_id"] = "1"
            cookie["_fresh"] = True
            cookie["sid"] = "a-server-side-session-token"      # app/services/sessions.py
        _assert_friendly_503(client.get("/patient"))
        assert outage.test_client().get("/healthz").status_code == 200              # alive, not ready


def test_a_real_postgresql_outage_and_recovery(service_urls, tmp_path):
    """A private PostgreSQL (never the machine's shared one) goes down under a running app, then back."""
    from flask_migrate import upgrade

    from devtools.embedded import start_postgres

    data_dir = tmp_path / "pg"
    pg = start_postgres(data_dir)
    try:
        url = pg.url
        with app_on(url, service_urls["REDIS_URL"], tmp_path / "instance") as app_:
            with app_.app_context():
                upgrade()
            client = app_.test_client()
            assert client.get("/checkout/1").status_code == 404          # up: no such appointment
            assert client.get("/readyz").status_code == 200

            pg.stop()
            _assert_friendly_503(client.get("/checkout/1"))
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "database" in ready.json["failed"]
            assert client.get("/healthz").status_code == 200

            pg = start_postgres(data_dir)                                # the restart
            assert pg.url == url
            assert client.get("/checkout/1").status_code == 404          # the pool recovers by itself
            assert client.get("/readyz").status_code == 200
    finally:
        pg.stop()

