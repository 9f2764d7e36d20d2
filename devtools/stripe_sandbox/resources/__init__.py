"""One module per Stripe resource.  Each exposes ``register(router)``.

Later work (Connect accounts and transfers, disputes, refund-timing cards)
adds modules here, e.g. ``accounts.py``, ``transfers.py``, ``disputes.py``.
"""
from . import charges, customers, events, payment_intents, payment_methods, refunds, setup_intents, webhook_endpoints

MODULES = [customers, payment_methods, setup_intents, payment_intents, charges, refunds, events, webhook_endpoints]


def register_all(router) -> None:
    for m in MODULES:
        m.register(router)
