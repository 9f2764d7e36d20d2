"""A hybrid visit relies on its card until the insurer's answer is reconciled (the balance is charged
to it): removing that card makes the visit "card needed" (warned first, audited), and the card page
``/appointments/<id>/card`` saves another one with a SetupIntent (nothing charged) under the hybrid
balance consent (kind ``hybrid_balance``, the hybrid setup wording), without touching the booking."""
import re
from datetime import timedelta

from markupsafe import escape
from sqlalchemy import func, select

from app.models import Appointment, Charge, CollectionCase, Encounter, Patient, Reconciliation
from app.services import card_setup, cards, hybrid_deposit
from tests.helpers.hybrid import agree_to_setup, complete_setup, pay_on_page
from tests.helpers.payments import consents, count_action, fresh, sign_in
from tests.helpers.web import csrf_from

MASTERCARD = "5555555555554444"


def remove(client, pm):
    page = client.get("/account/cards").get_data(as_text=True)
    return page, client.post(f"/account/cards/{pm}/remove", data={"csrf_token": csrf_from(page)})


def test_removing_the_deposit_card_makes_the_hybrid_visit_need_one_and_the_card_page_restores_it(
        db, client, clock, hybrid_hold, browser_pay, card_browser):
    hold = hybrid_hold
    _, _, intent, result = pay_on_page(db, client, hold, browser_pay)
    assert result["state"] == "confirmed"
    pm = fresh(db, Appointment, hold.id).payment_method_id
    assert pm == intent.payment_method
    detail = client.get(f"/appointments/{hold.id}").get_data(as_text=True)
    assert "we charge the rest to your saved card ending 4242 or refund the difference to the card that paid" in detail
    assert f'href="/appointments/{hold.id}/card">Use another card</a>' in detail

    page, removed = remove(client, pm)
    assert "relies on this\n        card: after your insurer answers, the rest of what you owe is charged to it" in page
    assert removed.status_code == 303
    appointment = fresh(db, Appointment, hold.id)
    assert appointment.status == "confirmed" and appointment.payment_method_id is None
    assert count_action(db, hold.id, "card.needed") == 1
    assert cards.needing_a_card(db, db.get(Patient, hold.patient_id)) == [appointment]

    page = client.get("/account/cards").get_data(as_text=True)
    assert "Your visit on Monday, December 7 needs a card:" in page and f'href="/appointments/{hold.id}/card"' in page
    detail = client.get(f"/appointments/{hold.id}").get_data(as_text=True)
    assert "Card needed." in detail and "after your insurer answers, the rest of what you owe is charged to it" in detail
    assert "Card needed:" in client.get("/appointments").get_data(as_text=True)

    response = client.get(f"/appointments/{hold.id}/card")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "no-store" in response.headers["Cache-Control"]
    assert "Add a card for your visit" in html and "Nothing is charged now." in html
    text = " ".join(html.split())      # the sentences as a reader sees them, whatever the line breaks
    assert "we charge the rest of what you owe for this visit, if anything, to the card you save here." in text
    assert "A refund of any difference goes back to the card that paid your deposit." in text
    assert "Deposit now" not in html and "No deposit is due" not in html
    assert str(escape(hybrid_deposit.SETUP_CONSENT_WORDING)) in html
    assert f'data-consent-version="{hybrid_deposit.SETUP_CONSENT_VERSION}"' in html
    assert "I agree: charge my card after my insurer answers" in html
    csrf = re.search(r'data-csrf="([^"]*)"', html).group(1)
    assert agree_to_setup(client, hold.id, csrf, ticked=False).status_code == 422
    stale = agree_to_setup(client, hold.id, csrf, version=card_setup.CONSENT_VERSION)
    assert stale.status_code == 409                                # the post-visit words are not these
    assert agree_to_setup(client, hold.id, csrf).get_json() == {"state": "consented"}
    si = card_browser.save(card_setup.current_setup(db, fresh(db, Appointment, hold.id)), MASTERCARD)
    assert si.status == "succeeded"
    body = complete_setup(client, hold.id, csrf, then="card").get_json()
    assert body == {"state": "confirmed", "message": None, "redirect": f"/appointments/{hold.id}"}

    appointment = fresh(db, Appointment, hold.id)
    assert appointment.status == "confirmed" and appointment.payment_method_id == si.payment_method
    deposit_consent, readded = consents(db, hold.id)
    assert (deposit_consent.wording_version, deposit_consent.card_last4) == (hybrid_deposit.CONSENT_VERSION, "4242")
    assert (readded.kind, readded.wording_version, readded.wording, readded.card_last4, readded.payment_method_id) == (
        "hybrid_balance", hybrid_deposit.SETUP_CONSENT_VERSION, hybrid_deposit.SETUP_CONSENT_WORDING, "4444",
        si.payment_method)
    assert readded.card_setup_id is not None and readded.accepted_by_id == hold.patient.user_id
    assert count_action(db, hold.id, "booking.confirmed") == 1                             # no booking change
    charges = db.scalars(select(Charge).where(Charge.appointment_id == hold.id)).all()
    assert [(c.purpose, c.amount_captured_cents) for c in charges] == [("deposit", 3000)]   # nothing charged now
    detail = client.get(f"/appointments/{hold.id}").get_data(as_text=True)
    assert "Card needed" not in detail and "your saved card ending 4444" in detail
    assert "needs a card" not in client.get("/account/cards").get_data(as_text=True)


def test_replacing_the_card_of_a_zero_deposit_hybrid_visit(db, client, make_hybrid_hold, card_browser):
    """Booked with a $0 deposit (card saved by a SetupIntent): "Use another card" saves a second one."""
    hold = make_hybrid_hold(deposit_cents=0)
    sign_in(client, hold.patient.user)
    html = client.get(f"/checkout/{hold.id}").get_data(as_text=True)
    csrf = re.search(r'data-csrf="([^"]*)"', html).group(1)
    assert agree_to_setup(client, hold.id, csrf).status_code == 200
    card_browser.save(card_setup.current_setup(db, fresh(db, Appointment, hold.id)), "4242424242424242")
    assert complete_setup(client, hold.id, csrf).get_json()["state"] == "confirmed"
    detail = client.get(f"/appointments/{hold.id}").get_data(as_text=True)
    assert "your saved card ending 4242." in detail and "refund the difference" not in detail

    html = client.get(f"/appointments/{hold.id}/card").get_data(as_text=True)
    assert "This visit is charged to your card ending 4242" in html and "goes back to the card" not in html
    assert agree_to_setup(client, hold.id, csrf).status_code == 200
    si = card_browser.save(card_setup.current_setup(db, fresh(db, Appointment, hold.id)), MASTERCARD)
    body = complete_setup(client, hold.id, csrf, then="card").get_json()
    assert body["state"] == "confirmed"
    assert fresh(db, Appointment, hold.id).payment_method_id == si.payment_method
    assert [(c.kind, c.card_last4) for c in consents(db, hold.id)] == [("hybrid_balance", "4242"),
                                                                         ("hybrid_balance", "4444")]
    assert db.scalar(select(func.count()).select_from(Charge).where(Charge.appointment_id == hold.id)) == 0


def test_a_held_hybrid_visit_with_a_deposit_is_not_saved_here(db, client, hybrid_hold):
    sign_in(client, hybrid_hold.patient.user)
    response = client.get(f"/appointments/{hybrid_hold.id}/card")
    assert response.status_code in (302, 303) and response.location.endswith(f"/checkout/{hybrid_hold.id}")
    try:
        card_setup.open_setup(db, appointment=fresh(db, Appointment, hybrid_hold.id), patient=hybrid_hold.patient,
                              now=hybrid_hold.created_at)
    except card_setup.CardSetupError as error:
        assert "deposit to pay at booking" in str(error)
    else:
        raise AssertionError("a held hybrid visit with a deposit must pay it at checkout")
    db.rollback()


# -- which hybrid visits rely on the card -----------------------------------------------------------

def _visit(db, factories, clock, patient, visit_type, provider, status, days, pm="pm_on_file"):
    start = clock.now() + timedelta(days=days)
    row = Appointment(patient_id=patient.id, provider_id=provider.id, type_id=visit_type.id, status=status,
                      starts_at=start, ends_at=start + timedelta(minutes=30), blocked_start=start,
                      blocked_end=start + timedelta(minutes=30), price_cents=0, payment_timing="hybrid",
                      modality="telehealth", payment_method_id=pm,
                      hold_expires_at=clock.now() + timedelta(minutes=10) if status == "held" else None)
    db.add(row)
    db.flush()
    return row


def _balance_case(db, appointment, provider, clock, status):
    encounter = Encounter(appointment_id=appointment.id, patient_id=appointment.patient_id, provider_id=provider.id,
                          status="signed", version=1, opened_at=clock.now(), opened_by_id=provider.user_id,
                          signed_at=clock.now(), signed_by_id=provider.user_id, content_hash="ab" * 32,
                          total_cents=1400)
    charge = Charge(appointment_id=appointment.id, purpose="balance", amount_cents=1400, status="pending",
                    amount_captured_cents=0, amount_refunded_cents=0)
    db.add_all([encounter, charge])
    db.flush()
    db.add(CollectionCase(charge_id=charge.id, encounter_id=encounter.id, appointment_id=appointment.id,
                          status=status, retries_done=0, plan_paid=0, recovered=False))
    db.add(Reconciliation(appointment_id=appointment.id, patient_responsibility_cents=1400, paid_cents=0,
                          difference_cents=1400, outcome="balance_charge", balance_charge_id=charge.id))
    db.flush()


def test_hybrid_visits_rely_on_the_card_until_their_balance_is_settled(db, factories, clock):
    visit_type = factories.appointment_type(name="Follow-up (insurance)", payment_timing="hybrid",
                                            modality="telehealth")
    provider = factories.provider(types=[visit_type])
    patient = factories.patient()
    upcoming = _visit(db, factories, clock, patient, visit_type, provider, "confirmed", 3)
    awaiting = _visit(db, factories, clock, patient, visit_type, provider, "completed", -3)   # insurer not heard
    settled = _visit(db, factories, clock, patient, visit_type, provider, "completed", -10)
    db.add(Reconciliation(appointment_id=settled.id, patient_responsibility_cents=3000, paid_cents=3000,
                          difference_cents=0, outcome="none"))
    owing = _visit(db, factories, clock, patient, visit_type, provider, "completed", -20)
    _balance_case(db, owing, provider, clock, "recovering")
    paid = _visit(db, factories, clock, patient, visit_type, provider, "completed", -30)
    _balance_case(db, paid, provider, clock, "paid")
    _visit(db, factories, clock, patient, visit_type, provider, "canceled", 5)
    _visit(db, factories, clock, patient, visit_type, provider, "held", 6)
    db.commit()

    relying = cards.relying_on(db, patient, "pm_on_file")
    assert [a.id for a in relying] == [owing.id, awaiting.id, upcoming.id]      # by start time
    for appointment in (upcoming, awaiting, settled, owing, paid):
        appointment.payment_method_id = None
    db.flush()
    assert [a.id for a in cards.needing_a_card(db, patient)] == [owing.id, awaiting.id, upcoming.id]
    assert cards.needs_card(db, awaiting) and not cards.needs_card(db, settled) and not cards.needs_card(db, paid)
    db.rollback()
