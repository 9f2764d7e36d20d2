"""Booking a post-visit type: a card saved and verified with a SetupIntent (nothing charged), the
patient's consent recorded with its wording, time and card, the booking confirmed by whichever path
learns of it first (the page, the webhook, the sweep) exactly once; a decline or a 3-D Secure
challenge at setup; and "card needed" when the patient removes the card, put right from the
add-card page."""
import re
from datetime import timedelta

from markupsafe import escape
from sqlalchemy import func, select, update

from app.jobs.card_setups import sweep_card_setups
from app.jobs.payments import process_stripe_event
from app.models import Appointment, AuditEvent, CardSetup, Patient, StripeEvent
from app.services import audit, booking, card_setup
from app.services.audit import Actor
from tests.helpers.payments import MON_10_NY, consents, count_action, fresh, sign_in

DECLINE = "4000000000000002"
THREE_DS_AT_SETUP = "4000002500003155"


# -- steps --------------------------------------------------------------------------------------

def open_page(client, appointment_id, path=None):
    response = client.get(path or f"/checkout/{appointment_id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html[:500]
    csrf = re.search(r'data-csrf="([^"]*)"', html).group(1)
    return html, csrf


def consent(client, appointment_id, csrf, *, agreed=True):
    data = {"version": card_setup.CONSENT_VERSION}
    if agreed:
        data["consent"] = "1"
    return client.post(f"/checkout/{appointment_id}/setup-consent", data=data,
                       headers={"X-CSRFToken": csrf, "Accept": "application/json"})


def complete(client, appointment_id, csrf, then="book"):
    return client.post(f"/checkout/{appointment_id}/setup-complete", data={"then": then},
                       headers={"X-CSRFToken": csrf, "Accept": "application/json"})


def setup_of(db, appointment_id) -> CardSetup:
    db.expire_all()
    return db.scalar(select(CardSetup).where(CardSetup.appointment_id == appointment_id)
                     .order_by(CardSetup.id.desc()).limit(1))


def book_with(db, client, hold, card_browser, number="4242424242424242"):
    """The whole page flow: open, agree, Stripe.js saves the card, the page asks the server."""
    sign_in(client, hold.patient.user)
    html, csrf = open_page(client, hold.id)
    assert consent(client, hold.id, csrf).get_json() == {"state": "consented"}
    si = card_browser.save(setup_of(db, hold.id), number)
    return html, csrf, si, complete(client, hold.id, csrf).get_json()


# -- booking --------------------------------------------------------------------------------------

def test_review_page_says_nothing_to_pay_now(db, client, post_visit_hold):
    sign_in(client, post_visit_hold.patient.user)
    html = client.get(f"/book/holds/{post_visit_hold.id}").get_data(as_text=True)
    assert "Nothing to pay now; a card is saved at the next step." in html
    assert "$180.00" not in html
    assert f'href="/checkout/{post_visit_hold.id}"' in html


def test_post_visit_types_are_offered_for_booking_online(db, client, factories):
    later = factories.appointment_type(name="Pay after the visit", payment_timing="post_visit")
    provider = factories.provider(types=[later])
    patient = factories.patient()
    sign_in(client, patient.user)
    assert "Pay after the visit" in client.get("/book").get_data(as_text=True)
    assert "Pay after the visit" in client.get(f"/book/providers/{provider.id}?type_id={later.id}").get_data(
        as_text=True)


def test_booking_with_4242_saves_the_card_records_the_consent_and_charges_nothing(
        app, db, client, clock, post_visit_hold, card_browser, stripe_admin):
    hold = post_visit_hold
    html, csrf, si, result = book_with(db, client, hold, card_browser)
    # The page said so before anything happened.
    assert "Nothing is charged now." in html
    assert "from the services your provider documents in your" in html and "fee schedule" in html
    assert str(escape(card_setup.CONSENT_WORDING)) in html                 # the exact words stored below
    assert 'id="consent" name="consent" value="1" required' in html
    assert si.status == "succeeded"
    assert result == {"state": "confirmed", "message": None, "redirect": f"/checkout/{hold.id}/done"}

    appointment = fresh(db, Appointment, hold.id)
    setup = setup_of(db, hold.id)
    assert appointment.status == "confirmed"
    assert (setup.status, setup.card_brand, setup.card_last4, setup.card_exp_month, setup.card_exp_year) == \
        ("succeeded", "visa", "4242", 12, 2034)
    assert appointment.payment_method_id == setup.payment_method_id == si.payment_method
    patient = db.get(Patient, hold.patient_id)
    assert patient.default_payment_method_id == si.payment_method          # their first card: the default

    [consent_row] = consents(db, hold.id)
    assert consent_row.kind == "post_visit_charge"
    assert consent_row.wording == card_setup.CONSENT_WORDING
    assert "Nothing is charged now" in consent_row.wording and "fee schedule" in consent_row.wording
    assert "payment plan" in consent_row.wording
    assert consent_row.wording_version == "post-visit-v1"
    assert (consent_row.payment_method_id, consent_row.card_brand, consent_row.card_last4) == \
        (si.payment_method, "visa", "4242")
    assert consent_row.accepted_at == clock.now()
    assert consent_row.accepted_by_id == patient.user_id and consent_row.card_setup_id == setup.id

    actions = audit.actions_for(db, appointment_id=hold.id)
    for action in ("card_setup.started", "card_setup.succeeded", "consent.recorded", "booking.confirmed"):
        assert actions.count(action) == 1, (action, actions)

    # Stripe holds a saved card and no payment at all: no PaymentIntent, no charge.
    customer = patient.stripe_customer_id
    assert stripe_admin.intents_of(customer) == []
    assert list(stripe_admin.client.v1.charges.list(params={"customer": customer}).auto_paging_iter()) == []
    stripe_si = stripe_admin.client.v1.setup_intents.retrieve(setup.stripe_setup_intent_id).to_dict()
    assert stripe_si["usage"] == "off_session" and stripe_si["customer"] == customer
    assert stripe_si["metadata"] == {"card_setup_uuid": str(setup.uuid), "appointment_id": str(hold.id),
                                     "patient_id": str(hold.patient_id)}                  # opaque ids only
    attached = stripe_admin.client.v1.customers.payment_methods.list(customer, params={"type": "card"}).data
    assert [pm.id for pm in attached] == [si.payment_method]

    done = client.get(f"/checkout/{hold.id}/done").get_data(as_text=True)
    assert "Booked. Your card ending 4242 is saved; nothing was charged." in done
    assert "Paid:" not in done
    # The checkout link of a booked visit goes to that page.
    assert client.get(f"/checkout/{hold.id}").headers["Location"].endswith(f"/checkout/{hold.id}/done")


def test_the_consent_box_must_be_ticked(db, client, post_visit_hold):
    sign_in(client, post_visit_hold.patient.user)
    _, csrf = open_page(client, post_visit_hold.id)
    refused = consent(client, post_visit_hold.id, csrf, agreed=False)
    assert refused.status_code == 422 and "tick the box" in refused.get_json()["message"]
    assert setup_of(db, post_visit_hold.id).consent_accepted_at is None


def test_a_card_saved_without_the_consent_step_books_nothing(db, client, post_visit_hold, card_browser):
    """Confirmed at Stripe by something other than our page: the card is kept, the booking waits."""
    sign_in(client, post_visit_hold.patient.user)
    _, csrf = open_page(client, post_visit_hold.id)
    card_browser.save(setup_of(db, post_visit_hold.id), "4242424242424242")
    body = complete(client, post_visit_hold.id, csrf).get_json()
    assert body["state"] == "consent_needed"
    assert fresh(db, Appointment, post_visit_hold.id).status == "held"
    assert consents(db, post_visit_hold.id) == []


def test_a_declined_card_leaves_the_hold_with_plain_words_and_another_card_books(
        db, client, post_visit_hold, card_browser):
    hold = post_visit_hold
    _, csrf, error, result = book_with(db, client, hold, card_browser, number=DECLINE)
    assert getattr(error, "code", None) == "card_declined"
    assert result["state"] == "declined"
    assert result["message"] == "Your card was declined. Please try another card or payment method."
    assert fresh(db, Appointment, hold.id).status == "held"
    assert setup_of(db, hold.id).status == "requires_payment_method"
    [failed] = [e for e in db.scalars(select(AuditEvent).where(AuditEvent.appointment_id == hold.id,
                                                               AuditEvent.action == "card_setup.failed"))]
    assert (failed.details["code"], failed.details["decline_code"]) == ("card_declined", "generic_decline")
    assert consents(db, hold.id) == []
    # Asking again records nothing new.
    assert complete(client, hold.id, csrf).get_json()["state"] == "declined"
    assert count_action(db, hold.id, "card_setup.failed") == 1

    card_browser.save(setup_of(db, hold.id), "5555555555554444")
    assert complete(client, hold.id, csrf).get_json()["state"] == "confirmed"
    assert fresh(db, Appointment, hold.id).status == "confirmed"
    [consent_row] = consents(db, hold.id)
    assert consent_row.card_last4 == "4444"


def test_3d_secure_at_setup_then_confirmed(db, client, clock, post_visit_hold, card_browser, stripe_admin):
    hold = post_visit_hold
    expires = hold.hold_expires_at
    _, csrf, si, result = book_with(db, client, hold, card_browser, number=THREE_DS_AT_SETUP)
    assert si.status == "requires_action"
    assert result["state"] == "requires_action"
    appointment = fresh(db, Appointment, hold.id)
    assert appointment.status == "held" and appointment.hold_expires_at > expires     # extended once, as for 3DS
    card_browser.authenticate(setup_of(db, hold.id), success=True)
    assert complete(client, hold.id, csrf).get_json()["state"] == "confirmed"
    appointment = fresh(db, Appointment, hold.id)
    assert appointment.status == "confirmed" and appointment.payment_method_id
    assert [c.card_last4 for c in consents(db, hold.id)] == ["3155"]
    assert stripe_admin.intents_of(db.get(Patient, hold.patient_id).stripe_customer_id) == []


def test_3d_secure_failed_then_retried(db, client, post_visit_hold, card_browser):
    hold = post_visit_hold
    _, csrf, si, _ = book_with(db, client, hold, card_browser, number=THREE_DS_AT_SETUP)
    card_browser.authenticate(setup_of(db, hold.id), success=False)
    failed = complete(client, hold.id, csrf).get_json()
    assert failed["state"] == "declined"
    assert failed["message"] == "Your bank could not confirm it was you. Try again or use another card."
    assert fresh(db, Appointment, hold.id).status == "held"
    assert card_browser.save(setup_of(db, hold.id), THREE_DS_AT_SETUP).status == "requires_action"
    card_browser.authenticate(setup_of(db, hold.id), success=True)
    assert complete(client, hold.id, csrf).get_json()["state"] == "confirmed"


# -- other paths: the webhook, a repeat, the sweep -------------------------------------------------

def test_the_webhook_alone_confirms_and_duplicates_make_one_consent(
        app, db, client, post_visit_hold, card_browser, sandbox, live_server, queue):
    hold = post_visit_hold
    sign_in(client, hold.patient.user)
    _, csrf = open_page(client, hold.id)
    assert consent(client, hold.id, csrf).status_code == 200
    sandbox.clear_webhook_deliveries()
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    sandbox.webhook_mode(duplicate=3, shuffle=True, max_attempts=1)
    card_browser.save(setup_of(db, hold.id), "4242424242424242")      # the page never reports back
    assert sandbox.wait_for_webhooks(15)
    db.expire_all()
    stored = list(db.scalars(select(StripeEvent).where(StripeEvent.type.startswith("setup_intent."))))
    assert "setup_intent.succeeded" in {e.type for e in stored}
    for event in stored:                          # the jobs as queued, each twice
        process_stripe_event(event.id)
        process_stripe_event(event.id)
    appointment = fresh(db, Appointment, hold.id)
    assert appointment.status == "confirmed" and appointment.payment_method_id
    assert len(consents(db, hold.id)) == 1
    assert count_action(db, hold.id, "card_setup.succeeded") == 1
    assert count_action(db, hold.id, "booking.confirmed") == 1
    db.expire_all()
    assert all(db.get(StripeEvent, e.id).processed_at is not None for e in stored)
    # The page asking afterwards finds it done.
    assert complete(client, hold.id, csrf).get_json()["state"] == "confirmed"
    assert len(consents(db, hold.id)) == 1


def test_stored_setup_events_processed_in_a_batch_settle_the_setup(
        app, db, client, post_visit_hold, card_browser, sandbox, live_server, queue):
    from app.services import settlement

    hold = post_visit_hold
    sign_in(client, hold.patient.user)
    _, csrf = open_page(client, hold.id)
    consent(client, hold.id, csrf)
    sandbox.clear_webhook_deliveries()
    sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")
    card_browser.save(setup_of(db, hold.id), "4242424242424242")
    assert sandbox.wait_for_webhooks(15)
    processed, failed = settlement.process_events(db)
    assert failed == [] and processed >= 1
    assert fresh(db, Appointment, hold.id).status == "confirmed"
    assert len(consents(db, hold.id)) == 1


def test_settling_twice_records_once(db, client, post_visit_hold, card_browser):
    hold = post_visit_hold
    book_with(db, client, hold, card_browser)
    setup = setup_of(db, hold.id)
    for _ in range(2):
        assert card_setup.settle_setup(db, setup.id, source="test", actor=Actor.system("test")).state == "confirmed"
    assert len(consents(db, hold.id)) == 1
    assert count_action(db, hold.id, "card_setup.succeeded") == 1 and count_action(db, hold.id, "consent.recorded") == 1
    assert count_action(db, hold.id, "booking.confirmed") == 1


def test_the_sweep_settles_a_quiet_setup_and_gives_up_one_left_creating(
        app, db, client, clock, post_visit_hold, card_browser, factories, policy):
    hold = post_visit_hold
    sign_in(client, hold.patient.user)
    _, csrf = open_page(client, hold.id)
    consent(client, hold.id, csrf)
    card_browser.save(setup_of(db, hold.id), "4242424242424242")      # page and webhook both lost
    # Another hold whose setup row was stored, but the process died before Stripe was asked.
    other = booking.take_hold(db, now=clock.now(), patient=factories.patient(), provider_id=hold.provider_id,
                              type_id=hold.type_id, starts_at=MON_10_NY + timedelta(hours=2), policy=policy,
                              actor=Actor.system("test"))
    db.commit()
    stranded = card_setup.open_setup(db, appointment=other, patient=other.patient, now=clock.now())
    db.commit()
    db.execute(update(CardSetup).values(created_at=func.now() - timedelta(minutes=5),
                                        updated_at=func.now() - timedelta(minutes=5)))
    db.commit()
    assert sweep_card_setups() == {"setups_settled": 1, "setups_reconciled": 1}
    assert fresh(db, Appointment, hold.id).status == "confirmed"
    assert len(consents(db, hold.id)) == 1
    assert fresh(db, CardSetup, stranded.id).status == "canceled"
    assert count_action(db, other.id, "card_setup.canceled") == 1
    assert sweep_card_setups() == {}


def test_a_slot_taken_meanwhile_keeps_the_card_and_says_so(db, client, clock, post_visit_hold, card_browser,
                                                         factories, policy):
    hold = post_visit_hold
    sign_in(client, hold.patient.user)
    _, csrf = open_page(client, hold.id)
    consent(client, hold.id, csrf)
    # The hold lapses and someone else books the time before the card is confirmed.
    booking.release(db, hold, actor=Actor.system("test"), now=clock.now(), reason="hold expired")
    db.commit()
    rival = booking.take_hold(db, now=clock.now(), patient=factories.patient(), provider_id=hold.provider_id,
                              type_id=hold.type_id, starts_at=MON_10_NY, policy=policy, actor=Actor.system("test"))
    booking.confirm(db, rival, actor=Actor.system("test"), now=clock.now())
    db.commit()
    card_browser.save(setup_of(db, hold.id), "4242424242424242")
    body = complete(client, hold.id, csrf).get_json()
    assert body["state"] == "slot_lost"
    assert "Nothing was charged" in body["message"] and "card is saved" in body["message"]
    assert fresh(db, Appointment, hold.id).status == "released"
    assert complete(client, hold.id, csrf).get_json()["state"] == "slot_lost"      # and stays so
    assert count_action(db, hold.id, "card_setup.slot_lost") == 1


# -- card needed ------------------------------------------------------------------------------------

def test_removing_the_card_makes_the_visit_need_one_and_the_add_card_page_restores_it(
        db, client, post_visit_hold, card_browser):
    hold = post_visit_hold
    _, _, si, _ = book_with(db, client, hold, card_browser)
    pm = si.payment_method

    page = client.get("/account/cards").get_data(as_text=True)
    assert "Your visit on Monday, December 7 is charged to this card after" in page   # warned before removing
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]*)"|name="csrf_token" value="([^"]*)"', page)
    token = next(g for g in csrf.groups() if g)
    removed = client.post(f"/account/cards/{pm}/remove", data={"csrf_token": token})
    assert removed.status_code == 303
    appointment = fresh(db, Appointment, hold.id)
    assert appointment.status == "confirmed" and appointment.payment_method_id is None
    assert count_action(db, hold.id, "card.needed") == 1

    page = client.get("/account/cards").get_data(as_text=True)
    assert "Your visit on Monday, December 7 needs a card:" in page
    assert f'href="/appointments/{hold.id}/card"' in page
    detail = client.get(f"/appointments/{hold.id}").get_data(as_text=True)
    assert "Card needed." in detail and f'href="/appointments/{hold.id}/card"' in detail
    listing = client.get("/appointments").get_data(as_text=True)
    assert "Card needed:" in listing

    html, csrf = open_page(client, hold.id, path=f"/appointments/{hold.id}/card")
    assert "Add a card for your visit" in html and "Nothing is charged now." in html
    assert consent(client, hold.id, csrf).status_code == 200
    new = card_browser.save(setup_of(db, hold.id), "5555555555554444")
    body = complete(client, hold.id, csrf, then="card").get_json()
    assert body == {"state": "confirmed", "message": None, "redirect": f"/appointments/{hold.id}"}
    appointment = fresh(db, Appointment, hold.id)
    assert appointment.status == "confirmed" and appointment.payment_method_id == new.payment_method
    assert [c.card_last4 for c in consents(db, hold.id)] == ["4242", "4444"]
    assert count_action(db, hold.id, "booking.confirmed") == 1                              # no booking change
    detail = client.get(f"/appointments/{hold.id}").get_data(as_text=True)
    assert "Card needed" not in detail and "card ending 4444" in detail
    assert "needs a card" not in client.get("/account/cards").get_data(as_text=True)


def test_one_tap_on_a_saved_card_books_the_next_visit(db, client, clock, post_visit_hold, card_browser, policy):
    first = post_visit_hold
    _, _, si, _ = book_with(db, client, first, card_browser)
    second = booking.take_hold(db, now=clock.now(), patient=first.patient, provider_id=first.provider_id,
                               type_id=first.type_id, starts_at=MON_10_NY + timedelta(days=1), policy=policy,
                               actor=Actor("user", first.patient.user_id, "patient"))
    db.commit()
    html, csrf = open_page(client, second.id)
    assert "Use Visa •••• 4242" in html
    tap = client.post(f"/checkout/{second.id}/setup-saved",
                      data={"payment_method": si.payment_method, "consent": "1",
                            "version": card_setup.CONSENT_VERSION},
                      headers={"X-CSRFToken": csrf, "Accept": "application/json"})
    assert tap.get_json()["state"] == "confirmed"
    appointment = fresh(db, Appointment, second.id)
    assert appointment.status == "confirmed" and appointment.payment_method_id == si.payment_method
    assert [c.card_last4 for c in consents(db, second.id)] == ["4242"]
    assert count_action(db, second.id, card_setup.SAVED_CONFIRM_ACTION) == 1


def test_another_patients_card_is_refused(db, client, clock, post_visit_hold, factories, policy):
    sign_in(client, post_visit_hold.patient.user)
    _, csrf = open_page(client, post_visit_hold.id)
    tap = client.post(f"/checkout/{post_visit_hold.id}/setup-saved",
                      data={"payment_method": "pm_not_yours", "consent": "1",
                            "version": card_setup.CONSENT_VERSION},
                      headers={"X-CSRFToken": csrf, "Accept": "application/json"})
    assert tap.status_code == 404
    assert fresh(db, Appointment, post_visit_hold.id).status == "held"
