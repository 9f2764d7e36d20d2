"""Steps of the hybrid deposit's checkout page (``/checkout/<id>`` for a hybrid hold), as its script
does them: open the page, tick the balance consent (recorded first), ask the server to complete; the
appointment's current attempt; the whole page paid with a test card; and the same two requests on the
page that saves a card with a SetupIntent instead (a zero deposit, or another card for the balance)."""
from __future__ import annotations

import re

from app.models import Appointment, PaymentAttempt
from app.services import hybrid_deposit, payments
from tests.helpers.payments import SUCCESS, sign_in


def open_checkout(client, appointment_id, status=200):
    """GET the checkout page (asserting ``status``); returns (html, csrf)."""
    response = client.get(f"/checkout/{appointment_id}")
    html = response.get_data(as_text=True)
    assert response.status_code == status, html[:800]
    csrf = re.search(r'data-csrf="([^"]*)"', html)
    return html, csrf and csrf.group(1)


def agree(client, appointment_id, csrf, *, ticked=True, version=hybrid_deposit.CONSENT_VERSION):
    data = {"version": version}
    if ticked:
        data["consent"] = "1"
    return client.post(f"/checkout/{appointment_id}/hybrid-consent", data=data,
                       headers={"X-CSRFToken": csrf, "Accept": "application/json"})


def complete(client, appointment_id, csrf):
    return client.post(f"/checkout/{appointment_id}/complete", headers={"X-CSRFToken": csrf,
                                                                        "Accept": "application/json"})


def attempt_of(db, appointment_id) -> PaymentAttempt:
    db.expire_all()
    return payments.current_attempt(db, db.get(Appointment, appointment_id))


def pay_on_page(db, client, hold, browser_pay, number=SUCCESS):
    """The whole page: open, tick the box (recorded first), Stripe.js confirms, the page asks the server."""
    sign_in(client, hold.patient.user)
    html, csrf = open_checkout(client, hold.id)
    assert agree(client, hold.id, csrf).get_json() == {"state": "consented"}
    intent = browser_pay.pay(attempt_of(db, hold.id), number)
    return html, csrf, intent, complete(client, hold.id, csrf).get_json()


def agree_to_setup(client, appointment_id, csrf, *, ticked=True, version=hybrid_deposit.SETUP_CONSENT_VERSION):
    """The consent on the page that saves the card with a SetupIntent (a zero deposit, or another card for
    the balance): the hybrid setup wording's version unless ``version`` says otherwise."""
    data = {"version": version}
    if ticked:
        data["consent"] = "1"
    return client.post(f"/checkout/{appointment_id}/setup-consent", data=data,
                       headers={"X-CSRFToken": csrf, "Accept": "application/json"})


def complete_setup(client, appointment_id, csrf, then="book"):
    return client.post(f"/checkout/{appointment_id}/setup-complete", data={"then": then},
                       headers={"X-CSRFToken": csrf, "Accept": "application/json"})
