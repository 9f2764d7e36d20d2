"""Hybrid checkout: the deposit is the attached estimate's (not the type's price), authorized then
captured like deposit-to-book, its PaymentIntent made with setup_future_usage=off_session so the card
is saved on the patient's Customer; the balance consent recorded once with the card; 3-D Secure; a
decline back to checkout; a zero deposit saving the card with a SetupIntent; no estimate -> intake
first; two tabs and two paths at once; nothing clinical to Stripe; a cancellation refunded by policy."""
import re

import pytest
import stripe
from markupsafe import escape
from sqlalchemy import func, select

from app.jobs.payments import poll_payment, process_stripe_event
from app.models import Appointment, Charge, Patient, StripeEvent
from app.services import audit, card_setup, hybrid_deposit, payments
from tests.helpers.concurrency import run_together
from tests.helpers.hybrid import agree, agree_to_setup, attempt_of, complete, complete_setup, open_checkout, pay_on_page
from tests.helpers.payments import (SUCCESS, assert_captured_once, consents, count_action, fresh, recording_stripe,
                                    sign_in)
from tests.helpers.web import IsolatedClient, login
from tests.hybrid.conftest import DEPOSIT, PRICE, SHARE

DECLINE = "4000000000000002"
THREE_DS = "4000002500003155"


# -- steps --------------------------------------------------------------------------------------

def assert_booked_with_card_and_consent(db, stripe_admin, hold, clock, *, last4="4242"):
    """Confirmed, the deposit captured once, the card saved on the Customer and kept on the
    appointment (and the patient's default), one hybrid_balance consent with that card."""
    appointment = fresh(db, Appointment, hold.id)
    assert appointment.status == "confirmed"
    attempt = attempt_of(db, hold.id)
    assert_captured_once(db, stripe_admin, attempt.id, amount=DEPOSIT)
    intent = stripe_admin.intent(attempt.stripe_payment_intent_id)
    assert intent.setup_future_usage == "off_session"
    pm = intent.payment_method
    patient = db.get(Patient, hold.patient_id)
    card = stripe_admin.client.v1.payment_methods.retrieve(pm)
    assert card.customer == patient.stripe_customer_id                     # saved on the patient's Customer
    assert appointment.payment_method_id == pm
    assert patient.default_payment_method_id == pm                         # they had none
    [consent] = consents(db, hold.id)
    assert (consent.kind, consent.wording_version, consent.wording) == (
        "hybrid_balance", "hybrid-balance-v1", hybrid_deposit.CONSENT_WORDING)
    assert (consent.payment_method_id, consent.card_last4, consent.card_setup_id) == (pm, last4, None)
    assert consent.accepted_at == clock.now() and consent.accepted_by_id == patient.user_id
    assert count_action(db, hold.id, "consent.recorded") == 1 and count_action(db, hold.id, "consent.accepted") == 1
    assert count_action(db, hold.id, "booking.confirmed") == 1
    return appointment, attempt


# -- the deposit ------------------------------------------------------------------------------------

def test_the_page_shows_the_estimate_the_deposit_and_the_required_consent(db, client, hybrid_hold):
    sign_in(client, hybrid_hold.patient.user)
    review = client.get(f"/book/holds/{hybrid_hold.id}").get_data(as_text=True)
    assert "Your estimated share" in review and "$30.00" in review
    assert "Pay deposit $30.00 now" in review and f'href="/checkout/{hybrid_hold.id}"' in review

    html, _ = open_checkout(client, hybrid_hold.id)
    assert "Pay your deposit" in html
    assert "Your estimated share" in html and "$150.00" in html and "$70.00" in html   # price, insurer
    assert "Deposit now: <strong>$30.00</strong>" in html
    assert "After your insurer answers, we charge the rest to this card or refund the difference." in html
    assert str(escape(hybrid_deposit.CONSENT_WORDING)) in html            # the exact words stored later
    assert re.search(r'<input type="checkbox" id="consent" name="consent" value="1" required', html)
    assert f'data-consent-version="{hybrid_deposit.CONSENT_VERSION}"' in html
    assert "Pay deposit $30.00" in html and "$40.00" not in html         # never the type's price
    assert "Save this card for next time" not in html                     # the card is always kept
    assert 'data-amount="3000"' in html


def test_deposit_is_the_estimates_authorized_then_captured_with_the_card_saved(
        db, client, clock, hybrid_hold, browser_pay, stripe_admin):
    hold = hybrid_hold
    html, csrf, intent, result = pay_on_page(db, client, hold, browser_pay)
    assert intent.status == "requires_capture"
    assert result == {"state": "confirmed", "message": None, "redirect": f"/checkout/{hold.id}/done"}
    attempt = attempt_of(db, hold.id)
    assert (attempt.amount_cents, attempt.save_card) == (DEPOSIT, True)
    charge = db.get(Charge, attempt.charge_id)
    assert (charge.purpose, charge.amount_cents, charge.amount_captured_cents, charge.status) == (
        "deposit", DEPOSIT, DEPOSIT, "captured")
    # What Stripe holds: the deposit, manual capture (authorized first), the card set up for later.
    at_stripe = stripe_admin.intent(attempt.stripe_payment_intent_id)
    assert (at_stripe.amount, at_stripe.capture_method, at_stripe.setup_future_usage) == (
        DEPOSIT, "manual", "off_session")
    assert set(at_stripe.metadata.to_dict()) == {"attempt_uuid", "appointment_id", "charge_id", "patient_id"}
    assert_booked_with_card_and_consent(db, stripe_admin, hold, clock)
    rows = audit.actions_for(db, appointment_id=hold.id)
    assert rows.index("consent.accepted") < rows.index("payment.succeeded") < rows.index("booking.confirmed") \
        < rows.index("consent.recorded") < rows.index("payment.captured")

    done = client.get(f"/checkout/{hold.id}/done").get_data(as_text=True)
    assert "Deposit paid: $30.00" in done and "Your card ending 4242 is saved for this visit." in done
    assert "Your estimated share: $30.00" in done
    assert "After your insurer answers, we charge the rest to this card or refund the difference." in done


def test_the_consent_box_must_be_ticked_and_its_wording_current(db, client, hybrid_hold):
    sign_in(client, hybrid_hold.patient.user)
    _, csrf = open_checkout(client, hybrid_hold.id)
    refused = agree(client, hybrid_hold.id, csrf, ticked=False)
    assert refused.status_code == 422 and refused.get_json()["state"] == "consent_needed"
    assert "tick the box" in refused.get_json()["message"]
    stale = agree(client, hybrid_hold.id, csrf, version="post-visit-v1")
    assert stale.status_code == 409 and "wording" in stale.get_json()["message"]
    assert count_action(db, hybrid_hold.id, "consent.accepted") == 0
    # The box cannot be unticked for "save this card" either: the card is kept for the balance.
    kept = client.post(f"/checkout/{hybrid_hold.id}/save-card", data={"save": "0"}, headers={"X-CSRFToken": csrf})
    assert kept.status_code == 409 and attempt_of(db, hybrid_hold.id).save_card is True


def test_consent_written_once_when_the_webhook_the_poll_and_the_page_race(
        app, db, client, clock, hybrid_hold, browser_pay, stripe_admin, sandbox, live_server, queue):
    hold = hybrid_hold
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sandbox.webhook_mode(duplicate=3, shuffle=True, max_attempts=1)
    sign_in(client, hold.patient.user)
    _, csrf = open_checkout(client, hold.id)
    assert agree(client, hold.id, csrf).status_code == 200
    attempt = attempt_of(db, hold.id)
    browser_pay.pay(attempt, SUCCESS)
    assert sandbox.wait_for_webhooks(15)
    events = list(db.scalars(select(StripeEvent.id)))
    assert events
    hold_id, attempt_id = hold.id, attempt.id
    results = run_together(lambda: complete(client, hold_id, csrf), lambda: poll_payment(attempt_id),
                           *[(lambda e=e: process_stripe_event(e)) for e in events])
    assert results[0].status_code == 200 and results[0].json["state"] == "confirmed"
    assert_booked_with_card_and_consent(db, stripe_admin, hold, clock)
    # Everything again, afterwards: still one consent, one capture.
    for event_id in db.scalars(select(StripeEvent.id)):
        process_stripe_event(event_id)
    assert complete(client, hold.id, csrf).get_json()["state"] == "confirmed"
    assert len(consents(db, hold.id)) == 1 and count_action(db, hold.id, "consent.recorded") == 1


def test_3d_secure_challenge_then_booked_with_the_card_saved(db, client, clock, hybrid_hold, browser_pay,
                                                             stripe_admin):
    hold = hybrid_hold
    _, csrf, intent, result = pay_on_page(db, client, hold, browser_pay, THREE_DS)
    assert intent.status == "requires_action" and result["state"] == "requires_action"
    assert fresh(db, Appointment, hold.id).status == "held" and consents(db, hold.id) == []
    browser_pay.authenticate(attempt_of(db, hold.id), success=True)
    assert complete(client, hold.id, csrf).get_json()["state"] == "confirmed"
    assert_booked_with_card_and_consent(db, stripe_admin, hold, clock, last4="3155")


def test_a_decline_goes_back_to_checkout_and_another_card_books(db, client, clock, hybrid_hold, browser_pay,
                                                                stripe_admin):
    hold = hybrid_hold
    _, csrf, error, result = pay_on_page(db, client, hold, browser_pay, DECLINE)
    assert isinstance(error, stripe.CardError)
    assert result["state"] == "declined" and result["message"] == payments.GENERIC
    appointment = fresh(db, Appointment, hold.id)
    assert appointment.status == "held" and appointment.payment_method_id is None
    assert consents(db, hold.id) == [] and db.get(Patient, hold.patient_id).default_payment_method_id is None
    # Back on checkout: the same payment, the box ticked again (recorded once), another card.
    html, csrf = open_checkout(client, hold.id)
    assert "Pay deposit $30.00" in html
    assert agree(client, hold.id, csrf).status_code == 200
    browser_pay.pay(attempt_of(db, hold.id), SUCCESS)
    assert complete(client, hold.id, csrf).get_json()["state"] == "confirmed"
    assert_booked_with_card_and_consent(db, stripe_admin, hold, clock)
    assert attempt_of(db, hold.id).number == 1 and count_action(db, hold.id, "payment.declined") == 1


def test_a_deposit_confirmed_without_the_consent_step_is_kept_but_no_consent_is_invented(
        db, client, hybrid_hold, browser_pay, stripe_admin):
    hold = hybrid_hold
    sign_in(client, hold.patient.user)
    _, csrf = open_checkout(client, hold.id)
    browser_pay.pay(attempt_of(db, hold.id), SUCCESS)                 # not our page: no box ticked
    assert complete(client, hold.id, csrf).get_json()["state"] == "confirmed"
    assert consents(db, hold.id) == []
    assert count_action(db, hold.id, "consent.missing") == 1
    assert complete(client, hold.id, csrf).get_json()["state"] == "confirmed"
    assert count_action(db, hold.id, "consent.missing") == 1
    assert fresh(db, Appointment, hold.id).payment_method_id                   # the card is still known


def test_one_tap_on_a_saved_card_records_the_consent_with_the_tap(
        db, client, clock, make_hybrid_hold, browser_pay, stripe_admin, factories):
    first = make_hybrid_hold()
    pay_on_page(db, client, first, browser_pay)
    patient = db.get(Patient, first.patient_id)
    card = patient.default_payment_method_id
    second = make_hybrid_hold(patient=patient, starts_at=first.starts_at.replace(hour=16))
    html, csrf = open_checkout(client, second.id)
    assert "Pay with a saved card" in html
    headers = {"X-CSRFToken": csrf, "Accept": "application/json"}
    refused = client.post(f"/checkout/{second.id}/pay-saved", data={"payment_method": card}, headers=headers)
    assert refused.status_code == 422 and refused.get_json()["state"] == "consent_needed"
    paid = client.post(f"/checkout/{second.id}/pay-saved", headers=headers, data={
        "payment_method": card, "consent": "1", "version": hybrid_deposit.CONSENT_VERSION})
    assert paid.get_json()["state"] == "confirmed", paid.get_json()
    appointment = fresh(db, Appointment, second.id)
    assert appointment.status == "confirmed" and appointment.payment_method_id == card
    [consent] = consents(db, second.id)
    assert consent.kind == "hybrid_balance" and consent.payment_method_id == card and consent.card_last4 == "4242"


# -- a zero deposit: the card saved with a SetupIntent --------------------------------------------

def test_a_zero_deposit_saves_the_card_with_a_setup_intent_and_the_consent(
        db, client, clock, make_hybrid_hold, card_browser, stripe_admin):
    hold = make_hybrid_hold(deposit_cents=0)
    sign_in(client, hold.patient.user)
    review = client.get(f"/book/holds/{hold.id}").get_data(as_text=True)
    assert "Continue to save a card" in review and "Deposit now" in review
    html, csrf = open_checkout(client, hold.id)
    assert "Nothing is charged now." in html and "No deposit is due for this visit." in html
    assert str(escape(hybrid_deposit.SETUP_CONSENT_WORDING)) in html
    assert f'data-consent-version="{hybrid_deposit.SETUP_CONSENT_VERSION}"' in html
    stale = agree_to_setup(client, hold.id, csrf, version=card_setup.CONSENT_VERSION)
    assert stale.status_code == 409                                   # the post-visit words are not these
    assert agree_to_setup(client, hold.id, csrf).get_json() == {"state": "consented"}
    setup = card_setup.current_setup(db, fresh(db, Appointment, hold.id))
    si = card_browser.save(setup, SUCCESS)
    assert si.status == "succeeded"
    result = complete_setup(client, hold.id, csrf).get_json()
    assert result["state"] == "confirmed"

    appointment = fresh(db, Appointment, hold.id)
    assert appointment.status == "confirmed" and appointment.payment_method_id == si.payment_method
    assert db.scalar(select(func.count()).select_from(Charge).where(Charge.appointment_id == hold.id)) == 0
    [consent] = consents(db, hold.id)
    assert (consent.kind, consent.wording_version, consent.wording, consent.card_last4) == (
        "hybrid_balance", hybrid_deposit.SETUP_CONSENT_VERSION, hybrid_deposit.SETUP_CONSENT_WORDING, "4242")
    assert db.get(Patient, hold.patient_id).default_payment_method_id == si.payment_method
    assert stripe_admin.client.v1.payment_methods.retrieve(si.payment_method).customer == \
        db.get(Patient, hold.patient_id).stripe_customer_id


# -- no estimate: intake first --------------------------------------------------------------------

def test_a_hybrid_hold_without_an_estimate_cannot_be_paid_and_points_to_intake(db, client, make_hybrid_hold):
    hold = make_hybrid_hold(estimate=False)
    sign_in(client, hold.patient.user)
    html, _ = open_checkout(client, hold.id, status=409)
    assert "tell us about you and your insurance" in html
    assert f'href="/intake/start?type_id={hold.type_id}&amp;provider_id={hold.provider_id}"' in html
    assert "Nothing has been charged." in html
    review = client.get(f"/book/holds/{hold.id}").get_data(as_text=True)
    assert f"/intake/start?type_id={hold.type_id}" in review and "Pay deposit" not in review
    assert db.scalar(select(func.count()).select_from(Charge).where(Charge.appointment_id == hold.id)) == 0
    assert db.get(Patient, hold.patient_id).stripe_customer_id is None       # Stripe never asked
    with pytest.raises(payments.NoEstimate):
        payments.open_attempt(db, appointment=fresh(db, Appointment, hold.id), patient=hold.patient,
                              now=hold.created_at)
    db.rollback()


# -- double submit: two tabs, two presses -----------------------------------------------------------

def test_two_tabs_and_double_presses_make_one_intent_one_capture_one_consent(
        app, db, clock, hybrid_hold, browser_pay, stripe_admin):
    hold = hybrid_hold
    app.test_client_class = IsolatedClient
    tabs = [app.test_client(), app.test_client()]
    for tab in tabs:
        assert login(tab, hold.patient.user.email).status_code == 303
    hold_id = hold.id
    pages = run_together(*[(lambda t=tab: open_checkout(t, hold_id)) for tab in tabs])
    attempt = attempt_of(db, hold.id)
    customer = fresh(db, Appointment, hold.id).patient.stripe_customer_id
    assert len(stripe_admin.intents_of(customer)) == 1 and attempt.number == 1
    agreed = run_together(*[(lambda t=tab, p=page: agree(t, hold_id, p[1])) for tab, page in zip(tabs, pages)])
    assert [a.status_code for a in agreed] == [200, 200]
    assert count_action(db, hold.id, "consent.accepted") == 1
    browser_pay.pay(attempt, SUCCESS)
    answers = run_together(*[(lambda t=tab, p=page: complete(t, hold_id, p[1])) for tab, page in zip(tabs, pages)])
    assert [a.get_json()["state"] for a in answers] == ["confirmed", "confirmed"]
    assert_booked_with_card_and_consent(db, stripe_admin, hold, clock)


# -- nothing clinical leaves for Stripe --------------------------------------------------------------

def test_no_phi_reaches_stripe(app, db, client, make_hybrid_hold, factories, browser_pay):
    patient = factories.user("patient", full_name="Zelda Marchbanks", email="zelda.marchbanks@example.test",
                             phone="+15555550199").patient
    hold = make_hybrid_hold(patient=patient, name="Eczema flare follow-up")
    with recording_stripe(app) as recording:
        pay_on_page(db, client, hold, browser_pay)
        assert fresh(db, Appointment, hold.id).status == "confirmed"
    sent = "\n".join(f"{url}\n{body}" for _, url, body in recording.sent)
    decoded = sent.replace("%5B", "[").replace("%5D", "]").replace("%5b", "[").replace("%5d", "]")
    assert "setup_future_usage=off_session" in decoded
    for word in ("Zelda", "Marchbanks", "example.test", "5555550199", "Eczema", "flare", "insurance", "99213",
                 "estimate", "hybrid", "Follow-up"):
        assert word.lower() not in decoded.lower(), f"{word!r} was sent to Stripe"
    keys = set(re.findall(r"metadata\[(\w+)\]", decoded))
    assert keys == {"attempt_uuid", "appointment_id", "charge_id", "patient_id"}


# -- canceled: the deposit refunded by the cancellation policy --------------------------------------

def _paid(db, client, make_hybrid_hold, browser_pay, **type_fields):
    hold = make_hybrid_hold(**type_fields)
    pay_on_page(db, client, hold, browser_pay)
    assert fresh(db, Appointment, hold.id).status == "confirmed"
    return hold


def _cancel(client, forms, appointment):
    page = f"/appointments/{appointment.id}"
    response = forms.post(f"{page}/cancel", {"reason": "Feeling better"}, page=page)
    assert response.status_code == 303, response.get_data(as_text=True)


def test_canceled_before_the_window_the_deposit_is_refunded_in_full(db, client, forms, make_hybrid_hold,
                                                                     browser_pay, queue, stripe_admin):
    from tests.helpers.refunds import charge_of, refunds_of, run_refund_jobs, stripe_refunds

    hold = _paid(db, client, make_hybrid_hold, browser_pay, cancellation_window_hours=1)
    page = client.get(f"/appointments/{hold.id}").get_data(as_text=True)
    assert "Canceling now refunds your deposit in full." in page
    _cancel(client, forms, hold)
    run_refund_jobs(queue)
    charge = charge_of(db, hold.id)
    [refund] = refunds_of(db, charge.id)
    assert (refund.amount_cents, refund.policy, refund.status) == (DEPOSIT, "cancellation_policy", "succeeded")
    [at_stripe] = stripe_refunds(stripe_admin, attempt_of(db, hold.id).stripe_payment_intent_id)
    assert (at_stripe["amount"], at_stripe["reason"]) == (DEPOSIT, "requested_by_customer")


def test_canceled_late_the_late_cancel_fee_is_kept_from_the_deposit(db, client, forms, make_hybrid_hold,
                                                                     browser_pay, queue):
    from tests.helpers.refunds import charge_of, refunds_of, run_refund_jobs

    hold = _paid(db, client, make_hybrid_hold, browser_pay, cancellation_window_hours=24,
                 late_cancel_policy="fee", late_cancel_fee_cents=1000)
    _cancel(client, forms, hold)
    run_refund_jobs(queue)
    [refund] = refunds_of(db, charge_of(db, hold.id).id)
    assert (refund.amount_cents, refund.policy) == (DEPOSIT - 1000, "cancellation_policy")
    assert "late-cancel fee of $10.00 kept" in refund.clinical_reason


def test_the_share_and_the_price_are_not_confused(db, make_hybrid_hold):
    hold = make_hybrid_hold(deposit_cents=2500)
    assert payments.deposit_due(db, hold) == 2500 and hold.price_cents == PRICE and SHARE == 3000
