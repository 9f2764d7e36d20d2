"""Faults against the whole deployment (tests/faults/conftest.py): each scenario drives patients
over HTTP across both web servers, injects its fault, and ends with the invariant sweep over the
database and Stripe (tests/helpers/invariants.py) and "no 500 seen by the driver"."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from tests.helpers.invariants import assert_invariants, stripe_intents
from tests.helpers.portal_driver import Patient

pytestmark = pytest.mark.faults


# -- steps --------------------------------------------------------------------------------------------

def patient(cluster, seeder, recorder, web: int = 0) -> Patient:
    [email] = seeder.patients(1)
    p = Patient(email, cluster.urls[web], recorder)
    p.login()
    return p


def start_checkout(cluster, seeder, recorder, web: int = 0):
    """A fresh clinic, a signed-in patient holding its slot, and the checkout page open."""
    provider_id, type_id, slot = seeder.clinic()
    p = patient(cluster, seeder, recorder, web)
    appointment_id = p.hold_id(p.hold(provider_id, type_id, slot))
    return p, p.checkout(appointment_id), (provider_id, type_id, slot)


def appointment_status(cluster, appointment_id: int) -> str:
    with psycopg.connect(cluster.pg.url, autocommit=True) as conn:
        return conn.execute("SELECT status FROM appointments WHERE id = %s", (appointment_id,)).fetchone()[0]


def expect(cluster, sandbox, **wanted):
    """A scenario's own ending: appointment id -> (appointment status, Stripe intent status)."""
    def check() -> list[str]:
        problems = []
        intents = stripe_intents(sandbox)
        for _, (appointment_id, intent_id, status, intent_status) in wanted.items():
            got = appointment_status(cluster, appointment_id)
            got_intent = intents.get(intent_id, {}).get("status")
            if (got, got_intent) != (status, intent_status):
                problems.append(f"appointment {appointment_id}: {got}/{got_intent}, "
                                f"expected {status}/{intent_status}")
        return problems
    return check


def settled(cluster, sandbox, fake_mail, recorder, timeout: float = 90.0, **wanted) -> float:
    return assert_invariants(cluster.pg.url, sandbox, smtp=fake_mail, recorder=recorder, timeout=timeout,
                             extra=expect(cluster, sandbox, **wanted))


# -- races ----------------------------------------------------------------------------------------------

def test_200_patients_race_for_one_slot_across_both_web_servers(cluster, seeder, recorder, sandbox, fake_mail):
    recorder.scenario = "race"
    provider_id, type_id, slot = seeder.clinic()
    emails = seeder.patients(200)
    patients = [Patient(email, cluster.urls[i % 2], recorder) for i, email in enumerate(emails)]

    def ready(p):
        p.login()
        return p.hold_form(provider_id, type_id)

    with ThreadPoolExecutor(16) as pool:
        tokens = list(pool.map(ready, patients))
    gate = threading.Barrier(50)

    def race(args):
        p, token = args
        # A fresh connection: the one from sign-in may have sat idle past the servers' keep-alive
        # while 200 patients got ready, and a POST on a connection the server just closed fails in
        # the client (a browser would retry it) before any server could answer.
        p.http.close()
        try:
            gate.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        return p.hold(provider_id, type_id, slot, csrf=token).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(race, zip(patients, tokens)))
    assert statuses.count(303) == 1, sorted(set(statuses))
    assert statuses.count(409) == 199, sorted(set(statuses))
    with psycopg.connect(cluster.pg.url, autocommit=True) as conn:
        holds = conn.execute("SELECT count(*) FROM appointments WHERE provider_id = %s AND status = 'held'",
                             (provider_id,)).fetchone()[0]
    assert holds == 1
    settled(cluster, sandbox, fake_mail, recorder)


def test_two_payments_for_one_released_slot(cluster, seeder, recorder, sandbox, fake_mail):
    """A authorizes, then its hold is released before A's page reports; B holds the slot and pays:
    B books, A's authorization is released (canceled), never captured."""
    recorder.scenario = "released slot"
    a, a_checkout, (provider_id, type_id, slot) = start_checkout(cluster, seeder, recorder, web=0)
    sandbox.webhook_mode(drop=True)                            # no webhook tells the portal, and its poll
    sandbox.inject_faults("error_before", count=10000, path=f"/v1/payment_intents/{a_checkout.intent_id}",
                          method="GET")                        # cannot read the intent yet
    a_checkout.pay(sandbox)                                    # Stripe.js answered; the page did not report
    assert a.release(a_checkout.appointment_id).status_code in (303, 200)
    b = patient(cluster, seeder, recorder, web=1)
    b_id = b.hold_id(b.hold(provider_id, type_id, slot))
    b_checkout = b.checkout(b_id)
    b_checkout.pay(sandbox)
    sandbox.reset_faults()
    with ThreadPoolExecutor(2) as pool:                        # both pages report at once
        answers = list(pool.map(lambda c: c.complete(), [a_checkout, b_checkout]))
    assert all(r.status_code < 500 for r in answers)
    settled(cluster, sandbox, fake_mail, recorder,
            a=(a_checkout.appointment_id, a_checkout.intent_id, "released", "canceled"),
            b=(b_id, b_checkout.intent_id, "confirmed", "succeeded"))


# -- Stripe faults at the call sites -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["error_after", "error_before", "drop_after", "slow"])
def test_stripe_fault_when_the_intent_is_created(cluster, seeder, recorder, sandbox, fake_mail, mode):
    recorder.scenario = f"create {mode}"
    provider_id, type_id, slot = seeder.clinic()
    p = patient(cluster, seeder, recorder)
    appointment_id = p.hold_id(p.hold(provider_id, type_id, slot))
    sandbox.inject_faults(mode, path="/v1/payment_intents", method="POST", delay=3)
    page = p.request("GET", f"/checkout/{appointment_id}")
    assert page.status_code in (200, 503), page.status_code
    sandbox.reset_faults()
    checkout = p.checkout(appointment_id)                      # the patient reloads if it was a 503
    checkout.pay(sandbox)
    assert checkout.complete().status_code < 500
    settled(cluster, sandbox, fake_mail, recorder,
            visit=(appointment_id, checkout.intent_id, "confirmed", "succeeded"))


@pytest.mark.parametrize("mode", ["error_after", "drop_after", "drop_before", "slow"])
def test_stripe_fault_when_the_authorization_is_captured(cluster, seeder, recorder, sandbox, fake_mail, mode):
    recorder.scenario = f"capture {mode}"
    p, checkout, _ = start_checkout(cluster, seeder, recorder)
    checkout.pay(sandbox)
    sandbox.inject_faults(mode, count=3, path=f"/v1/payment_intents/{checkout.intent_id}/capture", delay=3)
    assert checkout.complete().status_code < 500
    settled(cluster, sandbox, fake_mail, recorder,
            visit=(checkout.appointment_id, checkout.intent_id, "confirmed", "succeeded"))


def test_stripe_fault_when_settle_reads_the_intent(cluster, seeder, recorder, sandbox, fake_mail):
    recorder.scenario = "retrieve error"
    p, checkout, _ = start_checkout(cluster, seeder, recorder)
    checkout.pay(sandbox)
    sandbox.inject_faults("error_before", count=3, path=f"/v1/payment_intents/{checkout.intent_id}", method="GET")
    assert checkout.complete().status_code < 500               # "pending": the page keeps asking
    settled(cluster, sandbox, fake_mail, recorder,
            visit=(checkout.appointment_id, checkout.intent_id, "confirmed", "succeeded"))


# -- webhooks ---------------------------------------------------------------------------------------------

def test_webhooks_duplicated_and_shuffled(cluster, seeder, recorder, sandbox, fake_mail):
    """Only webhooks tell the portal (the page never reports): five copies of each, out of order."""
    recorder.scenario = "webhooks x5 shuffled"
    sandbox.webhook_mode(duplicate=5, shuffle=True, shuffle_window=1.0)
    flows = [start_checkout(cluster, seeder, recorder, web=i % 2) for i in range(3)]
    for _, checkout, _ in flows:
        checkout.pay(sandbox)
    sandbox.wait_for_webhooks(timeout=30)
    bad = [d for d in sandbox.webhook_deliveries() if (d.get("status") or 0) >= 500]
    assert not bad, bad[:5]
    settled(cluster, sandbox, fake_mail, recorder, **{
        f"v{i}": (c.appointment_id, c.intent_id, "confirmed", "succeeded") for i, (_, c, _) in enumerate(flows)})


def test_webhooks_dropped_the_poll_and_sweep_finish(cluster, seeder, recorder, sandbox, fake_mail):
    recorder.scenario = "webhooks dropped"
    sandbox.webhook_mode(drop=True)
    p, checkout, _ = start_checkout(cluster, seeder, recorder)
    checkout.pay(sandbox)                                      # the page never reports either
    settled(cluster, sandbox, fake_mail, recorder,
            visit=(checkout.appointment_id, checkout.intent_id, "confirmed", "succeeded"))


def test_webhooks_delayed(cluster, seeder, recorder, sandbox, fake_mail):
    recorder.scenario = "webhooks delayed"
    sandbox.webhook_mode(delay=4)
    p, checkout, _ = start_checkout(cluster, seeder, recorder)
    checkout.pay(sandbox)
    assert checkout.complete().status_code < 500
    sandbox.wait_for_webhooks(timeout=30)
    settled(cluster, sandbox, fake_mail, recorder,
            visit=(checkout.appointment_id, checkout.intent_id, "confirmed", "succeeded"))


# -- processes killed -------------------------------------------------------------------------------------

def test_workers_killed_mid_capture(cluster, seeder, recorder, sandbox, fake_mail):
    """The webhook job settles and captures (the page never reports); Stripe is slow to capture and
    both workers are SIGKILLed while the capture is in flight. Restarted, they finish it once."""
    recorder.scenario = "worker killed"
    p, checkout, _ = start_checkout(cluster, seeder, recorder)
    sandbox.inject_faults("slow", path=f"/v1/payment_intents/{checkout.intent_id}/capture", delay=4)
    checkout.pay(sandbox)
    deadline = time.monotonic() + 20
    while appointment_status(cluster, checkout.appointment_id) != "confirmed" and time.monotonic() < deadline:
        time.sleep(0.1)                                        # settle step 1 committed: capture is next
    time.sleep(1.0)
    cluster.kill_workers()
    cluster.start_workers()
    settled(cluster, sandbox, fake_mail, recorder,
            visit=(checkout.appointment_id, checkout.intent_id, "confirmed", "succeeded"))


def test_web_server_killed_mid_request(cluster, seeder, recorder, sandbox, fake_mail):
    """web1 is SIGKILLed while /complete waits on a slow capture; the patient's browser gets no
    answer; the webhook (to web0), the poll or the sweep finish the payment, once."""
    recorder.scenario = "web killed"
    p, checkout, _ = start_checkout(cluster, seeder, recorder, web=1)
    sandbox.webhook_mode(drop=True)
    checkout.pay(sandbox)
    sandbox.inject_faults("slow", path=f"/v1/payment_intents/{checkout.intent_id}/capture", delay=4)
    outcome = {}

    def report():
        try:
            outcome["status"] = checkout.complete().status_code
        except requests.RequestException as error:
            outcome["error"] = type(error).__name__

    thread = threading.Thread(target=report)
    thread.start()
    time.sleep(1.5)
    cluster.webs[1].kill()
    thread.join(timeout=30)
    assert "error" in outcome or outcome.get("status", 0) < 500, outcome
    cluster.restart_web(1)
    sandbox.reset_faults()
    settled(cluster, sandbox, fake_mail, recorder,
            visit=(checkout.appointment_id, checkout.intent_id, "confirmed", "succeeded"))


# -- Redis and PostgreSQL ----------------------------------------------------------------------------------

def test_redis_flushed_mid_flow_then_restarted(cluster, seeder, recorder, sandbox, fake_mail):
    recorder.scenario = "redis"
    p1, c1, _ = start_checkout(cluster, seeder, recorder)
    sandbox.webhook_mode(drop=True)
    c1.pay(sandbox)
    conn = cluster.redis_client()
    conn.flushall()                                            # queued polls, scheduled jobs, workers' keys
    conn.close()
    p2, c2, _ = start_checkout(cluster, seeder, recorder, web=1)
    c2.pay(sandbox)
    cluster.stop_redis()
    time.sleep(2)
    cluster.start_redis()
    sandbox.reset_faults()
    assert c2.complete().status_code < 500
    settled(cluster, sandbox, fake_mail, recorder, timeout=120,
            one=(c1.appointment_id, c1.intent_id, "confirmed", "succeeded"),
            two=(c2.appointment_id, c2.intent_id, "confirmed", "succeeded"))


def test_postgres_restarted_mid_flow(cluster, seeder, recorder, sandbox, fake_mail):
    """Some requests answer 503 while PostgreSQL is away; none 500; the payments finish afterwards."""
    recorder.scenario = "postgres"
    p1, c1, _ = start_checkout(cluster, seeder, recorder)
    p2, c2, _ = start_checkout(cluster, seeder, recorder, web=1)
    c1.pay(sandbox)
    recorder.allow_503 = True
    cluster.stop_postgres()
    try:
        c2.pay(sandbox)                                        # its webhook arrives while the database is away
        for web in cluster.urls:
            answer = p1.request("GET", f"/checkout/{c1.appointment_id}", base=web)
            assert answer.status_code == 503, answer.status_code
        assert c1.complete().status_code in (202, 503)
        time.sleep(2)
    finally:
        cluster.start_postgres()
    time.sleep(1)
    for c in (c1, c2):
        for _ in range(20):
            answer = c.complete()
            if answer.status_code != 503:
                break
            time.sleep(1)
    settled(cluster, sandbox, fake_mail, recorder, timeout=120,
            one=(c1.appointment_id, c1.intent_id, "confirmed", "succeeded"),
            two=(c2.appointment_id, c2.intent_id, "confirmed", "succeeded"))
    assert not [a for a in recorder.answers if a[3] >= 500 and a[3] != 503]


def _confirmation_sent(cluster, appointment_id: int, *, timeout: float):
    """The appointment's confirmation row once it is sent (by email), waiting at most ``timeout``."""
    deadline = time.monotonic() + timeout
    row = None
    while time.monotonic() < deadline:
        with psycopg.connect(cluster.pg.url) as conn:
            row = conn.execute("SELECT id, channel, status, error FROM notifications WHERE dedupe_key = %s",
                               (f"booking_confirmed:{appointment_id}",)).fetchone()
        if row and row[2] in ("sent", "delivered"):
            return row
        time.sleep(0.5)
    raise AssertionError(f"confirmation of appointment {appointment_id} not sent: {row}")


# -- a slow mail server --------------------------------------------------------------------------------------

def test_slow_mail_server(cluster, seeder, recorder, sandbox, fake_mail):
    """Each email takes 3 s to be acknowledged: payments still finish promptly, and every
    confirmation arrives once."""
    recorder.scenario = "slow mail"
    fake_mail.data_reply_delay = 3.0
    try:
        flows = [start_checkout(cluster, seeder, recorder, web=i % 2) for i in range(3)]
        for _, c, _ in flows:
            c.pay(sandbox)
            started = time.monotonic()
            assert c.complete().status_code == 200
            assert time.monotonic() - started < 10
        settled(cluster, sandbox, fake_mail, recorder, **{
            f"v{i}": (c.appointment_id, c.intent_id, "confirmed", "succeeded") for i, (_, c, _) in enumerate(flows)})
        for _, c, _ in flows:
            row = _confirmation_sent(cluster, c.appointment_id, timeout=60)
            copies = [m for m in fake_mail.messages
                      if str(m["message"]["Message-ID"] or "").startswith(f"<notification.{row[0]}.")]
            assert len(copies) == 1, (row, len(copies))
    finally:
        fake_mail.data_reply_delay = 0.0
