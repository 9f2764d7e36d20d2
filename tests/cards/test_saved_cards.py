"""Saved cards through the Stripe sandbox: a card saved by a first payment is listed and
pays the next visit in one tap (3-D Secure when the bank asks), a decline lets the patient
pick another card, a removed card is detached in Stripe and gone from the page, and another
patient's card is refused."""
import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import select

from app.services.gateway import gateway
from app.models import Appointment, AuditEvent, Patient, PaymentAttempt
from app.services import audit, booking, cards, payments
from app.services.audit import Actor
from tests.helpers.payments import SUCCESS, count_action, fresh, settle, sign_in, start

UTC = timezone.utc
TUE_10_NY = datetime(2026, 12, 8, 15, 0, tzinfo=UTC)
WED_10_NY = datetime(2026, 12, 9, 15, 0, tzinfo=UTC)


def first_payment_saving(db, held, clock, browser_pay, number=SUCCESS):
    """The patient's first visit: pay with ``number`` and tick "save this card"."""
    attempt = start(db, held, clock)
    payments.set_save_card(db, gateway(), attempt, True)
    db.commit()
    intent = browser_pay.pay(attempt, number)
    if getattr(intent, "status", None) == "requires_action":
        assert settle(db, attempt).state == "requires_action"
        browser_pay.authenticate(attempt, success=True)
    assert settle(db, attempt).state == "confirmed"
    attempt = fresh(db, PaymentAttempt, attempt.id)
    assert cards.remember_default(db, gateway(), attempt, patient=held.patient, actor=Actor.system("test"))
    db.commit()
    return attempt


def hold_another(db, held, clock, policy, starts_at=TUE_10_NY) -> Appointment:
    appointment = booking.take_hold(db, now=clock.now(), patient=held.patient, provider_id=held.provider_id,
                                    type_id=held.type_id, starts_at=starts_at, policy=policy,
                                    actor=Actor("user", held.patient.user_id, "patient"))
    db.commit()
    return appointment


def open_checkout(client, appointment_id):
    response = client.get(f"/checkout/{appointment_id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    return html, re.search(r'data-csrf="([^"]*)"', html).group(1)


def pay_saved(client, appointment_id, pm, csrf):
    return client.post(f"/checkout/{appointment_id}/pay-saved", data={"payment_method": pm},
                       headers={"X-CSRFToken": csrf, "Accept": "application/json"})


def attempt_of(db, appointment) -> PaymentAttempt:
    db.expire_all()
    return payments.current_attempt(db, db.get(Appointment, appointment.id))


def attached(stripe_admin, customer) -> list[str]:
    return [pm.id for pm in stripe_admin.client.v1.customers.payment_methods.list(
        customer, params={"type": "card"}).data]


def test_a_card_saved_by_the_first_payment_is_listed_and_pays_the_next_visit_in_one_tap(
        app, db, client, held, clock, policy, browser_pay, stripe_admin):
    first = first_payment_saving(db, held, clock, browser_pay)
    patient = fresh(db, Patient, held.patient_id)
    [card] = cards.list_cards(gateway(), patient)
    assert (card.label, card.expiry, card.is_default) == ("Visa •••• 4242", "12/34", True)
    assert patient.default_payment_method_id == card.id
    assert stripe_admin.intent(first.stripe_payment_intent_id).setup_future_usage == "off_session"

    second = hold_another(db, held, clock, policy)
    sign_in(client, patient.user)
    html, csrf = open_checkout(client, second.id)
    assert "Pay with Visa •••• 4242" in html and "Expires 12/34" in html
    assert "Use another card" in html                       # the Payment Element is still there, below
    assert html.index("Pay with Visa •••• 4242") < html.index('id="payment-element"')

    response = pay_saved(client, second.id, card.id, csrf)
    assert response.status_code == 200
    assert response.json["state"] == "confirmed"
    assert response.json["redirect"] == f"/checkout/{second.id}/done"
    db.expire_all()
    assert db.get(Appointment, second.id).status == "confirmed"
    attempt = attempt_of(db, second)
    assert attempt.status == "succeeded" and attempt.amount_captured_cents == 12500
    intent = stripe_admin.intent(attempt.stripe_payment_intent_id)
    assert intent.status == "succeeded" and intent.amount_received == 12500
    assert intent.payment_method == card.id
    captured = [c for c in stripe_admin.charges_of(attempt.stripe_payment_intent_id) if c.captured]
    assert len(captured) == 1
    actions = audit.actions_for(db, appointment_id=second.id)
    assert actions.count(cards.CONFIRM_ACTION) == 1 and actions.count("payment.captured") == 1
    # A second tap (a double submit that got through) neither confirms nor captures again.
    again = pay_saved(client, second.id, card.id, csrf)
    assert again.json["state"] == "confirmed"
    assert audit.actions_for(db, appointment_id=second.id).count(cards.CONFIRM_ACTION) == 1
    assert len([c for c in stripe_admin.charges_of(attempt.stripe_payment_intent_id) if c.captured]) == 1


def test_3155_saved_with_setup_future_usage_then_paid_on_session(app, db, client, held, clock, policy,
                                                                 browser_pay, stripe_admin, sandbox):
    first_payment_saving(db, held, clock, browser_pay, number="4000002500003155")   # challenged once
    patient = fresh(db, Patient, held.patient_id)
    [card] = cards.list_cards(gateway(), patient)
    assert card.last4 == "3155"
    second = hold_another(db, held, clock, policy)
    sign_in(client, patient.user)
    _, csrf = open_checkout(client, second.id)
    body = pay_saved(client, second.id, card.id, csrf).json
    if body["state"] == "requires_action":                    # the bank may ask again: the page handles it
        assert body["client_secret"] == attempt_of(db, second).client_secret
        sandbox.complete_3ds(attempt_of(db, second).stripe_payment_intent_id, success=True)
        body = client.post(f"/checkout/{second.id}/complete", headers={"X-CSRFToken": csrf}).json
    assert body["state"] == "confirmed"
    attempt = attempt_of(db, second)
    assert attempt.status == "succeeded"
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).amount_received == 12500


def test_a_card_that_always_asks_for_3d_secure_sends_the_challenge_back_to_the_page(
        app, db, client, held, clock, policy, browser_pay, stripe_admin, sandbox):
    first_payment_saving(db, held, clock, browser_pay, number="4000002760003184")
    patient = fresh(db, Patient, held.patient_id)
    [card] = cards.list_cards(gateway(), patient)
    second = hold_another(db, held, clock, policy)
    sign_in(client, patient.user)
    _, csrf = open_checkout(client, second.id)

    body = pay_saved(client, second.id, card.id, csrf).json
    attempt = attempt_of(db, second)
    assert body["state"] == "requires_action"
    assert body["client_secret"] == attempt.client_secret            # what stripe.handleNextAction needs
    assert db.get(Appointment, second.id).status == "held"
    # The patient fails the challenge once: plain words, the card can be tried again.
    sandbox.complete_3ds(attempt.stripe_payment_intent_id, success=False)
    body = client.post(f"/checkout/{second.id}/complete", headers={"X-CSRFToken": csrf}).json
    assert body["state"] == "declined"
    assert body["message"] == "Your bank could not confirm it was you. Try again or use another card."
    body = pay_saved(client, second.id, card.id, csrf).json
    assert body["state"] == "requires_action"                          # a new confirmation, not a replay
    sandbox.complete_3ds(attempt.stripe_payment_intent_id, success=True)
    body = client.post(f"/checkout/{second.id}/complete", headers={"X-CSRFToken": csrf}).json
    assert body["state"] == "confirmed"
    assert attempt_of(db, second).status == "succeeded"
    assert audit.actions_for(db, appointment_id=second.id).count(cards.CONFIRM_ACTION) == 2


def test_a_saved_card_declined_says_why_and_the_patient_picks_another(app, db, client, held, clock, policy,
                                                                     browser_pay, stripe_admin):
    good = first_payment_saving(db, held, clock, browser_pay)
    patient = fresh(db, Patient, held.patient_id)
    # A second card on file that attaches fine but is declined on every charge.
    bad = stripe_admin.client.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": patient.stripe_customer_id}).id
    second = hold_another(db, held, clock, policy)
    sign_in(client, patient.user)
    html, csrf = open_checkout(client, second.id)
    assert "Pay with Visa •••• 0341" in html
    # The default (the card of the first visit) is the pre-selected, first one-tap button.
    assert html.index("Pay with Visa •••• 4242") < html.index("Pay with Visa •••• 0341")

    for expected_failures in (1, 2):                  # the same card again is a new confirmation
        body = pay_saved(client, second.id, bad, csrf).json
        assert body["state"] == "declined"
        assert body["message"] == "Your card was declined. Please try another card or payment method."
        assert db.get(Appointment, second.id).status == "held"
        assert len(attempt_of(db, second).failures) == expected_failures

    good_pm = stripe_admin.intent(good.stripe_payment_intent_id).payment_method
    body = pay_saved(client, second.id, good_pm, csrf).json
    assert body["state"] == "confirmed"
    attempt = attempt_of(db, second)
    assert attempt.status == "succeeded"
    charges = stripe_admin.charges_of(attempt.stripe_payment_intent_id)
    assert sorted(c.status for c in charges) == ["failed", "failed", "succeeded"]
    assert count_action(db, second.id, "payment.declined") == 2


def test_removing_a_card_detaches_it_in_stripe_and_it_leaves_the_page(app, db, client, held, clock, policy,
                                                                      browser_pay, stripe_admin):
    from tests.helpers.web import csrf_from

    first_payment_saving(db, held, clock, browser_pay)
    patient = fresh(db, Patient, held.patient_id)
    [card] = cards.list_cards(gateway(), patient)
    assert attached(stripe_admin, patient.stripe_customer_id) == [card.id]
    sign_in(client, patient.user)
    page = client.get("/account/cards").get_data(as_text=True)
    assert "Visa •••• 4242" in page and "Expires 12/34" in page
    assert f"/account/cards/{card.id}/remove" in page

    # Without the form's CSRF token nothing happens.
    assert client.post(f"/account/cards/{card.id}/remove").status_code == 400
    assert attached(stripe_admin, patient.stripe_customer_id) == [card.id]

    response = client.post(f"/account/cards/{card.id}/remove", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303 and response.headers["Location"].endswith("/account/cards")
    assert attached(stripe_admin, patient.stripe_customer_id) == []          # detached in Stripe
    after = client.get("/account/cards").get_data(as_text=True)
    assert "Visa •••• 4242 was removed." in after
    assert "Yes, remove" not in after and "You have no saved cards." in after
    assert fresh(db, Patient, patient.id).default_payment_method_id is None
    [removed] = db.scalars(select(AuditEvent).where(AuditEvent.action == "card.removed")).all()
    assert removed.patient_id == patient.id and removed.stripe_object_id == card.id
    assert removed.details == {"brand": "Visa", "last4": "4242", "was_default": True}
    # The next checkout no longer offers it: only the Payment Element.
    second = hold_another(db, held, clock, policy, starts_at=WED_10_NY)
    html, _ = open_checkout(client, second.id)
    assert "Pay with Visa" not in html and 'id="payment-element"' in html


def test_another_patients_card_is_refused_for_paying_and_removing(app, db, client, held, clock, policy,
                                                                  browser_pay, stripe_admin, factories):
    first_payment_saving(db, held, clock, browser_pay)
    owner = fresh(db, Patient, held.patient_id)
    [theirs] = cards.list_cards(gateway(), owner)

    other = factories.patient()
    mine = booking.take_hold(db, now=clock.now(), patient=other, provider_id=held.provider_id,
                             type_id=held.type_id, starts_at=TUE_10_NY, policy=policy,
                             actor=Actor("user", other.user_id, "patient"))
    db.commit()
    sign_in(client, other.user)
    html, csrf = open_checkout(client, mine.id)
    assert "Pay with" not in html.replace("Pay with a saved card", "")      # nothing saved for this patient

    response = pay_saved(client, mine.id, theirs.id, csrf)
    assert response.status_code == 404
    assert response.json["message"] == "That card is not saved on your account."
    attempt = attempt_of(db, mine)
    assert stripe_admin.intent(attempt.stripe_payment_intent_id).status == "requires_payment_method"
    assert db.get(Appointment, mine.id).status == "held"

    page = client.get("/account/cards").get_data(as_text=True)
    from tests.helpers.web import csrf_from
    assert client.post(f"/account/cards/{theirs.id}/remove",
                       data={"csrf_token": csrf_from(page)}).status_code == 404
    assert attached(stripe_admin, owner.stripe_customer_id) == [theirs.id]      # still the owner's
    refused = db.scalars(select(AuditEvent).where(AuditEvent.action == "card.refused")).all()
    assert [r.patient_id for r in refused] == [other.id, other.id]
    # The service refuses it too, whoever calls it.
    with pytest.raises(cards.NotYourCard):
        cards.remove_card(db, gateway(), patient=fresh(db, Patient, other.id), payment_method=theirs.id,
                          actor=Actor.system("test"))
    db.rollback()
