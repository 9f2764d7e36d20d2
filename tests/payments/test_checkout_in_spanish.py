"""A Spanish-speaking patient pays to book on a phone (issue 17): the checkout page, the server's
decline message, the scripts' words (the page's JSON data block, read by payment_page.js) and the
confirmation are in Spanish; the busy label while the card is confirmed too."""
import json

import pytest
from playwright.sync_api import expect

from tests.helpers.phone import fill_card, sign_in

pytestmark = pytest.mark.e2e


def test_a_decline_then_a_payment_in_spanish(live_server, phone, db, held, sandbox):
    from app.models import Appointment

    page = phone
    sign_in(page, live_server, held.patient.user.email)
    page.context.add_cookies([{"name": "lang", "value": "es", "url": live_server}])   # the footer's switch
    page.goto(f"{live_server}/checkout/{held.id}")
    expect(page.get_by_role("heading", name="Pague para reservar")).to_be_visible()
    expect(page.get_by_text("Total: $125.00")).to_be_visible()
    expect(page.get_by_role("timer")).to_contain_text("Le estamos reservando este horario")
    words = json.loads(page.locator("#page-text").text_content())
    assert words["declined"] == "Su tarjeta fue rechazada. Intente con otra tarjeta u otro método de pago."
    assert words["wallet_hint"].count("{wallets}") == 2        # filled in by checkout.js

    fill_card(page, "4000000000009995")                          # insufficient funds
    pay = page.get_by_role("button", name="Pagar $125.00")
    pay.click()
    message = page.locator("#payment-message")
    expect(message).to_contain_text("Su tarjeta no tiene fondos suficientes. Intente con otra tarjeta.")
    expect(pay).to_be_enabled()
    db.expire_all()
    assert db.get(Appointment, held.id).status == "held"

    page.get_by_label("Card number").fill("4242424242424242")
    pay.click()
    expect(page.get_by_role("heading", name="Su cita está reservada")).to_be_visible()
    expect(page.get_by_text("Pagado: $125.00")).to_be_visible()
    expect(page.get_by_role("link", name="Agregar al calendario (.ics)")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    db.expire_all()
    assert db.get(Appointment, held.id).status == "confirmed"


def test_the_same_checkout_in_english_is_unchanged(live_server, phone, db, held, sandbox):
    page = phone
    sign_in(page, live_server, held.patient.user.email)
    page.goto(f"{live_server}/checkout/{held.id}")
    expect(page.get_by_role("heading", name="Pay to book")).to_be_visible()
    expect(page.get_by_role("timer")).to_contain_text("We are holding this time for you")
    words = json.loads(page.locator("#page-text").text_content())
    assert words["declined"] == "Your card was declined. Please try another card or payment method."
    fill_card(page, "4000000000009995")
    page.get_by_role("button", name="Pay $125.00").click()
    expect(page.locator("#payment-message")).to_contain_text("Your card has insufficient funds.")
