"""The Stripe gateway's part for issue 16: balance transactions (the platform's and a connected account's), listed
for the ledger's daily reconciliation, for a transfer's or a reversal's payment on the connected account and for
what a payout swept (a charge's and a refund's own: MoneyMixin.retrieve_charge_money, retrieve_refund_money).

Mixed into ``StripeGateway`` (stripe_gateway.py): ``self.client`` is the SDK's StripeClient and
``self._post(call, key, reconcile=...)`` the retry discipline (idempotency key, reconcile after a
transient failure, then the next key). Answers come back as small plain objects (``BalanceTxn``,
stripe_common.py), never SDK types.

Everything here only reads. A connected account's transactions are read with ``Stripe-Account``
(``options={"stripe_account": acct}``); Stripe answers 403 ``account_invalid`` for an account the
platform cannot read (a GatewayError, not a transient failure).
"""
from __future__ import annotations

from typing import Any

import stripe  # noqa: F401

from app.integrations.stripe_common import (BalanceTxn, GatewayError, GatewayUnavailable, _as, _describe,
                                            _transient)


def _read_error(error: stripe.StripeError, what: str) -> GatewayError:
    if _transient(error):
        return GatewayUnavailable(f"Stripe could not be reached ({what}: {error.__class__.__name__})")
    return GatewayError(_describe(error))


class LedgerMixin:
    def balance_transactions(self, *, account: str | None = None, source: str | None = None,
                             payout: str | None = None, type: str | None = None,
                             created: tuple[int, int] | None = None) -> list[BalanceTxn]:
        """The balance transactions of the platform (``account`` None) or of a connected account, every
        page, newest first: by ``source``, ``payout`` or ``type``, and/or created in ``created = (start,
        end)``, ``[start, end)`` in Unix seconds (Stripe's clock)."""
        params: dict[str, Any] = {"limit": 100}
        for name, value in (("source", source), ("payout", payout), ("type", type)):
            if value:
                params[name] = value
        if created is not None:
            start, end = created
            params["created"] = {"gte": int(start), "lt": int(end)}
        try:
            page = self.client.v1.balance_transactions.list(params=params, options=_as(account))
            return [BalanceTxn.of(obj, account) for obj in page.auto_paging_iter()]
        except stripe.StripeError as error:
            raise _read_error(error, f"list balance transactions of {account or 'the platform'}") from error

    def find_balance_transaction(self, balance_transaction_id: str, *, account: str | None = None
                                 ) -> BalanceTxn | None:
        """One balance transaction of the platform or of a connected account; None when Stripe has
        no such transaction there (404)."""
        try:
            obj = self.client.v1.balance_transactions.retrieve(balance_transaction_id, options=_as(account))
        except stripe.StripeError as error:
            if getattr(error, "http_status", None) == 404:
                return None
            raise _read_error(error, f"retrieve {balance_transaction_id}") from error
        return BalanceTxn.of(obj, account)
