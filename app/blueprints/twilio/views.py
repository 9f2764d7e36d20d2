"""Twilio's webhooks: inbound SMS (STOP / START / HELP) and delivery status callbacks.

Twilio cannot sign in: its request signature (X-Twilio-Signature, HMAC with
our auth token over the public URL and the form parameters) is the
credential. Without TWILIO_AUTH_TOKEN there is no Twilio here: 404.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, request

from app.access import PUBLIC, access
from app.blueprints.twilio import callbacks
from app.extensions import csrf, db
from app.services import accounts, phone
from app.services.clinic import current_clinic
from app.web import now

bp = Blueprint("twilio", __name__)


def _verified_or_abort() -> None:
    settings = current_app.config["SETTINGS"]
    if not settings.TWILIO_AUTH_TOKEN:
        abort(404)
    url = settings.PUBLIC_BASE_URL.rstrip("/") + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    if not phone.twilio_signed(settings.TWILIO_AUTH_TOKEN, url, request.form,
                           request.headers.get("X-Twilio-Signature")):
        current_app.logger.warning("rejected a Twilio request to %s: bad signature", request.path)
        abort(403)


def _twiml(text: str | None = None):
    return current_app.response_class(phone.sms_reply(text), mimetype="application/xml")


def _number(raw: str) -> str:
    try:
        return accounts.normalize_phone(raw)
    except ValueError:
        return (raw or "").strip()


@bp.post("/twilio/inbound")
@access(PUBLIC, phi=False)          # Twilio's signature is the credential
@csrf.exempt
def inbound():
    _verified_or_abort()
    sender = _number(request.form.get("From", ""))
    word = callbacks.keyword(request.form.get("Body"))
    clinic = current_clinic(db.session)
    call = f" or call {clinic.phone}" if clinic.phone else ""
    if word in callbacks.STOP_WORDS and sender:
        phone.set_opt_out(db.session, phone=sender, opted_out=True, actor=callbacks.TWILIO)
        db.session.commit()
        # Twilio's own opt-out handling confirms STOP to the sender; a reply of ours would be refused.
        return _twiml()
    if word in callbacks.START_WORDS and sender:
        phone.set_opt_out(db.session, phone=sender, opted_out=False, actor=callbacks.TWILIO)
        db.session.commit()
        return _twiml(f"{clinic.name}: you will get text messages from us again. Reply STOP to stop them.")
    db.session.rollback()
    if word in callbacks.HELP_WORDS:
        return _twiml(f"{clinic.name}: for help sign in to the portal{call}. Reply STOP to stop texts.")
    return _twiml(f"{clinic.name}: this number does not read replies. Sign in to the portal{call}.")


@bp.post("/twilio/status")
@access(PUBLIC, phi=False)          # Twilio's signature is the credential
@csrf.exempt
def status():
    _verified_or_abort()
    sid, state = request.form.get("MessageSid"), request.form.get("MessageStatus")
    if not sid or not state:
        return {"error": "MessageSid and MessageStatus are required"}, 400
    callbacks.apply_status(db.session, message_sid=sid, status=state,
                           error_code=request.form.get("ErrorCode") or None, now=now())
    db.session.commit()
    return "", 204
