"""Ledger fixtures (issue 16): the Stripe sandbox seen through the SDK directly (as "not the app"), a
real captured charge, and postings made the way the app's posters make them (``ledger.post``)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from app.services import ledger
from app.services.ledger import Entry

UTC = timezone.utc


@pytest.fixture
def stripe_direct(stripe_admin):
    """The sandbox's SDK client with the secret key: what the tests do at Stripe behind the app's back."""
    return stripe_admin.client


def captured_charge(client, amount: int):
    """A PaymentIntent confirmed with pm_card_visa and captured at the sandbox; its Charge with the
    balance transaction expanded."""
    intent = client.v1.payment_intents.create(params={
        "amount": amount, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
        "capture_method": "manual", "payment_method_types": ["card"], "metadata": {"test": "ledger"}})
    assert intent.status == "requires_capture"
    intent = client.v1.payment_intents.capture(intent.id)
    assert intent.status == "succeeded"
    return client.v1.charges.retrieve(intent.latest_charge, params={"expand": ["balance_transaction"]})


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def post_charge(session, charge, *, provider_id: int | None = None, occurred_at: datetime | None = None):
    """The ``charge:<ch_id>`` posting from the charge's balance transaction."""
    bt = charge.balance_transaction
    txn, posted = ledger.post(
        session, kind="charge", dedupe_key=f"charge:{charge.id}", occurred_at=occurred_at or at(bt.created),
        stripe_object_id=charge.id, provider_id=provider_id,
        entries=[Entry(ledger.STRIPE_BALANCE, bt.net, balance_transaction_id=bt.id),
                 Entry(ledger.STRIPE_FEES, bt.fee, balance_transaction_id=bt.id),
                 Entry(ledger.PATIENT_PAYMENTS, -bt.amount)])
    assert posted
    return txn
