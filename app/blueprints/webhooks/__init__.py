"""POST /webhooks/stripe: verify, store by id, enqueue processing, answer fast."""
from flask import Blueprint, current_app, request

from app.access import PUBLIC, access
from app.extensions import csrf, db
from app.services import settlement

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/stripe")
@access(PUBLIC)          # Stripe cannot sign in: its signature is the credential
@csrf.exempt
def stripe_webhook():
    secret = current_app.config["SETTINGS"].STRIPE_WEBHOOK_SECRET
    if not secret:
        return {"error": "webhooks are not configured"}, 503
    try:
        event = settlement.verify_webhook(request.get_data(), request.headers.get("Stripe-Signature"), secret)
    except settlement.InvalidWebhook as error:
        current_app.logger.warning("rejected a Stripe webhook: %s", error)
        return {"error": "invalid signature"}, 400
    if not event.get("id"):
        return {"error": "not an event"}, 400
    if settlement.record_event(db.session, event):     # asks for its processing after the commit
        db.session.commit()
        return {"received": True}, 200
    db.session.rollback()
    return {"received": True, "duplicate": True}, 200
