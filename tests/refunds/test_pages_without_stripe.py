"""Receipts and dashboards are rendered from our rows: with Stripe unreachable they still show the
amounts and the card that paid (brand, last 4, stored when the payment completed)."""
import socket

import pytest

from app.integrations.stripe_gateway import StripeGateway
from app.models import PaymentAttempt
from tests.helpers.payments import sign_in


@pytest.fixture
def stripe_down(app):
    """stripe_down() -> from then on Stripe is unreachable: the app's gateway points at a closed port."""
    kept = app.extensions.get("stripe_gateway")

    def cut():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
        app.extensions["stripe_gateway"] = StripeGateway(api_key=app.config["SETTINGS"].STRIPE_SECRET_KEY,
                                                         api_base=dead, max_network_retries=0, timeout=2.0)
    yield cut
    if app.extensions.get("stripe_gateway") is not kept:
        app.extensions["stripe_gateway"].close()
        app.extensions["stripe_gateway"] = kept


def test_receipt_dashboard_and_staff_pages_render_with_stripe_unreachable(app, db, client, book, login_as,
                                                                          stripe_down):
    appointment, attempt = book()
    stripe_down()
    stored = db.get(PaymentAttempt, attempt.id)
    assert (stored.card_brand, stored.card_last4, stored.card_exp_month, stored.card_exp_year) == (
        "visa", "4242", 12, 2034)

    patient = app.test_client()
    sign_in(patient, appointment.patient.user)
    receipt = patient.get(f"/appointments/{appointment.id}/receipt")
    html = receipt.get_data(as_text=True)
    assert receipt.status_code == 200
    assert 'data-field="paid">$125.00' in html and "Visa ending in 4242" in html
    dashboard = patient.get("/appointments")
    assert dashboard.status_code == 200 and "Paid $125.00" in dashboard.get_data(as_text=True)

    login_as("billing")
    billing = client.get(f"/billing/payments/{stored.charge_id}")
    assert billing.status_code == 200 and "$125.00" in billing.get_data(as_text=True)
    listing = client.get("/billing/payments")
    assert listing.status_code == 200 and "$125.00" in listing.get_data(as_text=True)
