"""Crash points of the post-visit money paths: for every step that talks to Stripe (or needs the
queue), the process dies right after it, or the queue is lost, and the database alone finishes the
work, once.

A crash is ``Crash`` (a BaseException): nothing after it runs, not even an ``except Exception``
clean-up; the job's session goes away with its transaction (as when the process is killed). The
queue is lost with ``queue.empty()``. Recovery is the periodic sweep (``app.jobs.periodic.sweep``:
the payment, card-setup and visit-charge steps in their production order) and, where Stripe would
send one, the webhook (Stripe's own event stored as the endpoint stores it, then its processing job).

What a person would notice is asserted: the case paid once; at Stripe one PaymentIntent, one
successful charge; one receipt (one SMS, one email); for a retry, one confirmation per key; for a
write-off, the open PaymentIntent canceled; for a booking, one confirmation and one consent.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.integrations.stripe_gateway import StripeGateway
from app.jobs import set_app
from app.jobs import visit_charges as jobs
from app.jobs.payments import process_stripe_event
from app.jobs.periodic import sweep
from app.models import Appointment, Charge, PaymentAttempt, PaymentConsent, PaymentFailure
from app.services import audit, card_setup, settlement, visit_charges
from app.services.audit import Actor
from tests.helpers.payments import attach_card, consents, sign_in
from tests.postvisit.test_booking_setup import book_with, consent, open_page, setup_of
from tests.postvisit.test_charging import (PLAN_INTERVAL, SCHEDULE, TOTAL, actions, attempts, case_of, keys_for,
                                           messages, signed_visit)

SUCCESS = "4242424242424242"
SOFT = "4000000000000341"          # attaches, then every charge is declined generic_decline (soft)
RECEIPT, FAILED = "visit_payment_received", "visit_payment_failed"


@pytest.fixture(autouse=True)
def crash_settings(app, monkeypatch):
    """The retry schedule in seconds, and every row counts as quiet at once (PAYMENT_QUIET = 0): the
    sweep takes over what a dead process left as soon as it runs."""
    monkeypatch.setitem(app.config, "SETTINGS", replace(
        app.config["SETTINGS"], VISIT_RETRY_SCHEDULE=SCHEDULE, PLAN_INTERVAL=PLAN_INTERVAL,
        PAYMENT_QUIET=timedelta(0)))
    set_app(app)


class Crash(BaseException):
    """The process dies here."""


def dies(monkeypatch, owner, name: str, *, after: bool) -> list:
    """The first call of ``owner.name`` kills the process: before the real call (``after=False``),
    or right after it returned (``after=True``: Stripe did the work, nobody heard the answer).
    Later calls (the recovery) are the real thing. Returns the list of calls that died."""
    real = getattr(owner, name)
    died: list = []

    def dying(*args, **kwargs):
        if died:
            return real(*args, **kwargs)
        died.append(name)
        if after:
            real(*args, **kwargs)
        raise Crash(f"killed {'after' if after else 'before'} {name}")

    monkeypatch.setattr(owner, name, dying)
    return died


def run_until_killed(work, *args, **kwargs):
    with pytest.raises(Crash):
        work(*args, **kwargs)


def webhook(db, stripe_admin, object_id: str, kind: str) -> str:
    """Stripe's ``kind`` event for ``object_id`` reaches the endpoint (stored), and its processing
    job runs. Returns what processing said."""
    events = [e.to_dict() for e in stripe_admin.client.v1.events.list(params={"limit": 100}).auto_paging_iter()]
    found = [e for e in events if e["type"] == kind and e["data"]["object"]["id"] == object_id]
    assert found, f"Stripe sent no {kind} for {object_id}"
    db.rollback()
    assert settlement.record_event(db, found[0]) is True
    db.commit()
    return process_stripe_event(found[0]["id"])


def succeeded_charges(stripe_admin, customer: str) -> list:
    return [c for c in stripe_admin.client.v1.charges.list(params={"customer": customer, "limit": 100})
            .auto_paging_iter() if c.status == "succeeded"]


def assert_paid_once(db, stripe_admin, visit, *, recovered: bool = False) -> PaymentAttempt:
    """The case is paid; Stripe holds one PaymentIntent, succeeded, and one successful charge for the
    total; our rows count the money once; the patient got one receipt (one SMS, one email)."""
    case = case_of(db, visit)
    assert (case.status, case.recovered) == ("paid", recovered)
    [paid] = [a for a in attempts(db, visit) if a.status == "succeeded"]
    assert paid.amount_captured_cents == TOTAL
    assert db.get(Charge, visit.charge_id).amount_captured_cents == TOTAL
    assert [(i.id, i.status) for i in stripe_admin.intents_of(visit.customer)] == [
        (paid.stripe_payment_intent_id, "succeeded")]                            # one PaymentIntent in all
    [charge] = succeeded_charges(stripe_admin, visit.customer)
    assert (charge.amount, charge.payment_intent) == (TOTAL, paid.stripe_payment_intent_id)
    assert actions(db, visit, "payment.captured") == ["payment.captured"]
    assert actions(db, visit, "visit_charge.paid") == ["visit_charge.paid"]
    assert sorted(n.channel for n in messages(db, visit, RECEIPT)) == ["email", "sms"]
    return paid


def assert_nothing_left(db, visit) -> None:
    """A second sweep finds nothing due for the case (the work was finished, once)."""
    db.rollback()
    assert visit.case_id not in visit_charges.due_case_ids(db, now=_now(db), quiet=timedelta(0))
    db.rollback()
    sweep()


def _now(db):
    from flask import current_app

    return current_app.extensions["clock"].now()


# -- 1. the charge job dies after the attempt row commits, before Stripe is called ----------------------

@pytest.mark.parametrize("recovery", ["periodic sweep", "visit step alone"])
def test_killed_before_stripe_is_called_the_sweep_charges_once(db, factories, clock, browser_pay, stripe_admin,
                                                               queue, monkeypatch, recovery):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, SUCCESS)
    queue.empty()
    dies(monkeypatch, StripeGateway, "create_offsession_intent", after=False)
    run_until_killed(jobs.charge_case, visit.case_id)

    assert case_of(db, visit).status == "charging"
    [attempt] = attempts(db, visit)
    assert (attempt.status, attempt.stripe_payment_intent_id) == ("creating", None)     # the uuid, stored first
    assert stripe_admin.intents_of(visit.customer) == []

    if recovery == "periodic sweep":
        # The payment step gives the attempt up (Stripe never heard of it); the visit step charges anew.
        sweep()
    else:
        # The visit step alone resumes the same attempt (its stored uuid, the same :create key).
        assert jobs.sweep_visit_charges() == {"visit_cases": 1}
    paid = assert_paid_once(db, stripe_admin, visit)
    assert keys_for(stripe_admin, paid.stripe_payment_intent_id) == ["create"]
    assert_nothing_left(db, visit)
    assert_paid_once(db, stripe_admin, visit)


# -- 2. dies right after Stripe created and confirmed the intent, before its id is stored -------------

@pytest.mark.parametrize("recovery", ["periodic sweep", "visit step alone"])
def test_killed_after_stripe_charged_before_the_id_is_stored_the_sweep_finds_the_intent(
        db, factories, clock, browser_pay, stripe_admin, queue, monkeypatch, recovery):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, SUCCESS)
    queue.empty()
    dies(monkeypatch, StripeGateway, "create_offsession_intent", after=True)
    run_until_killed(jobs.charge_case, visit.case_id)

    [attempt] = attempts(db, visit)
    assert (attempt.status, attempt.stripe_payment_intent_id) == ("creating", None)     # we never heard
    [made] = stripe_admin.intents_of(visit.customer)
    assert (made.status, made.metadata["attempt_uuid"]) == ("succeeded", str(attempt.uuid))  # the money moved

    if recovery == "periodic sweep":
        sweep()                   # the payment step finds the intent by its attempt_uuid and adopts it
        assert actions(db, visit, "payment.reconciled") == ["payment.reconciled"]
    else:
        assert jobs.sweep_visit_charges() == {"visit_cases": 1}   # the same :create key: Stripe replays
    paid = assert_paid_once(db, stripe_admin, visit)
    assert (paid.id, paid.stripe_payment_intent_id) == (attempt.id, made.id)
    assert keys_for(stripe_admin, made.id) == ["create"]          # one confirmation at Stripe
    assert_nothing_left(db, visit)
    assert_paid_once(db, stripe_admin, visit)


def test_killed_after_a_declined_create_the_sweep_records_one_failure(db, factories, clock, browser_pay,
                                                                      stripe_admin, queue, monkeypatch):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, SOFT)
    queue.empty()
    dies(monkeypatch, StripeGateway, "create_offsession_intent", after=True)
    run_until_killed(jobs.charge_case, visit.case_id)

    sweep()
    case = case_of(db, visit)
    assert (case.status, case.failure_kind, case.retries_done) == ("recovering", "soft", 0)
    assert case.next_retry_at == clock.now() + SCHEDULE[0]
    [attempt] = attempts(db, visit)
    assert [i.id for i in stripe_admin.intents_of(visit.customer)] == [attempt.stripe_payment_intent_id]
    assert len(db.scalars(select(PaymentFailure).where(PaymentFailure.attempt_id == attempt.id)).all()) == 1
    assert actions(db, visit, "visit_charge.failed") == ["visit_charge.failed"]
    assert sorted(n.channel for n in messages(db, visit, FAILED)) == ["email", "sms"]     # one link
    sweep()
    assert len(messages(db, visit, FAILED)) == 2 and case_of(db, visit).status == "recovering"


# -- 3. dies after the intent id is stored, before settle / after_settle -------------------------------

@pytest.mark.parametrize("order", ["webhook then sweep", "sweep then webhook"])
def test_killed_before_settle_the_sweep_and_the_webhook_make_one_paid_case(
        db, factories, clock, browser_pay, stripe_admin, queue, monkeypatch, order):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, SUCCESS)
    queue.empty()
    dies(monkeypatch, visit_charges, "_settle", after=False)
    run_until_killed(jobs.charge_case, visit.case_id)

    [attempt] = attempts(db, visit)
    assert attempt.stripe_payment_intent_id and attempt.captured_at is None
    assert case_of(db, visit).status == "charging" and messages(db, visit, RECEIPT) == []

    if order == "webhook then sweep":
        assert webhook(db, stripe_admin, attempt.stripe_payment_intent_id, "payment_intent.succeeded") == "confirmed"
        assert_paid_once(db, stripe_admin, visit)
        sweep()
    else:
        sweep()
        assert_paid_once(db, stripe_admin, visit)
        assert webhook(db, stripe_admin, attempt.stripe_payment_intent_id, "payment_intent.succeeded") == "confirmed"
    assert_paid_once(db, stripe_admin, visit)
    assert_nothing_left(db, visit)


def test_killed_after_settle_committed_before_the_case_moved_the_sweep_pays_the_case_once(
        db, factories, clock, browser_pay, stripe_admin, queue, monkeypatch):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, SUCCESS)
    queue.empty()
    dies(monkeypatch, visit_charges, "after_settle", after=False)
    run_until_killed(jobs.charge_case, visit.case_id)

    [attempt] = attempts(db, visit)
    assert (attempt.status, attempt.amount_captured_cents) == ("succeeded", TOTAL)       # the money, recorded
    assert case_of(db, visit).status == "charging" and messages(db, visit, RECEIPT) == []

    sweep()
    assert_paid_once(db, stripe_admin, visit)
    assert webhook(db, stripe_admin, attempt.stripe_payment_intent_id, "payment_intent.succeeded") == "confirmed"
    assert_paid_once(db, stripe_admin, visit)
    assert_nothing_left(db, visit)


# -- 4. the queue is lost after signing ---------------------------------------------------------------

def test_the_charge_job_lost_after_signing_the_sweep_charges_the_pending_case(db, factories, clock, browser_pay,
                                                                              stripe_admin, queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, SUCCESS)
    assert any(job.func_name.endswith("charge_case") for job in queue.jobs)     # asked for after the commit
    queue.empty()                                                              # ...and Redis lost it
    assert case_of(db, visit).status == "pending"

    result = sweep()
    assert result["visit_cases"] == 1
    paid = assert_paid_once(db, stripe_admin, visit)
    assert paid.number == 1 and len(attempts(db, visit)) == 1
    assert_nothing_left(db, visit)
    assert_paid_once(db, stripe_admin, visit)


# -- 5. a soft decline's retry: dies after the case committed charging, retries_done = n ---------------

def _declined_once(db, factories, clock, browser_pay, stripe_admin, queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, SOFT)
    assert jobs.charge_case(visit.case_id) == "declined"
    queue.empty()
    clock.advance(SCHEDULE[0])                            # retry 1 is due
    return visit


def test_killed_before_a_retry_reaches_stripe_the_resume_confirms_with_the_same_key(
        db, factories, clock, browser_pay, stripe_admin, queue, monkeypatch):
    visit = _declined_once(db, factories, clock, browser_pay, stripe_admin, queue)
    first = clock.now() - SCHEDULE[0]
    dies(monkeypatch, StripeGateway, "confirm_offsession", after=False)
    run_until_killed(jobs.case_due, visit.case_id)

    case = case_of(db, visit)
    assert (case.status, case.retries_done) == ("charging", 1)
    [attempt] = attempts(db, visit)
    assert keys_for(stripe_admin, attempt.stripe_payment_intent_id) == ["create"]         # never sent

    sweep()
    case = case_of(db, visit)
    assert (case.status, case.retries_done, case.failure_kind) == ("recovering", 1, "soft")
    assert case.next_retry_at == first + SCHEDULE[1]
    assert keys_for(stripe_admin, attempt.stripe_payment_intent_id) == ["create", "confirm#1"]
    assert actions(db, visit, "visit_charge.retried") == ["visit_charge.retried"]
    assert actions(db, visit, "visit_charge.failed") == ["visit_charge.failed"] * 2
    assert len(messages(db, visit, FAILED)) == 4                      # one link per failure, SMS + email
    assert_nothing_left(db, visit)
    assert keys_for(stripe_admin, attempt.stripe_payment_intent_id) == ["create", "confirm#1"]


def test_killed_after_a_retry_was_confirmed_the_resume_replays_the_key_and_pays_once(
        db, factories, clock, browser_pay, stripe_admin, queue, monkeypatch):
    visit = _declined_once(db, factories, clock, browser_pay, stripe_admin, queue)
    # The patient gave the clinic a working card for the booking; retry 1 charges it.
    db.get(Appointment, visit.appointment_id).payment_method_id = attach_card(
        browser_pay, stripe_admin, visit.customer, SUCCESS)
    db.commit()
    dies(monkeypatch, StripeGateway, "confirm_offsession", after=True)
    run_until_killed(jobs.case_due, visit.case_id)

    [attempt] = attempts(db, visit)
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "succeeded"   # charged at Stripe
    assert case_of(db, visit).status == "charging" and attempt.status == "requires_payment_method"

    sweep()
    assert_paid_once(db, stripe_admin, visit, recovered=True)
    # The resume re-sent confirm#1: Stripe replayed its answer, it did not confirm twice.
    assert keys_for(stripe_admin, attempt.stripe_payment_intent_id) == ["create", "confirm#1"]
    assert actions(db, visit, "visit_charge.retried") == ["visit_charge.retried"]
    assert_nothing_left(db, visit)
    assert_paid_once(db, stripe_admin, visit, recovered=True)


# -- 6. the retry job and the escalation job are lost -----------------------------------------------------

def test_lost_retry_and_escalation_jobs_are_run_by_the_sweep(db, factories, clock, browser_pay, stripe_admin,
                                                             queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, SOFT)
    first = clock.now()
    assert jobs.charge_case(visit.case_id) == "declined"
    queue.empty()                                          # the retry job is lost
    assert sweep().get("visit_cases", 0) == 0              # not due yet: nothing charged early
    [attempt] = attempts(db, visit)
    assert keys_for(stripe_admin, attempt.stripe_payment_intent_id) == ["create"]

    for n, offset in enumerate(SCHEDULE, start=1):
        clock.set(first + offset)
        queue.empty()                                      # each retry's job lost in turn
        assert sweep()["visit_cases"] == 1
        case = case_of(db, visit)
        assert (case.status, case.retries_done) == ("recovering", n)
        assert keys_for(stripe_admin, attempt.stripe_payment_intent_id) == ["create"] + [
            f"confirm#{i}" for i in range(1, n + 1)]
    # The last retry failed at escalate_at: its escalation job is lost too.
    queue.empty()
    assert case_of(db, visit).next_retry_at is None
    sweep()
    case = case_of(db, visit)
    assert case.status == "collections"
    assert actions(db, visit, "visit_charge.escalated") == ["visit_charge.escalated"]
    assert actions(db, visit, "visit_charge.retried") == ["visit_charge.retried"] * 3
    assert [i.id for i in stripe_admin.intents_of(visit.customer)] == [attempt.stripe_payment_intent_id]
    assert len(messages(db, visit, FAILED)) == 8
    assert_nothing_left(db, visit)
    assert case_of(db, visit).status == "collections"
    assert actions(db, visit, "visit_charge.escalated") == ["visit_charge.escalated"]


# -- 7. a write-off commits, the process dies before the open intent is canceled ---------------------------

def _written_off(db, factories, clock, visit):
    billing = factories.user("billing")
    visit_charges.write_off(db, case_of(db, visit), reason="Hardship", approver=billing, actor=Actor.of(billing),
                            now=clock.now())
    db.commit()


def test_written_off_then_killed_before_the_cancel_the_sweep_cancels_the_intent(
        db, factories, clock, browser_pay, stripe_admin, queue):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, SOFT)
    assert jobs.charge_case(visit.case_id) == "declined"
    _written_off(db, factories, clock, visit)
    queue.empty()                                           # the cancel job asked for after the commit: lost
    [attempt] = attempts(db, visit)
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "requires_payment_method"

    sweep()
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "canceled"
    [attempt] = attempts(db, visit)
    assert attempt.status == "canceled"
    assert case_of(db, visit).status == "written_off"
    assert actions(db, visit, "payment.canceled") == ["payment.canceled"]
    assert_nothing_left(db, visit)
    assert actions(db, visit, "payment.canceled") == ["payment.canceled"]


def test_killed_after_stripe_canceled_the_sweep_records_the_cancel(db, factories, clock, browser_pay, stripe_admin,
                                                                   queue, monkeypatch):
    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, SOFT)
    assert jobs.charge_case(visit.case_id) == "declined"
    _written_off(db, factories, clock, visit)
    queue.empty()
    dies(monkeypatch, StripeGateway, "cancel", after=True)
    run_until_killed(jobs.case_due, visit.case_id)
    [attempt] = attempts(db, visit)
    assert attempt.status == "requires_payment_method"
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "canceled"

    sweep()
    [attempt] = attempts(db, visit)
    assert attempt.status == "canceled"
    assert actions(db, visit, "payment.canceled") == ["payment.canceled"]
    assert case_of(db, visit).status == "written_off"
    assert_nothing_left(db, visit)


# -- 8. card setup: dies after the SetupIntent succeeded at Stripe, before settle_setup --------------------

@pytest.mark.parametrize("recovery", ["webhook", "sweep", "webhook and sweep"])
def test_killed_after_the_card_was_saved_the_booking_is_confirmed_once_with_one_consent(
        app, db, client, post_visit_hold, card_browser, stripe_admin, queue, monkeypatch, recovery):
    hold = post_visit_hold
    sign_in(client, hold.patient.user)
    _, csrf = open_page(client, hold.id)
    assert consent(client, hold.id, csrf).get_json() == {"state": "consented"}
    setup = setup_of(db, hold.id)
    assert card_browser.save(setup, SUCCESS).status == "succeeded"         # Stripe saved the card
    # The page's completion request reached us and died right after reading the SetupIntent.
    dies(monkeypatch, StripeGateway, "retrieve_setup_intent", after=True)
    db.rollback()
    try:
        run_until_killed(card_setup.settle_setup, db, setup.id, source="browser", actor=Actor.system("test"))
    finally:
        db.rollback()                                   # the dead process's transaction (and its locks) goes
    assert fresh_status(db, hold.id) == ("held", None)
    queue.empty()

    if "webhook" in recovery:
        assert webhook(db, stripe_admin, setup.stripe_setup_intent_id, "setup_intent.succeeded") == "confirmed"
    if "sweep" in recovery:
        sweep()
    status, card = fresh_status(db, hold.id)
    assert status == "confirmed" and card == setup_of(db, hold.id).payment_method_id
    [row] = db.scalars(select(PaymentConsent).where(PaymentConsent.appointment_id == hold.id)).all()
    assert (row.card_setup_id, row.payment_method_id) == (setup.id, card)
    done = audit.actions_for(db, appointment_id=hold.id)
    for action in ("card_setup.succeeded", "consent.recorded", "booking.confirmed"):
        assert done.count(action) == 1, (action, done)
    sweep()
    assert len(db.scalars(select(PaymentConsent).where(PaymentConsent.appointment_id == hold.id)).all()) == 1
    assert audit.actions_for(db, appointment_id=hold.id).count("booking.confirmed") == 1


def test_a_card_readd_killed_after_stripe_saved_it_is_finished_by_the_sweep(
        app, db, client, post_visit_hold, card_browser, stripe_admin, queue, monkeypatch):
    """"Card needed": the patient adds a card to the booked visit; Stripe saves it, and the page's
    completion dies. No webhook comes: the sweep (which watches a re-add the patient started for a
    day) sets the visit's card and records the consent, once."""
    hold = post_visit_hold
    _, _, si, _ = book_with(db, client, hold, card_browser)
    _, csrf = open_page(client, hold.id, path=f"/appointments/{hold.id}/card")
    assert consent(client, hold.id, csrf).status_code == 200
    setup = setup_of(db, hold.id)
    new = card_browser.save(setup, "5555555555554444")
    dies(monkeypatch, StripeGateway, "retrieve_setup_intent", after=True)
    db.rollback()
    try:
        run_until_killed(card_setup.settle_setup, db, setup.id, source="browser", actor=Actor.system("test"))
    finally:
        db.rollback()
    assert fresh_status(db, hold.id) == ("confirmed", si.payment_method)       # still the first card
    queue.empty()
    sweep()
    assert fresh_status(db, hold.id) == ("confirmed", new.payment_method)
    assert [c.card_last4 for c in consents(db, hold.id)] == ["4242", "4444"]
    sweep()
    assert len(consents(db, hold.id)) == 2
    assert audit.actions_for(db, appointment_id=hold.id).count("booking.confirmed") == 1


def fresh_status(db, appointment_id):
    db.expire_all()
    appointment = db.get(Appointment, appointment_id)
    return appointment.status, appointment.payment_method_id


# -- a card removed around a crash: Stripe cannot charge it; the case must not stay 'charging' ------------

def test_killed_before_a_retry_then_the_card_removed_the_case_waits_for_the_patient(
        db, factories, clock, browser_pay, stripe_admin, queue, monkeypatch):
    """The retry committed ``charging`` and died; before the sweep, the patient removed the card: there
    is nothing to confirm off-session, so the case must not stay 'charging' (the pay page refuses a
    case being charged): it waits for the patient, whose page takes a new card."""
    from app.services import cards
    from app.services.gateway import gateway

    visit = _declined_once(db, factories, clock, browser_pay, stripe_admin, queue)
    dies(monkeypatch, StripeGateway, "confirm_offsession", after=False)
    run_until_killed(jobs.case_due, visit.case_id)
    assert case_of(db, visit).status == "charging"
    patient = case_of(db, visit).appointment.patient
    cards.remove_card(db, gateway(), patient=patient, payment_method=visit.card, actor=Actor.of(patient.user))
    db.commit()

    sweep()
    case = case_of(db, visit)
    assert (case.status, case.failure_kind, case.next_retry_at) == ("recovering", "no_card", None)
    [attempt] = attempts(db, visit)
    assert keys_for(stripe_admin, attempt.stripe_payment_intent_id) == ["create"]        # nothing sent
    assert len(messages(db, visit, FAILED)) == 4                      # the patient is told: a card is needed
    # The patient's page pays the same PaymentIntent with a new card.
    payable = visit_charges.payable_attempt(db, case, patient=patient, actor=Actor.of(patient.user))
    assert payable.id == attempt.id
    browser_pay.pay(payable, SUCCESS)
    assert settlement.settle(db, payable.id, source="browser", actor=Actor.system("test")).state == "confirmed"
    assert_paid_once(db, stripe_admin, visit, recovered=True)
    assert_nothing_left(db, visit)


def test_card_removal_killed_after_the_detach_the_retry_does_not_leave_the_case_charging(
        db, factories, clock, browser_pay, stripe_admin, queue, monkeypatch):
    """The patient removed the card: Stripe detached it, then the process died before our rows said so
    (the appointment still names the card). The due retry is refused by Stripe; the case must still
    end waiting for the patient, not 'charging' for ever."""
    from app.services import cards
    from app.services.gateway import gateway

    visit = _declined_once(db, factories, clock, browser_pay, stripe_admin, queue)
    dies(monkeypatch, StripeGateway, "detach_card", after=True)
    patient = case_of(db, visit).appointment.patient
    try:
        run_until_killed(cards.remove_card, db, gateway(), patient=patient, payment_method=visit.card,
                         actor=Actor.of(patient.user))
    finally:
        db.rollback()
    assert db.get(Appointment, visit.appointment_id).payment_method_id == visit.card

    sweep()
    case = case_of(db, visit)
    assert case.status == "recovering", case.status
    sweep()
    assert case_of(db, visit).status == "recovering"
    payable = visit_charges.payable_attempt(db, case_of(db, visit), patient=patient, actor=Actor.of(patient.user))
    browser_pay.pay(payable, SUCCESS)
    assert settlement.settle(db, payable.id, source="browser", actor=Actor.system("test")).state == "confirmed"
    assert_paid_once(db, stripe_admin, visit, recovered=True)


def test_card_removal_killed_after_the_detach_the_first_charge_waits_for_the_patient(
        db, factories, clock, browser_pay, stripe_admin, queue, monkeypatch):
    """Same half-finished removal before the visit is charged: Stripe refuses the off-session charge
    outright; the case waits for the patient (the link), it is not retried by every sweep."""
    from app.services import cards
    from app.services.gateway import gateway

    visit = signed_visit(db, factories, clock, browser_pay, stripe_admin, SUCCESS)
    queue.empty()
    dies(monkeypatch, StripeGateway, "detach_card", after=True)
    patient = case_of(db, visit).appointment.patient
    try:
        run_until_killed(cards.remove_card, db, gateway(), patient=patient, payment_method=visit.card,
                         actor=Actor.of(patient.user))
    finally:
        db.rollback()

    assert jobs.charge_case(visit.case_id) == "no_card"
    case = case_of(db, visit)
    assert (case.status, case.failure_kind) == ("recovering", "no_card")
    assert [a.status for a in attempts(db, visit)] == ["canceled"]
    assert sorted(n.channel for n in messages(db, visit, FAILED)) == ["email", "sms"]
    sweep()
    assert case_of(db, visit).status == "recovering" and len(attempts(db, visit)) == 1
    payable = visit_charges.payable_attempt(db, case_of(db, visit), patient=patient, actor=Actor.of(patient.user))
    browser_pay.pay(payable, SUCCESS)
    assert settlement.settle(db, payable.id, source="browser", actor=Actor.system("test")).state == "confirmed"
    assert_paid_once(db, stripe_admin, visit, recovered=True)
