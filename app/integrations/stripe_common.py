"""What every part of the Stripe gateway shares: its two exceptions and how an SDK error is read."""
from __future__ import annotations

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
