"""Stripe's webhook signature (scheme ``v1``), checked on the raw body before anything is parsed.

``Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>[,v1=...][,v0=...]``:
the body is Stripe's if one ``v1`` matches (several appear while a secret is rolled) and ``t`` is
no older than ``TOLERANCE`` seconds (a replayed old delivery is refused). This is what
``stripe.WebhookSignature.verify_header`` checks (the SDK's ``construct_event`` then also builds
StripeObjects the ingest never needs): one HMAC and a constant-time comparison, nothing else.
Stripe's protocol, so it lives with the other Stripe code; views reach it through
``settlement.check_signature``.
"""
from __future__ import annotations

import hashlib
import hmac
import time

TOLERANCE = 300          # seconds, as the SDK's default


class InvalidSignature(ValueError):
    """Not signed with our webhook secret, malformed, or older than the tolerance."""


def verify(payload: bytes, header: str | None, secret: str, *, tolerance: int = TOLERANCE,
           now: float | None = None) -> None:
    """Return if ``header`` signs ``payload`` with ``secret`` within ``tolerance``; raise otherwise."""
    if not header:
        raise InvalidSignature("missing Stripe-Signature")
    if not secret:
        raise InvalidSignature("no webhook secret")
    timestamp = None
    signatures = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit() or len(timestamp) > 12:
        raise InvalidSignature("no timestamp in Stripe-Signature")
    if not signatures:
        raise InvalidSignature("no v1 signature in Stripe-Signature")
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + payload, hashlib.sha256).hexdigest().encode()
    # bytes, not str: compare_digest refuses a str that is not ASCII (a header may carry anything)
    if not any(hmac.compare_digest(expected, candidate.encode("utf-8", "replace")) for candidate in signatures):
        raise InvalidSignature("bad signature")
    if tolerance and int(timestamp) < (time.time() if now is None else now) - tolerance:
        raise InvalidSignature("signature too old")
