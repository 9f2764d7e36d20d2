"""How services reach Stripe: the gateway factory and the domain errors it becomes.

Views and jobs never import ``app.integrations``: they call services, and the
services get the one ``StripeGateway`` of the app from ``gateway()`` (built
from the app's settings once, kept in ``app.extensions``). A gateway failure
crosses the service boundary as a domain error:

- ``PaymentServiceUnavailable``: Stripe could not be reached (timeouts, 5xx);
  nothing is known to have happened, the caller may say "try again" and the
  sweep finishes stored work;
- ``PaymentServiceError``: Stripe refused the request.

Service entry points that views or jobs call are wrapped with
``domain_errors``; inside the services the gateway's own exceptions are
still seen (the refund and settle steps decide on them).
"""
from __future__ import annotations

from functools import wraps

from flask import current_app

from app.integrations.stripe_gateway import GatewayError, GatewayUnavailable, StripeGateway
from app.services import DomainError

__all__ = ["PaymentServiceError", "PaymentServiceUnavailable", "domain_errors", "gateway"]


class PaymentServiceError(DomainError):
    """Stripe refused the request, or could not be reached."""


class PaymentServiceUnavailable(PaymentServiceError):
    """Stripe could not be reached; nothing is known to have happened."""


def gateway() -> StripeGateway:
    """The app's Stripe gateway (one per app, built from its settings)."""
    app = current_app
    found = app.extensions.get("stripe_gateway")
    if found is None:
        found = app.extensions["stripe_gateway"] = StripeGateway.from_settings(app.config["SETTINGS"])
    return found


def settings():
    return current_app.config["SETTINGS"]


def domain_errors(fn):
    """Turn the gateway's exceptions into domain errors at a service entry point."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GatewayUnavailable as error:
            raise PaymentServiceUnavailable(str(error)) from error
        except GatewayError as error:
            raise PaymentServiceError(str(error)) from error
    return wrapper
