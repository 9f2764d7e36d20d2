"""One module per Stripe resource.  Each exposes ``register(router)``: its API routes, its timers
(what Stripe does "later") and its admin routes under /_sandbox."""
from . import (account_links, accounts, balance, charges, customers, disputes, events, payment_intents,
               payment_methods, payouts, refunds, setup_intents, transfers, webhook_endpoints)

MODULES = [customers, payment_methods, setup_intents, payment_intents, charges, refunds, disputes, events,
           webhook_endpoints, accounts, account_links, balance, transfers, payouts]


def register_all(router) -> None:
    for m in MODULES:
        m.register(router)
