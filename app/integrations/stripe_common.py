"""What every part of the Stripe gateway shares: its two exceptions, how an SDK error is read, and a
balance transaction (``BalanceTxn``: a charge's, a refund's, one listed or read for the ledger)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe


class GatewayError(Exception):
    """Stripe could not be reached or refused the request; nothing is known to have happened."""


class GatewayUnavailable(GatewayError):
    pass


def _id_of(value: Any) -> str | None:
    return value.get("id") if isinstance(value, dict) else value


def _transient(error: Exception) -> bool:
    if isinstance(error, stripe.APIConnectionError):
        return True
    status = getattr(error, "http_status", None)
    return isinstance(error, stripe.StripeError) and (status is None or status >= 500)


def _describe(error: stripe.StripeError) -> str:
    body = getattr(error, "error", None)
    code = getattr(body, "code", None) if body else None
    return f"{error.__class__.__name__}: {code or getattr(error, 'user_message', '') or ''}"


def _code(error: stripe.StripeError) -> str | None:
    """Stripe's error code (``charge_disputed``, ``balance_insufficient``, ...), if any."""
    body = getattr(error, "error", None)
    return getattr(body, "code", None) if body else None


def _data(obj: Any) -> dict:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _as(account: str | None, **options) -> dict:
    """Request options, read or made as the connected ``account`` (the ``Stripe-Account`` header) when set."""
    return {**options, **({"stripe_account": account} if account else {})}


@dataclass(frozen=True)
class BalanceTxn:
    """One Stripe balance transaction. ``account``: None for the platform's, else the connected account
    it belongs to. ``source``: the id of what made it (ch_, re_, tr_, py_, pyr_, po_, du_...)."""
    id: str
    type: str
    amount: int
    fee: int
    net: int
    source: str | None
    available_on: int | None
    status: str | None
    created: int | None
    currency: str = "usd"
    account: str | None = None
    reporting_category: str | None = None

    @classmethod
    def of(cls, obj: Any, account: str | None = None) -> "BalanceTxn":
        d = _data(obj)
        return cls(id=d["id"], type=d.get("type") or "", amount=int(d.get("amount") or 0), fee=int(d.get("fee") or 0),
                   net=int(d.get("net") or 0), source=_id_of(d.get("source")), available_on=d.get("available_on"),
                   status=d.get("status"), created=d.get("created"), currency=(d.get("currency") or "usd").lower(),
                   account=account, reporting_category=d.get("reporting_category"))
