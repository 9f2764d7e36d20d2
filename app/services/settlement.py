"""Settlement: bring our mirror of a PaymentIntent in line with Stripe, and act on it.

This is the payment spine. Every path that learns something about a payment —
the browser's return, a one-tap saved card, the webhook, the poll, the sweep,
a released hold or a canceled booking asking for the authorization back — runs
``settle``, and nothing else changes a PaymentAttempt's status:

1. lock the attempt row; re-read the PaymentIntent from Stripe (never trusting
   the browser or a webhook's copy); check amount, currency and our ids;
   apply its status through the attempt's transition table; record a failed
   confirmation once; confirm the booking when authorized (``_lock_in``);
   store the paying card's brand, last 4 and expiry; **commit**;
2. then move the money the committed state calls for, under the row lock
   again: capture an authorized attempt whose booking is confirmed, or cancel
   the authorization of one that must not become a charge (slot lost,
   appointment canceled, hold released, or the caller asked); **commit**.

This module is the one exception to "services never commit": a Stripe call
that moves money is made only from a committed state, so its routines
(``settle``, the refund steps, the sweep's reconciliation, webhook processing)
commit at their step boundaries, and a crash between the steps leaves the
database able to finish the work (the sweep runs them again; every call
carries its idempotency key). Whoever comes second finds the work done.

Webhook events are stored by id (``record_event``, one autocommit INSERT on the
acknowledgement's path) and processed by ``process_events`` (in batches, ``settle``
once per attempt) or ``process_event`` (one), which only find the attempt and run
``settle``, and write each event's audit row.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, contains_eager, scoped_session

from app.integrations import stripe_signature
from app.integrations.stripe_gateway import Intent, StripeGateway
from app.models import Appointment, Charge, Patient, PaymentAttempt, PaymentFailure, Refund, StripeEvent
from app.models.appointment import BOOKED
from app.models.payment import BOOKING_PURPOSES, FINAL_STATUSES
from app.models.state import Ignored
from app.services import DomainError, audit, booking, refunds, signals
from app.services.audit import Actor
from app.services.gateway import domain_errors, gateway
from app.services.payments import (IntentMismatch, PaymentTimings, check_intent, decline_message, record)
from app.services.retry import retry_transient, sqlstate
from app.services.unit_of_work import request

log = logging.getLogger(__name__)
SLOT_LOST = _l("Someone else booked this time while you were paying. You have not been charged; "
               "your card's hold will be released.")
CANCELED = _l("This payment was canceled.")


@dataclass
class SyncResult:
    state: str                         # pending | requires_action | declined | confirmed | slot_lost | canceled
    message: str | None = None
    capture_ready: bool = False
    nearest: list = field(default_factory=list)
    intent: Intent | None = None       # the PaymentIntent as settle last read it from Stripe
    attempt: PaymentAttempt | None = None   # the attempt settled (as committed)


def timings() -> PaymentTimings:
    return PaymentTimings.from_settings(current_app.config["SETTINGS"])


def _now() -> datetime:
    return current_app.extensions["clock"].now()


def _locked(session: Session, attempt_id: int) -> PaymentAttempt | None:
    """The attempt with its charge and appointment, in one statement; the attempt and the appointment
    locked (FOR UPDATE), every column re-read."""
    return session.scalars(
        select(PaymentAttempt).join(PaymentAttempt.charge).join(Charge.appointment)
        .options(contains_eager(PaymentAttempt.charge).contains_eager(Charge.appointment))
        .where(PaymentAttempt.id == attempt_id)
        .with_for_update(of=[PaymentAttempt, Appointment])
        .execution_options(populate_existing=True)).first()


# -- the one routine ------------------------------------------------------------------------------

@domain_errors
def settle(session: Session, attempt_id: int, *, source: str, actor: Actor,
           cancel_reason: str | None = None) -> SyncResult:
    """Apply the intent's current state (commit), then capture or cancel as the committed state says (commit).

    ``cancel_reason``: the caller wants the authorization released (a released hold, a canceled
    booking). A late success is still applied first: it may take a free slot back, and is then
    captured rather than canceled."""
    def step_1():      # one transaction: run again whole after a deadlock / serialization failure
        attempt = _locked(session, attempt_id)
        if attempt is None:
            session.rollback()
            return None, SyncResult("pending"), None, None
        gw, now = gateway(), _now()
        result = _apply(session, gw, attempt, now=now, actor=actor, timings=timings(), source=source,
                        cancel_requested=cancel_reason is not None)
        step, reason = _next_step(attempt, result, cancel_reason)
        session.commit()
        result.attempt = attempt
        return gw, result, step, reason

    gw, result, step, reason = retry_transient(session, step_1)
    if step is None:
        return _after_settle(session, result, actor)
    attempt = _locked(session, attempt_id)
    if step == "capture":
        _capture(session, gw, attempt, now=_now(), actor=actor)
    else:
        _cancel(session, gw, attempt, now=_now(), actor=actor, reason=reason)
    session.commit()
    if step == "cancel" and attempt.status == "canceled" and result.state not in ("slot_lost", "canceled"):
        result = SyncResult("canceled", message=CANCELED, intent=result.intent)
    result.attempt = attempt
    return _after_settle(session, result, actor)


def _after_settle(session: Session, result: SyncResult, actor: Actor) -> SyncResult:
    """A visit charge's attempt moves its collections case (paid, failed, an instalment) from the
    committed attempt, whichever path settled it (the charge job, a retry, the browser, the webhook,
    the sweep). ``after_settle`` locks the case and commits."""
    attempt = result.attempt
    if attempt is not None and not attempt.charge.follows_booking:
        from app.services import visit_charges

        visit_charges.after_settle(session, attempt.id, actor=actor, intent=result.intent)
    return result


def _next_step(attempt: PaymentAttempt, result: SyncResult, cancel_reason: str | None
               ) -> tuple[str | None, str | None]:
    if result.capture_ready and attempt.status == "requires_capture":
        return "capture", None
    if attempt.is_final:
        return None, None
    if attempt.outcome is not None:
        return "cancel", "slot no longer held"
    if cancel_reason is not None:
        return "cancel", cancel_reason
    return None, None


def _apply(session: Session, gw: StripeGateway, attempt: PaymentAttempt, *, now: datetime, actor: Actor,
           timings: PaymentTimings, source: str, cancel_requested: bool) -> SyncResult:
    """Re-read the PaymentIntent and apply its current status. The caller holds the attempt's and the
    appointment's row locks (``_locked``)."""
    appointment = attempt.charge.appointment
    if not attempt.stripe_payment_intent_id:
        return SyncResult("pending")
    intent = gw.retrieve_intent(attempt.stripe_payment_intent_id)
    result = _apply_intent(session, attempt, appointment, intent, now=now, actor=actor, timings=timings,
                           source=source, cancel_requested=cancel_requested)
    result.intent = intent
    if result.state == "confirmed" and appointment.payment_timing == "hybrid" and attempt.charge.follows_booking:
        from app.services import hybrid_deposit   # the card kept for the balance, the consent written once

        hybrid_deposit.after_deposit(session, attempt, appointment, intent, actor=actor, now=now)
    return result


def _apply_intent(session: Session, attempt: PaymentAttempt, appointment: Appointment, intent: Intent, *,
                  now: datetime, actor: Actor, timings: PaymentTimings, source: str,
                  cancel_requested: bool) -> SyncResult:
    try:
        check_intent(intent, attempt, appointment)
    except IntentMismatch as error:
        record(session, attempt, appointment, actor=actor, action="payment.mismatch", outcome="failure",
               reason=str(error), details={"source": source})
        raise

    if intent.status == "succeeded":              # captured, perhaps by a step a crash interrupted
        _mark_captured(session, attempt, appointment, intent, now=now, actor=actor)
        return SyncResult("confirmed")
    if attempt.is_final:                           # a final state never changes back
        return _final_result(attempt)

    if intent.status == "canceled":
        # Before the mirror below: _mark_canceled records the time, the reason, the charge and the audit
        # row only when it is the one that moves the attempt to canceled (a cancel our crash never recorded).
        _mark_canceled(session, attempt, appointment, now=now, actor=actor, reason="canceled at Stripe")
        return SyncResult("canceled", message=CANCELED)

    previous = attempt.status
    message = None
    if intent.last_error is not None and intent.status == "requires_payment_method":
        message = decline_message(intent.last_error.code, intent.last_error.decline_code)
        _record_failure(session, attempt, appointment, intent, now=now, actor=actor, source=source)
    attempt.mirror(intent.status)
    _keep_card(attempt, intent)
    session.flush()

    if intent.status in ("requires_action", "processing"):
        if previous != intent.status and intent.status == "requires_action":
            record(session, attempt, appointment, actor=actor, action="payment.requires_action",
                   details={"source": source})
        if not cancel_requested:
            _extend_hold(session, appointment, now=now, timings=timings, actor=actor)
        return SyncResult("requires_action" if intent.status == "requires_action" else "pending")

    if intent.status == "requires_capture":
        if previous != "requires_capture":
            record(session, attempt, appointment, actor=actor, action="payment.succeeded",
                   details={"source": source, "stage": "authorized"})
            _charge(attempt.charge, "authorize")
        if attempt.outcome is not None:            # already lost its slot: only the cancel remains
            return _final_result(attempt)
        return _lock_in(session, attempt, appointment, now=now, actor=actor)

    if message:
        return SyncResult("declined", message=message)
    return SyncResult("pending")


def _charge(charge: Charge, action: str) -> None:
    """Move our charge (its table refuses a backwards move); a repeat is nothing to do."""
    try:
        charge.transition(action)
    except Ignored:
        pass


def _record_failure(session, attempt, appointment, intent: Intent, *, now, actor, source) -> None:
    """One PaymentFailure (and one audit row, one declined event) per failed confirmation."""
    error = intent.last_error
    key = error.charge or f"{error.code}:{error.decline_code}:{error.payment_method}"
    exists = session.scalar(select(PaymentFailure.id).where(PaymentFailure.attempt_id == attempt.id,
                                                            PaymentFailure.dedupe_key == key))
    if exists is not None:
        return
    session.add(PaymentFailure(attempt_id=attempt.id, dedupe_key=key, code=error.code,
                               decline_code=error.decline_code, stripe_charge_id=error.charge, occurred_at=now))
    record(session, attempt, appointment, actor=actor, action="payment.declined", outcome="failure",
           details={"code": error.code, "decline_code": error.decline_code, "source": source})
    if attempt.charge.follows_booking:     # a visit charge's failure: visit_charges.after_settle tells the patient
        signals.emit(session, signals.PAYMENT_DECLINED, appointment, key)


def _keep_card(attempt: PaymentAttempt, intent: Intent) -> None:
    """The card that paid, kept on our row so receipts and dashboards never call Stripe."""
    if intent.status in ("requires_capture", "succeeded") and intent.card_last4:
        attempt.card_brand = intent.card_brand
        attempt.card_last4 = intent.card_last4
        attempt.card_exp_month = intent.card_exp_month
        attempt.card_exp_year = intent.card_exp_year


def _final_result(attempt: PaymentAttempt) -> SyncResult:
    if attempt.status == "succeeded":
        return SyncResult("confirmed")
    if attempt.outcome == "slot_lost":
        return SyncResult("slot_lost", message=SLOT_LOST)
    return SyncResult("canceled", message=CANCELED)


def _extend_hold(session: Session, appointment: Appointment, *, now: datetime, timings: PaymentTimings,
                 actor: Actor) -> None:
    """Once, while 3-D Secure or processing is under way; never past start - RELEASE_BEFORE_START."""
    if appointment.status != "held" or appointment.hold_extended:
        return
    limit = appointment.starts_at - timings.release_before_start
    new_expiry = min(appointment.hold_expires_at + timings.hold_extension, limit)
    appointment.hold_extended = True
    if new_expiry <= appointment.hold_expires_at:
        return
    old = appointment.hold_expires_at
    appointment.hold_expires_at = new_expiry
    audit.record(session, actor=actor, action="hold.extended", patient_id=appointment.patient_id,
                 appointment_id=appointment.id,
                 details={"from": old.isoformat(), "to": new_expiry.isoformat()})
    request(session, "expire_hold", appointment.id, new_expiry)


def _lock_in(session: Session, attempt: PaymentAttempt, appointment: Appointment, *, now: datetime,
             actor: Actor) -> SyncResult:
    """Authorized: confirm the booking (taking the slot again if it was released), or give the money back."""
    if appointment.status in BOOKED:
        return SyncResult("confirmed", capture_ready=True)
    if appointment.status in ("held", "released"):
        try:
            booking.confirm(session, appointment, actor=actor, now=now,
                            reason=f"deposit authorized (attempt {attempt.id})")
        except booking.SlotTaken as taken:
            attempt.outcome = "slot_lost"
            record(session, attempt, appointment, actor=actor, action="payment.slot_lost", outcome="failure",
                   reason="the slot was booked by someone else before the payment succeeded")
            return SyncResult("slot_lost", nearest=taken.nearest, message=SLOT_LOST)
        return SyncResult("confirmed", capture_ready=True)
    # canceled / no_show: never capture for a slot the patient does not have.
    attempt.outcome = "appointment_" + appointment.status
    return SyncResult("canceled", message=_l("This appointment was canceled; you have not been charged."))


# -- money moves, from a committed state ----------------------------------------------------------

def _capture(session: Session, gw: StripeGateway, attempt: PaymentAttempt, *, now: datetime,
             actor: Actor) -> None:
    """Capture an authorized attempt whose booking is confirmed (else release it). Row lock held."""
    if attempt.status != "requires_capture":
        return
    appointment = session.get(Appointment, attempt.charge.appointment_id)
    if appointment.status not in BOOKED:
        _cancel(session, gw, attempt, now=now, actor=actor, reason="slot no longer held")
        return
    intent = gw.capture(attempt.stripe_payment_intent_id, key=attempt.key("capture"))
    _mark_captured(session, attempt, appointment, intent, now=now, actor=actor)


def _cancel(session: Session, gw: StripeGateway, attempt: PaymentAttempt, *, now: datetime, actor: Actor,
            reason: str) -> None:
    """Release an open attempt's authorization (cancel its intent). Row lock held."""
    if attempt.is_final:
        return
    appointment = session.get(Appointment, attempt.charge.appointment_id)
    if attempt.stripe_payment_intent_id:
        intent = gw.cancel(attempt.stripe_payment_intent_id, key=attempt.key("cancel"), reason="abandoned")
        if intent.status == "succeeded":        # captured after all: keep the truth
            _mark_captured(session, attempt, appointment, intent, now=now, actor=actor)
            return
    _mark_canceled(session, attempt, appointment, now=now, actor=actor, reason=reason)


def _mark_captured(session, attempt: PaymentAttempt, appointment: Appointment, intent: Intent, *, now,
                   actor) -> None:
    """Record the capture once — even when the attempt already mirrors ``succeeded`` (a crash after
    Stripe captured): the money on the rows and the ``payment.captured`` row come from here."""
    if attempt.status == "canceled":             # Stripe never captures a canceled intent
        log.error("attempt %s: captured at Stripe but canceled here", attempt.id)
        return
    attempt.mirror("succeeded")
    _keep_card(attempt, intent)
    if attempt.captured_at is not None:
        return
    attempt.amount_captured_cents = intent.amount_received
    attempt.captured_at = now
    _charge(attempt.charge, "capture")
    # Added, not set: a payment plan's instalments are several captured attempts of one visit charge
    # (a deposit has one captured attempt; ``captured_at`` above makes this run once per attempt).
    attempt.charge.amount_captured_cents += intent.amount_received
    session.flush()
    record(session, attempt, appointment, actor=actor, action="payment.captured",
           details={"amount_received": intent.amount_received})


def _mark_canceled(session, attempt: PaymentAttempt, appointment: Appointment, *, now, actor, reason) -> None:
    if not attempt.mirror("canceled"):
        return
    attempt.canceled_at = now
    attempt.cancellation_reason = reason[:64]
    if attempt.charge.can("cancel"):
        _charge(attempt.charge, "cancel")
    session.flush()
    record(session, attempt, appointment, actor=actor, action="payment.canceled", reason=reason)


# -- webhooks and the sweep -----------------------------------------------------------------------

class InvalidSignature(DomainError):
    """Not signed by Stripe with our webhook secret, malformed, or too old."""


class InvalidWebhook(DomainError):
    """Signed, yet not an event we can store (wrong shapes, too long, not storable)."""


def check_signature(payload: bytes, header: str | None, secret: str) -> None:
    """Return if Stripe signed ``payload`` (the raw body); ``InvalidSignature`` otherwise."""
    try:
        stripe_signature.verify(payload, header, secret)
    except stripe_signature.InvalidSignature as error:
        raise InvalidSignature(str(error)) from error


_INSERT_EVENT = text(
    "INSERT INTO stripe_events (id, type, created, object_id, payload, attempts) "
    "VALUES (:id, :type, :created, :object_id, CAST(:payload AS jsonb), 0) "
    "ON CONFLICT (id) DO NOTHING RETURNING id")
_MAX_BIGINT = 2**63 - 1


def _event_fields(event) -> dict:
    """The columns of a stored event, or ``InvalidWebhook`` for anything Stripe would not send."""
    if not isinstance(event, dict):
        raise InvalidWebhook("not an event")
    event_id, kind, created = event.get("id"), event.get("type", ""), event.get("created") or 0
    obj = event.get("data")
    obj = obj.get("object") if isinstance(obj, dict) else None
    object_id = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 255 or not isinstance(kind, str) \
            or len(kind) > 64 or isinstance(created, bool) or not isinstance(created, int) \
            or not 0 <= created <= _MAX_BIGINT or (object_id is not None and (
                not isinstance(object_id, str) or len(object_id) > 255)):
        raise InvalidWebhook("not an event")
    return {"id": event_id, "type": kind, "created": created, "object_id": object_id}


def record_event(session: Session, event: dict, raw: bytes | str | None = None) -> bool:
    """Store a verified webhook event by its id with its JSON (``raw``: the body Stripe signed, stored
    as it came; else ``event`` serialized); False if it was already stored (a duplicate, unchanged).
    ``InvalidWebhook`` for an event that is not one (wrong shapes, too long, not storable).

    One statement (``INSERT .. ON CONFLICT DO NOTHING``). On a session with no transaction open it
    runs in autocommit on a connection of its own from the session's pool, leaving the session
    untouched: the row is durable when the statement returns, and the ack costs that one round trip
    (no BEGIN, no COMMIT; a duplicate writes nothing, and needs no rollback). Inside an open
    transaction it joins it, and the caller's commit stores it. For a new event the caller then
    calls ``commit()``: its processing is asked for after it (``process_stripe_event``). The event's audit row
    (``stripe.event_received``, dated when it was received) is written by its processing
    (``process_event`` / ``process_events``), off the acknowledgement's path."""
    params = _event_fields(event)
    if raw is None:
        raw = json.dumps(event)
    elif isinstance(raw, bytes):
        raw = raw.decode("utf-8")      # the caller parsed it as JSON already: it is UTF-8
    params["payload"] = raw
    try:
        if _in_transaction(session):
            inserted = session.execute(_INSERT_EVENT, params).first()
        else:
            with session.get_bind().connect() as conn:
                inserted = conn.execution_options(isolation_level="AUTOCOMMIT").execute(_INSERT_EVENT, params).first()
    except DataError as error:         # e.g. \u0000 in a string: jsonb refuses it; never a 500
        raise InvalidWebhook(f"event not storable ({sqlstate(error) or type(error).__name__})") from error
    if inserted is None:
        return False
    request(session, "process_stripe_event", params["id"])
    return True


def _in_transaction(session) -> bool:
    if isinstance(session, scoped_session):      # Flask-SQLAlchemy's db.session: the session it holds
        session = session()
    return session.in_transaction()


def _update_events():
    """UPDATE stripe_events, without syncing loaded objects (none is used after it)."""
    return update(StripeEvent).execution_options(synchronize_session=False)


def _record_received(session: Session, event_id: str, kind: str, object_id: str | None,
                     received_at: datetime) -> None:
    audit.record(session, actor=Actor.system("webhook"), action="stripe.event_received",
                 stripe_object_id=object_id, details={"event_id": event_id, "type": kind}, at=received_at)


def process_event(session: Session, event_id: str) -> str:
    """Apply one stored webhook event: find its attempt and settle it (the object is re-read, so
    order and duplicates do not matter); then mark the event processed. Its first processing
    writes its ``stripe.event_received`` audit row."""
    event = session.get(StripeEvent, event_id, with_for_update=True, populate_existing=True)
    if event is None or event.processed_at is not None:
        session.rollback()
        return "done"
    attempt_id = None
    if event.type.startswith("payment_intent.") and event.object_id:
        attempt_id = session.scalar(select(PaymentAttempt.id).where(
            PaymentAttempt.stripe_payment_intent_id == event.object_id))
    from app.services import card_setup        # a SetupIntent we mirror (post-visit booking)
    setup_id = card_setup.setup_for_intent(session, event.object_id) \
        if event.type.startswith("setup_intent.") and event.object_id else None
    from app.services import payout_accounts   # a provider's Connect account (issue 16)
    account_id = payout_accounts.account_for_stripe_id(session, event.object_id) \
        if event.type == "account.updated" else None
    created = event.created
    if event.attempts == 0:
        _record_received(session, event.id, event.type, event.object_id, event.received_at)
    event.attempts += 1
    handler = _money_handler(event.type) if event.object_id else None
    if handler is not None:             # disputes, payouts (issue 16): the handler re-reads the object
        payload = dict(event.payload or {})
        session.commit()
        state = handler(session, event_id=event_id, event_type=event.type, object_id=event.object_id,
                        created=created, account=payload.get("account"), actor=Actor.system("webhook"))
        session.execute(_update_events().where(StripeEvent.id == event_id, StripeEvent.processed_at.is_(None))
                        .values(processed_at=_now()))
        session.commit()
        return state or "applied"
    if attempt_id is None and setup_id is None and account_id is None:   # nothing of ours: done in this one transaction
        event.processed_at = _now()
        session.commit()
        return "ignored"
    session.commit()
    if account_id is not None:
        applied = payout_accounts.apply_event(session, account_id, event_created=created,
                                              actor=Actor.system("webhook"), now=_now())
        session.execute(_update_events().where(StripeEvent.id == event_id, StripeEvent.processed_at.is_(None))
                        .values(processed_at=_now()))
        session.commit()
        return "applied" if applied else "unchanged"
    if setup_id is not None:
        state = card_setup.settle_setup(session, setup_id, source=f"webhook:{event.type}",
                                        actor=Actor.system("webhook")).state
    else:
        state = settle(session, attempt_id, source=f"webhook:{event.type}", actor=Actor.system("webhook")).state
    session.execute(_update_events().where(StripeEvent.id == event_id, StripeEvent.processed_at.is_(None))
                    .values(processed_at=_now()))
    session.commit()
    return state


def _money_handler(event_type: str):
    """The service that applies an event about a dispute, a connected account's payout or a refund that
    settled or failed later (issue 16):
    ``handler(session, *, event_id, event_type, object_id, created, account, actor) -> str`` re-reads
    the object from Stripe and applies it once, in order (Stripe's ``created``); it does not commit
    (``process_event`` commits it with the event marked processed)."""
    if event_type.startswith("charge.dispute."):
        from app.services import disputes
        return disputes.apply_event
    if event_type.startswith("payout."):
        from app.services import payouts
        return payouts.apply_payout_event
    if event_type in ("refund.updated", "refund.failed", "charge.refund.updated"):
        from app.services import payouts       # a refund settling or failing later (its share, the ledger)
        return payouts.apply_refund_event
    return None


def process_events(session: Session, *, limit: int = 200, skip: Collection[str] = ()) -> tuple[int, list[str]]:
    """Process up to ``limit`` stored, unprocessed events (but those in ``skip``), oldest first; returns
    how many were processed and the ids of those that failed.

    Events whose row another processor holds are skipped (``SKIP LOCKED``). Those with no attempt of
    ours (another object, an intent we do not mirror) are marked processed together in one
    transaction with their audit rows; the rest are counted as tried (and audited) in one
    transaction, then ``settle`` runs once per attempt however many of its events are in the batch,
    and each attempt's events are marked processed after it. A ``settle`` that fails leaves its
    events unprocessed (for the next pass or the sweep) with the error's class in ``last_error``."""
    rows = session.execute(
        select(StripeEvent.id, StripeEvent.type, StripeEvent.object_id, StripeEvent.received_at,
               StripeEvent.attempts, PaymentAttempt.id)
        .outerjoin(PaymentAttempt, (PaymentAttempt.stripe_payment_intent_id == StripeEvent.object_id)
                   & StripeEvent.type.startswith("payment_intent."))
        .where(StripeEvent.processed_at.is_(None), *([StripeEvent.id.not_in(skip)] if skip else []))
        .order_by(StripeEvent.received_at).limit(limit)
        .with_for_update(of=StripeEvent, skip_locked=True)).all()
    if not rows:
        session.rollback()
        return 0, []
    from app.services import card_setup        # SetupIntents we mirror: one by one, below (process_event)
    from app.services import payout_accounts    # providers' Connect accounts: one by one too
    setup_events = card_setup.mirrored_setup_events(session, rows) + payout_accounts.mirrored_account_events(session, rows)
    setup_events += [row[0] for row in rows if row[2] and _money_handler(row[1]) is not None]
    rows = [row for row in rows if row[0] not in setup_events]
    for event_id, kind, object_id, received_at, attempts, _ in rows:
        if attempts == 0:
            _record_received(session, event_id, kind, object_id, received_at)
    now = _now()
    alone = [row[0] for row in rows if row[5] is None]
    if alone:
        session.execute(_update_events().where(StripeEvent.id.in_(alone))
                        .values(processed_at=now, attempts=StripeEvent.attempts + 1))
    by_attempt: dict[int, list[str]] = {}
    for event_id, kind, *_, attempt_id in rows:
        if attempt_id is not None:
            by_attempt.setdefault(attempt_id, []).append(event_id)
    if by_attempt:
        session.execute(_update_events().where(StripeEvent.id.in_([i for ids in by_attempt.values() for i in ids]))
                        .values(attempts=StripeEvent.attempts + 1))
    session.commit()
    kinds = {row[0]: row[1] for row in rows}
    failed: list[str] = []
    for attempt_id, event_ids in by_attempt.items():
        try:
            settle(session, attempt_id, source=f"webhook:{kinds[event_ids[-1]]}", actor=Actor.system("webhook"))
            values = {"processed_at": _now()}
        except Exception as error:
            session.rollback()
            log.exception("settling attempt %s for stored Stripe events failed", attempt_id)
            failed += event_ids
            values = {"last_error": type(error).__name__}
        session.execute(_update_events().where(StripeEvent.id.in_(event_ids), StripeEvent.processed_at.is_(None))
                        .values(**values))
        session.commit()
    session.commit()                            # the setup events' row locks go before process_event takes them
    for event_id in setup_events:
        try:
            process_event(session, event_id)
        except Exception as error:
            session.rollback()
            log.exception("processing stored Stripe event %s (a card setup or payout account) failed", event_id)
            failed.append(event_id)
            session.execute(_update_events().where(StripeEvent.id == event_id).values(last_error=type(error).__name__))
            session.commit()
    return len(rows) + len(setup_events) - len(failed), failed


@dataclass(frozen=True)
class DueWork:
    events: list[str]
    to_capture: list[int]
    to_release: list[int]
    to_poll: list[int] = field(default_factory=list)
    creating: list[int] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)


def due_work(session: Session, *, quiet_for: timedelta = timedelta(minutes=2)) -> DueWork:
    """What the database says is unfinished: stored events not processed; confirmed bookings whose
    authorization is not captured; open attempts whose slot is gone (lost, released, canceled) —
    their authorization must be released even if the job that should have done it was lost; open
    attempts no path has looked at for ``quiet_for`` while their hold lasts (the poll job and the
    webhook may both have been lost); attempts left ``creating`` for ``quiet_for`` (a crash between
    storing the attempt and recording its intent); and the Stripe customers of the last day's
    attempts, whose intents no attempt owns are canceled."""
    events = list(session.scalars(select(StripeEvent.id).where(StripeEvent.processed_at.is_(None))
                                  .order_by(StripeEvent.received_at).limit(200)))
    to_capture = list(session.scalars(
        select(PaymentAttempt.id).join(PaymentAttempt.charge).join(Appointment)
        .where(PaymentAttempt.status == "requires_capture", Appointment.status.in_(BOOKED))))
    to_release = list(session.scalars(
        select(PaymentAttempt.id).join(PaymentAttempt.charge).join(Appointment)
        .where(PaymentAttempt.status.not_in(FINAL_STATUSES), Charge.purpose.in_(BOOKING_PURPOSES),
               (PaymentAttempt.outcome.is_not(None)) | Appointment.status.in_(("released", "canceled", "no_show")))
        .limit(200)))
    quiet_since = func.now() - quiet_for
    to_poll = list(session.scalars(
        select(PaymentAttempt.id).join(PaymentAttempt.charge).join(Appointment)
        .where(PaymentAttempt.status.not_in(FINAL_STATUSES + ("creating",)), PaymentAttempt.outcome.is_(None),
               PaymentAttempt.stripe_payment_intent_id.is_not(None), Appointment.status == "held",
               PaymentAttempt.updated_at < quiet_since)
        .order_by(PaymentAttempt.updated_at).limit(200)))
    creating = list(session.scalars(
        select(PaymentAttempt.id).where(PaymentAttempt.status == "creating",
                                        PaymentAttempt.stripe_payment_intent_id.is_(None),
                                        PaymentAttempt.created_at < quiet_since)
        .order_by(PaymentAttempt.id).limit(100)))
    customers = list(session.scalars(
        select(Patient.stripe_customer_id).distinct()
        .join(Appointment, Appointment.patient_id == Patient.id).join(Charge, Charge.appointment_id == Appointment.id)
        .join(PaymentAttempt, PaymentAttempt.charge_id == Charge.id)
        .where(Patient.stripe_customer_id.is_not(None), PaymentAttempt.created_at > func.now() - timedelta(days=1),
               PaymentAttempt.created_at < quiet_since)
        .limit(50)))
    return DueWork(events, to_capture, to_release, to_poll, creating, customers)


@domain_errors
def reconcile_creating(session: Session, attempt_id: int, *, actor: Actor) -> str:
    """An attempt stored but never told its intent (the process died mid-create, or the database went
    away before the answer was recorded): find the intent by our metadata and adopt it (extra copies
    are canceled), or, when Stripe has none, give the attempt up as abandoned. Then ``settle``."""
    attempt = _locked(session, attempt_id)
    if attempt is None or attempt.status != "creating" or attempt.stripe_payment_intent_id:
        session.rollback()
        return "done"
    appointment = session.get(Appointment, attempt.charge.appointment_id)
    customer = appointment.patient.stripe_customer_id
    gw = gateway()
    found = []
    if customer:
        found = [i for i in gw.find_intents(customer=customer, metadata_key="attempt_uuid",
                                            metadata_value=str(attempt.uuid))
                 if i.amount == attempt.amount_cents and i.currency == attempt.currency]
    if not found:
        _mark_canceled(session, attempt, appointment, now=_now(), actor=actor,
                       reason="abandoned before Stripe made its intent")
        session.commit()
        return "abandoned"
    keep = max(found, key=lambda i: (i.status != "canceled", i.status in ("requires_capture", "succeeded")))
    attempt.stripe_payment_intent_id = keep.id
    attempt.client_secret = keep.client_secret
    attempt.mirror(keep.status)
    attempt.poll_until = (appointment.hold_expires_at or _now()) + timings().poll_grace
    record(session, attempt, appointment, actor=actor, action="payment.reconciled",
           details={"found": len(found), "status": keep.status})
    session.commit()
    for extra in found:
        if extra.id != keep.id and extra.status not in ("succeeded", "canceled"):
            gw.cancel(extra.id, key=f"{attempt.uuid}:cancel-extra-{extra.id}", reason="duplicate")
    # A deposit's authorization goes back when its slot is no longer held; a visit charge is for a
    # visit already given (its case decides what happens next: after_settle).
    held = appointment.status == "held" or not attempt.charge.follows_booking
    settle(session, attempt.id, source="sweep", actor=actor, cancel_reason=None if held else "slot no longer held")
    return "adopted"


CANCELABLE = ("requires_payment_method", "requires_confirmation", "requires_action", "requires_capture")


@domain_errors
def cancel_unowned_intents(session: Session, customer: str, *, actor: Actor) -> int:
    """Intents at Stripe for one of our customers that carry our attempt metadata but that no attempt
    owns (another attempt of ours holds a different intent, or no attempt has that uuid): canceled, so
    no authorization is left on a patient's card. An attempt still ``creating`` is left to
    ``reconcile_creating``, which adopts its intent."""
    canceled = 0
    for intent in gateway().find_intents(customer=customer):
        try:
            uuid = UUID(intent.metadata.get("attempt_uuid") or "")
        except ValueError:
            continue                                   # not one of our attempts' intents
        if intent.status not in CANCELABLE:
            continue
        owner = session.scalar(select(PaymentAttempt).where(PaymentAttempt.uuid == uuid))
        if owner is not None and owner.stripe_payment_intent_id in (None, intent.id):
            continue
        gateway().cancel(intent.id, key=f"unowned:{intent.id}:cancel", reason="abandoned")
        audit.record(session, actor=actor, action="payment.unowned_canceled", outcome="success",
                     payment_attempt_id=owner.id if owner else None, stripe_object_id=intent.id,
                     details={"attempt_uuid": str(uuid), "status": intent.status, "amount_cents": intent.amount})
        session.commit()
        canceled += 1
    session.rollback()
    return canceled


def open_attempt_ids(session: Session, appointment_id: int) -> list[int]:
    return list(session.scalars(
        select(PaymentAttempt.id).join(Charge).where(Charge.appointment_id == appointment_id,
                                                     PaymentAttempt.status.not_in(FINAL_STATUSES))))


# -- refunds: stored (commit), then sent (commit) ---------------------------------------------------

@domain_errors
def send_refund(session: Session, refund_id: int, *, actor: Actor):
    """Step 2 for a stored refund: call Stripe with its key, record, commit. Stripe unreachable:
    ``PaymentServiceUnavailable`` (the refund stays resumable); refused: ``RefundNotSent``, committed."""
    refund = session.get(Refund, refund_id)
    try:
        refund = refunds.send_refund(session, gateway(), refund, actor=actor, now=_now())
    except refunds.RefundNotSent:
        session.commit()                 # the failure, its audit row and the released amount
        raise
    except Exception:
        session.rollback()
        raise
    session.commit()
    return refund


def issue_refund(session: Session, *, charge: Charge, amount_cents: int, stripe_reason: str, clinical_reason: str,
                 policy: str, authorized_by, actor: Actor):
    """Store the refund (its UUID is the key's root) and commit, then send it and commit.
    An over-refund is audited and committed, then raised."""
    try:
        refund = refunds.open_refund(session, charge=charge, amount_cents=amount_cents, stripe_reason=stripe_reason,
                                     clinical_reason=clinical_reason, policy=policy, authorized_by=authorized_by,
                                     actor=actor, now=_now())
    except refunds.OverRefund:
        session.commit()                 # only the refused row: nothing else changed
        raise
    except Exception:
        session.rollback()
        raise
    session.commit()                     # the refund's UUID is stored before Stripe hears of it
    return send_refund(session, refund.id, actor=actor)


def refund_canceled_booking(session: Session, appointment_id: int) -> list[int]:
    """After a cancel: release uncaptured authorizations (through ``settle``), then refund what the
    cancellation policy gives back."""
    appointment = session.get(Appointment, appointment_id)
    if appointment is None or appointment.status != "canceled":
        session.rollback()
        return []
    for attempt_id in open_attempt_ids(session, appointment_id):
        session.rollback()
        settle(session, attempt_id, source="cancel", actor=Actor.system("job"), cancel_reason="appointment canceled")
    appointment = session.get(Appointment, appointment_id, populate_existing=True)
    to_send = refunds.policy_refund(session, appointment, actor=Actor.system("job"), now=_now())
    ids = [r.id for r in to_send]
    session.commit()
    for refund_id in ids:
        send_refund(session, refund_id, actor=Actor.system("job"))
    return ids
