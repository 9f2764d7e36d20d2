"""POST /webhooks/stripe: verify, store by id, ask for processing, answer fast.

The acknowledgement is the least that keeps the guarantees: the signature is one HMAC over the raw
body (``settlement.check_signature``, Stripe's scheme in ``app/integrations/stripe_signature.py``;
no StripeObjects are built), the body is parsed once, and the event is
stored with that body by one ``INSERT .. ON CONFLICT DO NOTHING`` in autocommit
(``settlement.record_event``): a new event is durable before the 200, a duplicate delivery writes
nothing and is answered 200 too. Processing is asked for after the commit and runs in the worker
(``app.jobs.payments``); the sweep processes whatever stored event that hand-off missed, so the
database alone can finish the work. A bad signature is 400, a body that is not an event 400 (never
a 5xx), a database that is away 503 (``app/blueprints/errors.py``; Stripe retries).
"""
import json

from flask import Blueprint, current_app, request

from app.access import PUBLIC, access
from app.extensions import csrf, db, limiter
from app.services import settlement

bp = Blueprint("webhooks", __name__)
# Stripe's retries are its own rate limit, and its signature the credential: no rate limit. The
# request filter answers before Flask-Limiter resolves any limit (``exempt`` alone is consulted
# only after that work, before and after each request).
limiter.exempt(bp)


@limiter.request_filter
def _not_limited() -> bool:
    return request.blueprint == "webhooks"


_JSON = {"Content-Type": "application/json"}
# The answers are constant: built once, not by jsonify per delivery.
RECEIVED = b'{"received":true}\n'
DUPLICATE = b'{"duplicate":true,"received":true}\n'
INVALID_SIGNATURE = b'{"error":"invalid signature"}\n'
NOT_AN_EVENT = b'{"error":"not an event"}\n'
NOT_CONFIGURED = b'{"error":"webhooks are not configured"}\n'


@bp.post("/webhooks/stripe")
@access(PUBLIC, phi=False)          # Stripe cannot sign in: its signature is the credential
@csrf.exempt
def stripe_webhook():
    secret = current_app.config["SETTINGS"].STRIPE_WEBHOOK_SECRET
    if not secret:
        return NOT_CONFIGURED, 503, _JSON
    body = request.get_data(cache=False)
    try:
        settlement.check_signature(body, request.headers.get("Stripe-Signature"), secret)
    except settlement.InvalidSignature as error:
        current_app.logger.warning("rejected a Stripe webhook: %s", error)
        return INVALID_SIGNATURE, 400, _JSON
    try:
        event = json.loads(body)
        stored = settlement.record_event(db.session, event, body)
    except (ValueError, RecursionError, settlement.InvalidWebhook) as error:   # signed, yet no event to store
        db.session.rollback()
        current_app.logger.warning("refused a signed Stripe webhook: %s", type(error).__name__)
        return NOT_AN_EVENT, 400, _JSON
    if not stored:                            # a duplicate: nothing was written, nothing to end
        return DUPLICATE, 200, _JSON
    db.session.commit()                       # after it, the processing it asked for is handed off
    return RECEIVED, 200, _JSON
