"""Disputes (issue 16): a patient's bank disputes a charge; billing answers with the visit's evidence.

Stripe is the truth. A dispute reaches us three ways, all through ``apply_snapshot`` (the one writer
of a Dispute's status):

- ``apply_event``: a ``charge.dispute.*`` webhook (routed by app/services/settlement.py
  ``_money_handler``). An event older than the newest applied (``last_event_created``) is ignored
  without asking Stripe; otherwise the dispute is re-read from Stripe (never the event's copy) under
  the row's lock, so duplicated and shuffled deliveries apply each change once, in order.
- ``poll``: the disputes Stripe made in the last POLL_WINDOW, and our open ones made before it (a lost
  webhook), every DISPUTE_POLL_INTERVAL (app/jobs/disputes.py ``poll``).
- ``sync_payment_intent``: Stripe refused a refund with ``charge_disputed`` before either told us.

The row is made once per Stripe id (``insert_or_existing``: two deliveries at once make one row),
linked to our Charge through the PaymentIntent (PaymentAttempt.stripe_payment_intent_id) and so to
the appointment. Statuses only move forward (``RANK``; won, lost and warning_closed are final), so
a stale read never undoes a newer one. What each step does, in the caller's transaction:

- first sight: audit ``dispute.opened`` (on the appointment: its chain shows it); the ledger's
  ``dispute_withdrawal:<du>`` from the withdrawal balance transaction; ``payouts.dispute_opened``
  (the provider's share held or reversed); the evidence proposed (``assemble_evidence``); the
  provider and billing alerted (email: a date, a deadline and a link, no PHI).
- won: the ledger's ``dispute_reinstatement:<du>`` from the reinstatement balance transaction,
  ``payouts.dispute_won``, audit ``dispute.won``. lost: ``payouts.dispute_lost`` (which posts
  ``dispute_lost``), audit ``dispute.lost``. An inquiry closed (warning_closed) releases like a win.

Evidence, under the minimum-necessary rule: the service date, "Clinical visit" (never the type's
name, specialty, codes or diagnoses), attendance (check-in, telehealth joins, completion: times, never
IP addresses), the receipt, the cancellation and refund policy the patient was shown, how the patient
paid and the consent they accepted (version and time; its wording only when it is one of the clinic's
fixed wordings), messages as time and template id (never their text) and whether the note was signed
(yes/no and when, never its text). Billing approves each field and may add text (``save_review``),
then ``submit`` sends exactly the approved fields and stores what was sent (``submitted_evidence``).
"""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from app.integrations.stripe_disputes import StripeDispute, refusal_message
from app.integrations.stripe_gateway import GatewayError, GatewayUnavailable
from app.models import (Appointment, AuditEvent, Charge, Encounter, Notification, PaymentAttempt, PaymentConsent,
                        User)
from app.models.disputes import CLOSED, OPEN, Dispute
from app.services import DomainError, audit, insert_or_existing, ledger
from app.services.audit import Actor
from app.services.gateway import domain_errors, gateway

log = logging.getLogger(__name__)

POLL_WINDOW = timedelta(days=30)
EXTRA_TEXT_MAX = 4000
# Statuses only move forward; the final ones never change.
RANK = {"warning_needs_response": 0, "warning_under_review": 1, "needs_response": 2, "under_review": 3,
        "warning_closed": 9, "won": 9, "lost": 9}
FINAL = ("warning_closed", "won", "lost")
STATUS_WORDS = {
    "warning_needs_response": "Inquiry: needs a response",
    "warning_under_review": "Inquiry: under review",
    "warning_closed": "Inquiry closed",
    "needs_response": "Needs a response",
    "under_review": "Evidence submitted: under review",
    "won": "Won",
    "lost": "Lost",
}
REASON_WORDS = {"fraudulent": "Fraudulent (card holder says they did not authorize it)",
                "product_not_received": "Service not received", "duplicate": "Duplicate",
                "subscription_canceled": "Subscription canceled", "product_unacceptable": "Service unacceptable",
                "credit_not_processed": "Refund not processed", "unrecognized": "Unrecognized",
                "general": "General"}
PROVIDER_TEMPLATE = "dispute_opened_provider"
BILLING_TEMPLATE = "dispute_opened_billing"


@dataclass(frozen=True)
class EvidenceField:
    name: str                  # our name (the key in Dispute.evidence / approved)
    label: str
    stripe_field: str | None   # Stripe's text field; None: a section of ``uncategorized_text``


# In the order billing reviews them. Stripe's receipt, customer_communication and service_documentation
# are file fields: their text goes to uncategorized_text, with billing's own text after it.
FIELDS = (
    EvidenceField("service_date", "Service date", "service_date"),
    EvidenceField("product_description", "What was paid for", "product_description"),
    EvidenceField("access_activity_log", "Attendance and activity", "access_activity_log"),
    EvidenceField("receipt", "Receipt", None),
    EvidenceField("payment_consent", "Payment and consent", None),
    EvidenceField("cancellation_policy_disclosure", "Cancellation policy", "cancellation_policy_disclosure"),
    EvidenceField("refund_policy_disclosure", "Refund policy", "refund_policy_disclosure"),
    EvidenceField("messages", "Messages about the visit", None),
    EvidenceField("visit_note", "Visit note", None),          # signed or not, and when: never its text
)
BY_NAME = {f.name: f for f in FIELDS}


class DisputeError(DomainError):
    """A dispute rule, or Stripe, said no; ``str(error)`` is for billing."""


class InvalidReview(DisputeError):
    """What billing sent does not fit the page (a field not proposed, a text too long): a 422."""


class NotOpen(DisputeError):
    """The dispute no longer takes evidence (submitted, closed, no longer needs a response): a 409."""


class EvidenceChanged(NotOpen):
    """The visit's records changed between the page billing saw and their review (a 409: look again)."""


class SubmitRefused(DisputeError):
    """Stripe refused the evidence (its words are in the message); nothing was recorded as submitted."""


class DisputeUnavailable(DisputeError):
    pass


def words(status: str) -> str:
    return STATUS_WORDS.get(status, status.replace("_", " "))


def _now() -> datetime:
    from flask import current_app

    return current_app.extensions["clock"].now()


def _at(epoch: int | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, timezone.utc) if epoch else None


def find(session: Session, stripe_dispute_id: str) -> Dispute | None:
    return session.scalar(select(Dispute).where(Dispute.stripe_dispute_id == stripe_dispute_id))


# -- applying Stripe's dispute -------------------------------------------------------------------

def apply_event(session: Session, *, event_id: str, event_type: str, object_id: str, created: int | None,
                account: str | None, actor: Actor) -> str:
    """A ``charge.dispute.*`` event: re-read the dispute and apply it (does not commit). Returns
    ``opened`` | ``won`` | ``lost`` | ``closed`` | ``updated`` | ``unchanged`` | ``stale``."""
    if not object_id or not object_id.startswith("du_") or account:
        return "ignored"                # a connected account's dispute is not the platform's
    existing = find(session, object_id)
    if existing is not None:
        existing = session.get(Dispute, existing.id, with_for_update=True, populate_existing=True)
        if created is not None and existing.last_event_created is not None and created < existing.last_event_created:
            return "stale"              # older than what was applied: Stripe is not even asked
    try:
        snap = gateway().retrieve_dispute(object_id)
    except GatewayUnavailable:
        raise                           # the event stays unprocessed: the sweep tries it again
    except GatewayError as error:       # Stripe has no such dispute (a forged or foreign event): nothing to do
        log.warning("dispute event %s: %s not readable at Stripe (%s)", event_id, object_id, error)
        return "ignored"
    return apply_snapshot(session, snap, actor=actor, now=_now(), event_created=created, source=f"webhook:{event_type}")


def apply_snapshot(session: Session, snap: StripeDispute, *, actor: Actor, now: datetime,
                   event_created: int | None = None, source: str = "poll") -> str:
    """The one writer of a Dispute: made once (first sight), then moved forward by Stripe's status."""
    dispute = find(session, snap.id)
    opened = False
    if dispute is None:
        dispute, opened = _insert(session, snap, now=now)
    dispute = session.get(Dispute, dispute.id, with_for_update=True, populate_existing=True)
    if event_created is not None:
        if not opened and dispute.last_event_created is not None and event_created < dispute.last_event_created:
            return "stale"
        dispute.last_event_created = max(event_created, dispute.last_event_created or 0)
    if dispute.charge_id is None:
        _link(session, dispute, snap)
    if opened:
        _on_opened(session, dispute, snap, actor=actor, now=now, source=source)
    state = "opened" if opened else "unchanged"
    if dispute.submitted_at is None and snap.submission_count > 0:
        _submitted_at_stripe(session, dispute, snap, actor=actor, now=now)
        state = state if opened else "updated"
    old = dispute.status
    if _move(dispute, snap):
        state = _on_status(session, dispute, snap, old=old, actor=actor, now=now, source=source,
                           quiet=opened) or state
    # A balance transaction Stripe added after the step that posts it (funds_withdrawn after created,
    # funds_reinstated after closed): posted now, once (the ledger's dedupe key).
    _post_bt(session, dispute, snap.withdrawal, kind="dispute_withdrawal", now=now)
    if dispute.status == "won":
        _post_bt(session, dispute, snap.reinstatement, kind="dispute_reinstatement", now=now)
    session.flush()
    return state


def _insert(session: Session, snap: StripeDispute, *, now: datetime) -> tuple[Dispute, bool]:
    row = Dispute(stripe_dispute_id=snap.id, stripe_charge_id=snap.charge or "", amount_cents=snap.amount,
                  currency=snap.currency, reason=snap.reason[:40], status=_first_status(snap.status),
                  is_charge_refundable=snap.is_charge_refundable, due_by=_at(snap.due_by), evidence={},
                  approved=[])
    return insert_or_existing(session, row, lambda: find(session, snap.id))


def _first_status(status: str) -> str:
    """The status a dispute is first stored with: the open one it began as, so a dispute first seen
    already closed still goes through its closing step (ledger, provider's share, audit)."""
    if status in ("won", "lost", "under_review"):
        return "needs_response"
    if status in ("warning_closed", "warning_under_review"):
        return "warning_needs_response"
    return status


def _link(session: Session, dispute: Dispute, snap: StripeDispute) -> None:
    if not snap.payment_intent:
        return
    found = session.execute(select(PaymentAttempt.charge_id, Charge.appointment_id)
                            .join(Charge, Charge.id == PaymentAttempt.charge_id)
                            .where(PaymentAttempt.stripe_payment_intent_id == snap.payment_intent)).first()
    if found is not None:
        dispute.charge_id, dispute.appointment_id = found


def _move(dispute: Dispute, snap: StripeDispute) -> bool:
    """Apply Stripe's figures and status when the snapshot is not behind the row. Returns whether
    the status changed."""
    if dispute.status in FINAL or RANK.get(snap.status, -1) < RANK.get(dispute.status, -1):
        return False
    dispute.amount_cents = snap.amount
    dispute.is_charge_refundable = snap.is_charge_refundable
    dispute.due_by = _at(snap.due_by) or dispute.due_by
    dispute.reason = snap.reason[:40]
    if snap.status == dispute.status:
        return False
    dispute.status = snap.status
    return True


def _audit(session: Session, dispute: Dispute, *, actor: Actor, action: str, outcome: str = "success",
           details: dict | None = None, reason: str | None = None) -> None:
    appointment = session.get(Appointment, dispute.appointment_id) if dispute.appointment_id else None
    audit.record(session, actor=actor, action=action, outcome=outcome, reason=reason,
                 patient_id=appointment.patient_id if appointment else None,
                 appointment_id=dispute.appointment_id, stripe_object_id=dispute.stripe_dispute_id,
                 details={"dispute_id": dispute.id, "charge_id": dispute.charge_id,
                          "amount_cents": dispute.amount_cents, "status": dispute.status, **(details or {})})


def _refs(session: Session, dispute: Dispute) -> dict:
    appointment = session.get(Appointment, dispute.appointment_id) if dispute.appointment_id else None
    return dict(appointment_id=dispute.appointment_id, charge_id=dispute.charge_id, dispute_id=dispute.id,
                provider_id=appointment.provider_id if appointment else None)


def _post_bt(session: Session, dispute: Dispute, bt, *, kind: str, now: datetime) -> None:
    """A dispute's balance transaction in the ledger: stripe_balance its net, dispute_fees its fee,
    disputes_open the opposite of its amount (withdrawal: +D; reinstatement: -D)."""
    if bt is None:
        return
    ledger.post(session, kind=kind, dedupe_key=f"{kind}:{dispute.stripe_dispute_id}",
                occurred_at=_at(bt.created) or now, stripe_object_id=dispute.stripe_dispute_id,
                entries=[ledger.Entry(ledger.STRIPE_BALANCE, bt.net, balance_transaction_id=bt.id,
                                      currency=dispute.currency),
                         ledger.Entry(ledger.DISPUTE_FEES, bt.fee, balance_transaction_id=bt.id,
                                      currency=dispute.currency),
                         ledger.Entry(ledger.DISPUTES_OPEN, -bt.amount, currency=dispute.currency)],
                **_refs(session, dispute))


def _on_opened(session: Session, dispute: Dispute, snap: StripeDispute, *, actor: Actor, now: datetime,
               source: str) -> None:
    _audit(session, dispute, actor=actor, action="dispute.opened",
           details={"reason": dispute.reason, "due_by": dispute.due_by.isoformat() if dispute.due_by else None,
                    "source": source, "stripe_status": snap.status})
    _post_bt(session, dispute, snap.withdrawal, kind="dispute_withdrawal", now=now)
    if dispute.charge_id is not None:
        from app.services import payouts

        payouts.dispute_opened(session, dispute, now=now, actor=actor)
    dispute.evidence = assemble_evidence(session, dispute)
    if snap.status not in FINAL:
        _alert(session, dispute, now=now)


def _on_status(session: Session, dispute: Dispute, snap: StripeDispute, *, old: str, actor: Actor, now: datetime,
               source: str, quiet: bool) -> str | None:
    new = dispute.status
    details = {"from": old, "to": new, "source": source}
    if new in CLOSED:
        dispute.closed_at = now
    if new == "won":
        _post_bt(session, dispute, snap.reinstatement, kind="dispute_reinstatement", now=now)
        if dispute.charge_id is not None:
            from app.services import payouts

            payouts.dispute_won(session, dispute, now=now, actor=actor)
        _audit(session, dispute, actor=actor, action="dispute.won", details=details)
        return "won"
    if new == "lost":
        if dispute.charge_id is not None:
            from app.services import payouts

            payouts.dispute_lost(session, dispute, now=now, actor=actor)
        elif ledger.posted(session, f"dispute_withdrawal:{dispute.stripe_dispute_id}"):
            # Not our charge: no provider's share; the whole amount is the platform's loss.
            ledger.post(session, kind="dispute_lost", dedupe_key=f"dispute_lost:{dispute.stripe_dispute_id}",
                        occurred_at=now, stripe_object_id=dispute.stripe_dispute_id,
                        entries=[ledger.Entry(ledger.DISPUTES_OPEN, -dispute.amount_cents),
                                 ledger.Entry(ledger.DISPUTE_LOSSES, dispute.amount_cents)],
                        **_refs(session, dispute))
        _audit(session, dispute, actor=actor, action="dispute.lost", details=details)
        return "lost"
    if new == "warning_closed":
        if dispute.charge_id is not None:
            from app.services import payouts

            payouts.dispute_won(session, dispute, now=now, actor=actor)
        _audit(session, dispute, actor=actor, action="dispute.closed", details=details)
        return "closed"
    if not quiet:
        _audit(session, dispute, actor=actor, action="dispute.updated", details=details)
    return "updated"


def _submitted_at_stripe(session: Session, dispute: Dispute, snap: StripeDispute, *, actor: Actor,
                         now: datetime) -> None:
    """Stripe has a submission we did not record (a crash after Stripe took it, or someone used the
    dashboard): what Stripe holds is what was sent."""
    dispute.submitted_evidence = dict(snap.evidence)
    dispute.submitted_at = now
    _audit(session, dispute, actor=actor, action="dispute.submitted",
           details={"fields": sorted(snap.evidence), "source": "stripe"})


# -- alerts ------------------------------------------------------------------------------------

def _due_words(dispute: Dispute, tz: str) -> str:
    if dispute.due_by is None:
        return "as soon as possible"
    return dispute.due_by.astimezone(ZoneInfo(tz)).strftime("%A, %B %-d at %-I:%M %p %Z")


def _alert(session: Session, dispute: Dispute, *, now: datetime) -> None:
    """The provider (their share is held) and billing (they answer) are told once, by email: the
    visit's date, the deadline and a link. No name, type, amount or reason."""
    if dispute.alerted_at is not None:
        return
    from app.services import notifications
    from app.services.clinic import current_clinic
    from app.services.gateway import settings

    base = settings().PUBLIC_BASE_URL.rstrip("/")
    tz = current_clinic(session).timezone or "UTC"
    appointment = session.get(Appointment, dispute.appointment_id) if dispute.appointment_id else None
    by = _due_words(dispute, tz)
    if appointment is not None and appointment.provider is not None:
        user = appointment.provider.user
        notifications.queue(session, dedupe_key=f"{PROVIDER_TEMPLATE}:{dispute.id}", template=PROVIDER_TEMPLATE,
                            user=user, appointment=appointment, scheduled_for=now,
                            context={"link": f"{base}/staff/earnings", "by": by}, prefer="email")
    billing = session.scalars(select(User).where(User.role == "billing", User.is_active_account.is_(True))
                              .order_by(User.id)).all()
    for user in billing:
        notifications.queue(session, dedupe_key=f"{BILLING_TEMPLATE}:{dispute.id}:{user.id}",
                            template=BILLING_TEMPLATE, user=user, appointment=appointment, scheduled_for=now,
                            context={"link": f"{base}/billing/disputes/{dispute.id}", "by": by}, prefer="email")
    dispute.alerted_at = now


# -- the poll (a lost webhook) -------------------------------------------------------------------

@contextmanager
def _savepoint(session: Session):
    """A savepoint whose failure also drops the audit rows and after-commit work asked for inside it
    (both are collected on the session until the commit)."""
    from app.services import unit_of_work

    marks = {name: len(session.info.get(name) or []) for name in (audit._PENDING, unit_of_work._KEY)}
    try:
        with session.begin_nested():
            yield
    except Exception:
        for name, mark in marks.items():
            collected = session.info.get(name)
            if collected:
                del collected[mark:]
        raise


@domain_errors
def poll(session: Session, *, now: datetime, actor: Actor | None = None) -> dict:
    """List the disputes Stripe made in the last POLL_WINDOW and apply each, then re-read our open ones
    made before it (each in a savepoint: one that fails is logged and left for the next poll). Does not
    commit."""
    actor = actor or Actor.system("job")
    since = int((now - POLL_WINDOW).timestamp())
    found = gateway().list_disputes(created_gte=since)
    states: dict[str, int] = {}
    failed, opened = [], []
    listed = {snap.id for snap in found}
    # Ours still open but made before the window (a bank may take months to decide): read one by one.
    older = [sid for sid in session.scalars(select(Dispute.stripe_dispute_id).where(Dispute.status.in_(OPEN))
                                            .order_by(Dispute.id)) if sid not in listed]
    for item in [*reversed(found), *older]:             # oldest first
        sid = item if isinstance(item, str) else item.id
        try:
            with _savepoint(session):
                snap = gateway().retrieve_dispute(sid) if isinstance(item, str) else item
                state = apply_snapshot(session, snap, actor=actor, now=now, source="poll")
        except Exception as error:          # noqa: BLE001 (one dispute must not stop the others)
            log.warning("dispute poll: %s not applied (%s)", sid, type(error).__name__)
            failed.append(sid)
            continue
        states[state] = states.get(state, 0) + 1
        if state == "opened":
            opened.append(sid)
    return {"listed": len(found), "rechecked": len(older), "states": states, "opened": opened, "failed": failed}


def sync_payment_intent(session: Session, payment_intent: str, *, actor: Actor, now: datetime) -> int:
    """Apply the disputes Stripe has for one PaymentIntent (Stripe refused a refund as disputed
    before its webhook came), in a savepoint: a failure here is logged and left to the webhook or
    the poll. Returns how many were applied."""
    try:
        with _savepoint(session):
            found = gateway().list_disputes(payment_intent=payment_intent)
            for snap in reversed(found):
                apply_snapshot(session, snap, actor=actor, now=now, source="refund_refused")
    except Exception as error:              # noqa: BLE001 (the refund's refusal is what matters here)
        log.warning("disputes of %s not applied (%s)", payment_intent, type(error).__name__)
        return 0
    return len(found)


# -- the refund guard --------------------------------------------------------------------------

def blocking_refund(session: Session, charge_id: int) -> Dispute | None:
    """A dispute of the charge that makes Stripe refuse a refund: open (unless Stripe says the charge
    is still refundable) or lost."""
    for dispute in session.scalars(select(Dispute).where(Dispute.charge_id == charge_id).order_by(Dispute.id)):
        if dispute.blocks_refund:
            return dispute
    return None


# -- evidence ----------------------------------------------------------------------------------

def _clock_words(at: datetime | None, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if at else "unknown"


def _money(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def _event_time(event: AuditEvent) -> datetime:
    """When it happened: the domain clock's time the service recorded (details.at), else the row's."""
    at = (event.details or {}).get("at")
    if isinstance(at, str):
        try:
            parsed = datetime.fromisoformat(at)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return event.occurred_at


ACTIVITY = {
    "booking.confirmed": "Booking confirmed (paid on the clinic's patient portal)",
    "visit.checked_in": "Patient checked in",
    "visit.completed": "Visit completed",
}
KNOWN_CONSENT_WORDINGS = None


def _known_wordings() -> set[str]:
    """The clinic's fixed consent wordings (never typed per patient: they name no visit type)."""
    global KNOWN_CONSENT_WORDINGS
    if KNOWN_CONSENT_WORDINGS is None:
        from app.services import card_setup, hybrid_deposit

        KNOWN_CONSENT_WORDINGS = set(card_setup.CONSENTS.values()) | set(hybrid_deposit.CONSENTS.values())
    return KNOWN_CONSENT_WORDINGS


def assemble_evidence(session: Session, dispute: Dispute) -> dict[str, str]:
    """The proposed evidence ``{field: text}`` (FIELDS), minimum necessary: see the module's words."""
    from app.services.clinic import current_clinic

    tz = ZoneInfo(current_clinic(session).timezone or "UTC")
    evidence: dict[str, str] = {"product_description": "Clinical visit."}
    appointment = session.get(Appointment, dispute.appointment_id) if dispute.appointment_id else None
    if appointment is None:
        return evidence
    modality = "by video (telehealth)" if appointment.modality == "telehealth" else "in person"
    evidence["service_date"] = appointment.starts_at.astimezone(tz).date().isoformat()
    evidence["product_description"] = (
        f"Clinical visit, {modality}, scheduled for {_clock_words(appointment.starts_at, tz)}, booked and paid for "
        "by the cardholder on the clinic's patient portal.")
    events = session.scalars(select(AuditEvent).where(AuditEvent.appointment_id == appointment.id)
                             .order_by(AuditEvent.seq)).all()
    charge = session.get(Charge, dispute.charge_id) if dispute.charge_id else None
    attempt = session.scalar(select(PaymentAttempt).where(PaymentAttempt.charge_id == charge.id,
                                                          PaymentAttempt.status == "succeeded")
                             .order_by(PaymentAttempt.number.desc()).limit(1)) if charge else None
    # Attendance and activity: times only (never an IP address, a name or what was discussed).
    lines = [(appointment.created_at, "Appointment booked from the patient's own portal account")]
    if attempt is not None:
        lines.append((attempt.captured_at or attempt.created_at,
                      "Payment confirmed by the cardholder on the clinic's checkout page"))
    for event in events:
        if event.action in ACTIVITY:
            lines.append((_event_time(event), ACTIVITY[event.action]))
        elif event.action == "visit.joined":
            who = {"patient": "Patient", "provider": "Clinician"}.get(event.actor_role or "", "Participant")
            lines.append((_event_time(event), f"{who} joined the video visit"))
    lines.sort(key=lambda line: line[0])
    evidence["access_activity_log"] = "\n".join(f"{_clock_words(at, tz)}: {what}" for at, what in lines)
    if charge is not None:
        card = (f"{(attempt.card_brand or 'card').title()} ending in {attempt.card_last4}"
                if attempt is not None and attempt.card_last4 else "the card on file")
        paid_at = attempt.captured_at if attempt is not None and attempt.captured_at else charge.created_at
        refunded = charge.amount_refunded_cents
        evidence["receipt"] = (
            f"R-{charge.id} for appointment #{appointment.id}: {_money(charge.amount_captured_cents)} paid on "
            f"{paid_at.astimezone(tz).date().isoformat()} with {card}; refunded {_money(refunded)}. The patient's "
            "receipt is in their portal account.")
        consent_lines = []
        if attempt is not None:
            consent_lines.append(
                f"The cardholder entered and confirmed this payment themselves, on-session, on the clinic's checkout "
                f"page ({card}), at {_clock_words(attempt.captured_at or attempt.created_at, tz)}.")
        for consent in session.scalars(select(PaymentConsent).where(PaymentConsent.appointment_id == appointment.id)
                                       .order_by(PaymentConsent.id)):
            text = f"Payment consent accepted {_clock_words(consent.accepted_at, tz)}, wording version " \
                   f"{consent.wording_version}"
            if consent.wording in _known_wordings():
                text += f': "{consent.wording}"'
            consent_lines.append(text + ".")
        evidence["payment_consent"] = "\n".join(consent_lines) if consent_lines else "Paid at booking."
    evidence.update(_policies(appointment))
    sent = session.scalars(select(Notification).where(
        Notification.appointment_id == appointment.id, Notification.status.in_(("sent", "delivered")),
        Notification.template.not_in((PROVIDER_TEMPLATE, BILLING_TEMPLATE)))
        .order_by(Notification.sent_at, Notification.id)).all()
    patient_user_id = appointment.patient.user_id if appointment.patient else None
    messages = [f"{_clock_words(n.sent_at or n.created_at, tz)}: {n.channel}, template {n.template}"
                for n in sent if n.user_id == patient_user_id]
    evidence["messages"] = ("Sent to the patient about this visit (time, channel, template id):\n"
                            + "\n".join(messages)) if messages else "None sent to the patient about this visit."
    encounter = session.scalar(select(Encounter).where(Encounter.appointment_id == appointment.id))
    if encounter is not None and encounter.is_signed:
        evidence["visit_note"] = f"Signed by the clinician: yes, at {_clock_words(encounter.signed_at, tz)}."
    else:
        evidence["visit_note"] = "Signed by the clinician: no (not yet)."
    return evidence


def _policies(appointment: Appointment) -> dict[str, str]:
    """The cancellation and refund policy the patient was shown (app/templates/booking/appointment.html,
    beside Cancel visit), from the type's rule, and where it was shown."""
    kind = appointment.type
    hours = kind.cancellation_window_hours
    if kind.late_cancel_policy == "fee" and kind.late_cancel_fee_cents:
        late = f"a late-cancel fee of {_money(kind.late_cancel_fee_cents)} is kept and the rest refunded"
    else:
        late = "the payment is not refunded"
    where = ("The patient sees it on their appointment page in the portal, beside the Cancel visit button, from "
             "booking until the visit (\"Canceling now refunds your payment in full.\" before the window; \"The "
             "free-cancellation window has passed; the clinic's late-cancel policy applies\" within it).")
    return {
        "cancellation_policy_disclosure": (
            f"Cancellation policy: a visit canceled by the patient more than {hours} hours before its start is "
            f"refunded in full; within {hours} hours of the start, {late}. A visit canceled by the clinic is "
            f"refunded in full. Online cancellation and rescheduling close {hours} hours before the start. {where}"),
        "refund_policy_disclosure": (
            "Refund policy: payments are refunded to the card that paid, as the cancellation policy says; a visit "
            "that took place is not refunded. Every refund is shown on the patient's receipt in the portal. "
            f"{where}"),
    }


def current_evidence(session: Session, dispute: Dispute) -> dict[str, str]:
    """What billing reviews: assembled from the visit now while evidence can still be submitted (a
    check-in or a signature after the dispute opened counts), else what was stored."""
    if dispute.submitted_at is None and dispute.needs_response:
        return assemble_evidence(session, dispute)
    return dict(dispute.evidence or {})


def evidence_digest(evidence: dict) -> str:
    """A short digest of the evidence a page showed (sent back with the review: changed since? say so)."""
    return hashlib.sha256(json.dumps(evidence, sort_keys=True).encode()).hexdigest()[:16]


def fields_of(evidence: dict) -> list[tuple[EvidenceField, str]]:
    """The proposed fields with their text, in review order."""
    return [(f, evidence[f.name]) for f in FIELDS if evidence.get(f.name)]


def payload(dispute: Dispute) -> dict[str, str]:
    """What ``submit`` sends: each approved field in its Stripe field; the approved fields without one
    (receipt, consent, messages, note), then billing's own text, in ``uncategorized_text``."""
    evidence = dispute.evidence or {}
    approved = set(dispute.approved or [])
    sent: dict[str, str] = {}
    sections = []
    for f in FIELDS:
        text = evidence.get(f.name)
        if f.name not in approved or not text:
            continue
        if f.stripe_field:
            sent[f.stripe_field] = text
        else:
            sections.append(f"{f.label}: {text}")
    extra = (dispute.extra_text or "").strip()
    if extra:
        sections.append(extra)
    if sections:
        sent["uncategorized_text"] = "\n\n".join(sections)
    return sent


# -- billing's review and submission ---------------------------------------------------------------

def save_review(session: Session, dispute: Dispute, approved_fields, extra_text: str | None, actor: Actor, *,
                seen: str | None = None) -> Dispute:
    """Store the evidence assembled from the visit now, which of its fields billing approved, and their own
    text (does not commit). ``seen``: the digest of the evidence the page showed (``evidence_digest``);
    when the visit's records changed since, EvidenceChanged (nothing is stored: billing looks again)."""
    dispute = session.get(Dispute, dispute.id, with_for_update=True, populate_existing=True)
    if dispute.submitted_at is not None:
        raise NotOpen("This dispute's evidence was already submitted; it can no longer change.")
    if not dispute.needs_response:
        raise NotOpen(f"This dispute is {words(dispute.status).lower()}; its evidence can no longer change.")
    fresh = assemble_evidence(session, dispute)
    if seen is not None and seen != evidence_digest(fresh):
        raise EvidenceChanged("The visit's records changed while you were reviewing (for example a check-in or "
                              "the note's signature). The page now shows the new text: review it and save again.")
    refreshed = fresh != (dispute.evidence or {})
    dispute.evidence = fresh
    approved = sorted({str(name) for name in approved_fields or []})
    unknown = [name for name in approved if name not in BY_NAME or not fresh.get(name)]
    if unknown:
        raise InvalidReview("Approve only the fields shown on this page.")
    extra = (extra_text or "").replace("\r\n", "\n").strip()
    if "\x00" in extra:
        raise InvalidReview("Your text contains a character that cannot be sent.")
    if len(extra) > EXTRA_TEXT_MAX:
        raise InvalidReview(f"Your text is {len(extra):,} characters; keep it under {EXTRA_TEXT_MAX:,}.")
    changed = approved != sorted(dispute.approved or []) or extra != (dispute.extra_text or "")
    dispute.approved = approved
    dispute.extra_text = extra or None
    if changed or refreshed:
        _audit(session, dispute, actor=actor, action="dispute.reviewed",
               details={"approved": approved, "extra_text_chars": len(extra), "evidence_refreshed": refreshed})
    session.flush()
    return dispute


def _key(dispute: Dispute, sent: dict) -> str:
    digest = hashlib.sha256(json.dumps(sent, sort_keys=True).encode()).hexdigest()[:16]
    return f"dispute-{dispute.id}-{dispute.stripe_dispute_id}:submit:{digest}"


def submit(session: Session, dispute_id: int, actor: Actor, *, now: datetime | None = None) -> Dispute:
    """Send the approved evidence to Stripe and submit it (an entry point: it commits).

    The review was committed before (``save_review``). Under the row's lock the payload is built
    from it; the idempotency key is the row's id, its Stripe id and a digest of the payload (a retry
    of the same submission is the same request). Stripe's answer is applied and ``submitted_evidence``
    stores exactly what was sent, with ``dispute.submitted`` audited, in one commit. Stripe's refusal:
    nothing is recorded but the refusal's audit row, and SubmitRefused carries Stripe's words.
    Stripe unreachable: DisputeUnavailable (a submission Stripe did take is recorded by the next
    webhook or poll, from what Stripe holds)."""
    now = now or _now()
    dispute = session.get(Dispute, dispute_id, with_for_update=True, populate_existing=True)
    if dispute is None:
        session.rollback()
        raise NotOpen("No such dispute.")
    if dispute.submitted_at is not None:
        session.rollback()
        raise NotOpen("This dispute's evidence was already submitted.")
    if not dispute.needs_response:
        session.rollback()
        raise NotOpen(f"This dispute is {words(dispute.status).lower()}; evidence can no longer be submitted.")
    sent = payload(dispute)
    if not sent:
        session.rollback()
        raise InvalidReview("Approve at least one field, or add your own text, before submitting.")
    key = _key(dispute, sent)
    try:
        snap = gateway().update_dispute_evidence(dispute.stripe_dispute_id, evidence=sent, submit=True, key=key)
    except GatewayUnavailable as error:
        session.rollback()
        raise DisputeUnavailable("Stripe could not be reached, so the evidence may not have been submitted. "
                                 "Nothing is recorded here yet; submit again in a moment.") from error
    except GatewayError as error:
        words_ = refusal_message(error)
        session.rollback()
        dispute = session.get(Dispute, dispute_id, with_for_update=True, populate_existing=True)
        _audit(session, dispute, actor=actor, action="dispute.submit_refused", outcome="failure",
               details={"fields": sorted(sent), "stripe_said": words_[:300]})
        session.commit()
        raise SubmitRefused(f"Stripe refused the evidence: {words_} Nothing was submitted.") from error
    dispute.submitted_evidence = sent
    dispute.submitted_at = now
    dispute.submitted_by_id = actor.id if actor.type == "user" else None
    _audit(session, dispute, actor=actor, action="dispute.submitted",
           details={"fields": sorted(sent), "approved": list(dispute.approved or []),
                    "extra_text_chars": len(dispute.extra_text or ""), "key": key.rsplit(":", 1)[-1]})
    apply_snapshot(session, snap, actor=actor, now=now, source="submit")
    session.commit()
    return dispute


# -- what pages show ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    dispute: Dispute
    appointment: Appointment | None
    overdue: bool


def worklist(session: Session, *, now: datetime, show: str = "open", limit: int = 200) -> list[Row]:
    """Open disputes, overdue first, then by due date; ``show='closed'``: the closed ones, newest first."""
    query = select(Dispute, Appointment).outerjoin(Appointment, Appointment.id == Dispute.appointment_id)
    if show == "closed":
        query = query.where(Dispute.status.in_(CLOSED)).order_by(Dispute.closed_at.desc().nulls_last(),
                                                                 Dispute.id.desc())
    else:
        overdue = case((Dispute.due_by < now, 0), else_=1)
        query = query.where(Dispute.status.in_(OPEN)).order_by(overdue, Dispute.due_by.asc().nulls_last(),
                                                               Dispute.id)
    return [Row(d, a, bool(d.open and d.due_by is not None and d.due_by < now))
            for d, a in session.execute(query.limit(limit)).all()]
