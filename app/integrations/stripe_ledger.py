"""The Stripe gateway's part for issue 16: balance transactions (the platform's and a connected account's) for the
ledger's daily reconciliation (a refund's balance transactions: MoneyMixin.retrieve_refund_money).

Mixed into ``StripeGateway`` (stripe_gateway.py): ``self.client`` is the SDK's StripeClient and
``self._post(call, key, reconcile=...)`` the retry discipline (idempotency key, reconcile after a
transient failure, then the next key). Answers come back as small plain objects, never SDK types.

Everything here only reads. A connected account's transactions are read with ``Stripe-Account``
(``options={"stripe_account": acct}``); Stripe answers 403 ``account_invalid`` for an account the
platform cannot read (a GatewayError, not a transient failure).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe  # noqa: F401

from app.integrations.stripe_common import (GatewayError, GatewayUnavailable, _code, _data,  # noqa: F401
                                            _describe, _id_of, _transient)


@dataclass(frozen=True)
class BalanceRecord:
    """One Stripe balance transaction. ``account``: None for the platform's, else the connected account
    it belongs to. ``source``: the id of what made it (ch_, re_, tr_, py_, pyr_, po_, du_...)."""
    id: str
    type: str
    reporting_category: str | None
    amount: int
    fee: int
    net: int
    currency: str
    source: str | None
    created: int
    available_on: int | None
    status: str | None
    account: str | None = None

    @classmethod
    def of(cls, obj: Any, account: str | None = None) -> "BalanceRecord":
        data = _data(obj)
        return cls(id=data["id"], type=data.get("type") or "", reporting_category=data.get("reporting_category"),
                   amount=int(data.get("amount") or 0), fee=int(data.get("fee") or 0),
                   net=int(data.get("net") or 0), currency=(data.get("currency") or "usd").lower(),
                   source=_id_of(data.get("source")), created=int(data.get("created") or 0),
                   available_on=data.get("available_on"), status=data.get("status"), account=account)


def _options(account: str | None) -> dict:
    return {"stripe_account": account} if account else {}


def _read_error(error: stripe.StripeError, what: str) -> GatewayError:
    if _transient(error):
        return GatewayUnavailable(f"Stripe could not be reached ({what}: {error.__class__.__name__})")
    return GatewayError(_describe(error))


class LedgerMixin:
    def list_balance_transactions_created(self, start: int, end: int, *, account: str | None = None
                                          ) -> list[BalanceRecord]:
        """The balance transactions created in ``[start, end)`` (Unix seconds, Stripe's clock) of the
        platform (``account`` None) or of a connected account, every page, newest first."""
        params = {"created": {"gte": int(start), "lt": int(end)}, "limit": 100}
        try:
            page = self.client.v1.balance_transactions.list(params=params, options=_options(account))
            return [BalanceRecord.of(obj, account) for obj in page.auto_paging_iter()]
        except stripe.StripeError as error:
            raise _read_error(error, f"list balance transactions of {account or 'the platform'}") from error

    def find_balance_transaction(self, balance_transaction_id: str, *, account: str | None = None
                                 ) -> BalanceRecord | None:
        """One balance transaction of the platform or of a connected account; None when Stripe has
        no such transaction there (404)."""
        try:
            obj = self.client.v1.balance_transactions.retrieve(balance_transaction_id, options=_options(account))
        except stripe.StripeError as error:
            if getattr(error, "http_status", None) == 404:
                return None
            raise _read_error(error, f"retrieve {balance_transaction_id}") from error
        return BalanceRecord.of(obj, account)
