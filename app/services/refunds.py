"""Refunds: money given back, never more than was captured, always with a reason.

A refund is two units of work, like a payment attempt (``payments.open_attempt``
then ``payments.create_intent``):

1. ``open_refund`` locks the charge, checks the amount against what was
   captured minus what is already refunded (or reserved by a refund still
   being made), stores the Refund row (status ``creating``, its UUID) and
   reserves the amount on ``Charge.amount_refunded_cents``. The caller commits.
2. ``send_refund`` calls Stripe with the idempotency key ``<refund-uuid>:create``
   and our opaque ids as metadata, stores the Stripe refund id and its status,
   and audits ``refund.created``. The caller commits. A definite refusal by
   Stripe marks the refund failed and gives the reservation back; an outage
   leaves it ``creating`` so a retry (same key) finishes it.

Stripe's rules come first: a charge with an open dispute (unless the dispute says
``is_charge_refundable``) or one lost to a dispute is not refunded (ChargeDisputed, before anything
is stored; DisputedAtStripe when Stripe says ``charge_disputed`` before our rows knew).

Stripe only ever gets one of its three reasons; the clinical justification,
the policy and who authorized it live in the Refund row and the audit trail.

``policy_refund`` applies the cancellation policy to a canceled appointment:
canceled by the clinic -> full refund (staff_cancel, authorized by that staff
member); by the patient before the type's cancellation window -> full refund;
after it -> the type's late-cancel rule ('none' refunds nothing, 'fee' keeps
the late-cancel fee). It is decided once per appointment (``refund.policy_applied``).

No function here commits.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.integrations.stripe_common import _code
from app.integrations.stripe_gateway import GatewayError, GatewayUnavailable, StripeGateway
from app.models import Appointment, AuditEvent, Charge, PaymentAttempt, Refund, User
from app.models.payment import REFUND_REASONS
from app.models.user import STAFF_ROLES
from app.services import DomainError, audit
from app.services.audit import Actor

log = logging.getLogger(__name__)

POLICIES = ("cancellation_policy", "billing", "staff_cancel", "overpayment")
# Refused before anything is stored when the charge is disputed (issue 16). Not ``overpayment``: a hybrid
# visit's reconciliation (app/services/claims.py) stores its refund in the same transaction as its
# decision, so a refusal there would leave the visit unreconciled; Stripe refuses that refund when it is
# sent (DisputedAtStripe: marked failed, nothing moves).
DISPUTE_CHECKED = ("cancellation_policy", "billing", "staff_cancel")
LIVE_STATUSES = ("creating", "pending", "succeeded")      # count against what may still be refunded
# A Refund's status is written only by ``Refund.mirror`` (app/models/payment.py: REFUND_MIRROR).


class RefundError(DomainError):
    """A refund rule said no; ``str(error)`` is for the person asking."""


class OverRefund(RefundError):
    """More than captured minus already refunded."""

    def __init__(self, requested: int, refundable: int, captured: int):
        super().__init__(f"A refund of {money(requested)} is more than can be refunded: "
                         f"{money(refundable)} of the {money(captured)} captured remains. Nothing was refunded.")
        self.requested, self.refundable, self.captured = requested, refundable, captured


class NotRefundable(RefundError):
    pass


class RefundNotSent(RefundError):
    """Stripe refused the refund (it is marked failed and its amount released)."""


DISPUTED = ("This payment is disputed by the cardholder's bank; a refund is not possible until the dispute is "
            "closed. Nothing was refunded.")
LOST_TO_DISPUTE = ("This payment was lost to a dispute: the bank has already returned it to the cardholder, so it "
                   "cannot be refunded. Nothing was refunded.")


class ChargeDisputed(NotRefundable):
    """Stripe's rule, checked first: a charge with an open dispute (unless the dispute says
    ``is_charge_refundable``) or one lost to a dispute cannot be refunded."""

    def __init__(self, message: str = DISPUTED):
        super().__init__(message)


class DisputedAtStripe(ChargeDisputed, RefundNotSent):
    """Stripe refused the refund as ``charge_disputed`` before our rows knew of the dispute (the
    refund is marked failed, its amount released, and the dispute is read from Stripe)."""


def money(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def refundable_cents(charge: Charge) -> int:
    """What may still be refunded: captured minus refunded (including refunds being made)."""
    return max(0, charge.amount_captured_cents - charge.amount_refunded_cents)


def captured_attempt(session: Session, charge: Charge) -> PaymentAttempt | None:
    return session.scalar(select(PaymentAttempt).where(PaymentAttempt.charge_id == charge.id,
                                                       PaymentAttempt.status == "succeeded")
                          .order_by(PaymentAttempt.number.desc()).limit(1))


def _audit(session: Session, refund: Refund, charge: Charge, appointment: Appointment, *, actor: Actor,
           action: str, outcome: str = "success", details: dict | None = None) -> None:
    authorizer = session.get(User, refund.authorized_by_id) if refund.authorized_by_id else None
    audit.record(session, actor=actor, action=action, outcome=outcome, reason=refund.clinical_reason,
                 patient_id=appointment.patient_id, appointment_id=appointment.id,
                 payment_attempt_id=refund.attempt_id, stripe_object_id=refund.stripe_refund_id,
                 authorized_by=refund.authorized_by_id,
                 details={"refund_id": refund.id, "refund_uuid": str(refund.uuid), "charge_id": charge.id,
                          "amount_cents": refund.amount_cents, "policy": refund.policy,
                          "stripe_reason": refund.stripe_reason,
                          "authorized_by_name": authorizer.full_name if authorizer else "system (policy)",
                          **(details or {})})


# -- step 1: store the refund (and reserve its amount) before Stripe hears of it ---------------------

def open_refund(session: Session, *, charge: Charge, amount_cents: int, stripe_reason: str, clinical_reason: str,
                policy: str, authorized_by: User | None, actor: Actor, now: datetime) -> Refund:
    """Store a Refund in ``creating`` and reserve its amount on the charge; raise OverRefund if too much.

    An over-refund is audited (``refund.refused``) in the caller's transaction and
    nothing else changes: the caller may commit that row."""
    clinical_reason = (clinical_reason or "").strip()
    if stripe_reason not in REFUND_REASONS:
        raise RefundError("Choose one of Stripe's refund reasons: duplicate, fraudulent or requested by customer.")
    if policy not in POLICIES:
        raise RefundError(f"Unknown refund policy {policy!r}.")
    if not clinical_reason:
        raise RefundError("Give the clinical reason for this refund.")
    if not isinstance(amount_cents, int) or amount_cents <= 0:
        raise RefundError("The refund amount must be more than $0.00.")
    charge = session.get(Charge, charge.id, with_for_update=True, populate_existing=True)
    appointment = session.get(Appointment, charge.appointment_id)
    attempt = captured_attempt(session, charge)
    if attempt is None or charge.amount_captured_cents <= 0:
        raise NotRefundable("Nothing was captured for this payment, so there is nothing to refund.")
    from app.services import disputes             # Stripe's rules first: a disputed charge is not refunded

    disputed = disputes.blocking_refund(session, charge.id) if policy in DISPUTE_CHECKED else None
    if disputed is not None:
        raise ChargeDisputed(LOST_TO_DISPUTE if disputed.status == "lost" else DISPUTED)
    remaining = refundable_cents(charge)
    if amount_cents > remaining:
        audit.record(session, actor=actor, action="refund.refused", outcome="failure", reason=clinical_reason,
                     patient_id=appointment.patient_id, appointment_id=appointment.id,
                     payment_attempt_id=attempt.id, stripe_object_id=attempt.stripe_payment_intent_id,
                     authorized_by=authorized_by.id if authorized_by else None,
                     details={"charge_id": charge.id, "requested_cents": amount_cents, "refundable_cents": remaining,
                              "captured_cents": charge.amount_captured_cents, "policy": policy,
                              "why": "over-refund"})
        raise OverRefund(amount_cents, remaining, charge.amount_captured_cents)
    refund = Refund(charge_id=charge.id, attempt_id=attempt.id, amount_cents=amount_cents,
                    stripe_reason=stripe_reason, clinical_reason=clinical_reason, policy=policy,
                    authorized_by_id=authorized_by.id if authorized_by else None, status="creating",
                    created_at=now)
    session.add(refund)
    charge.amount_refunded_cents += amount_cents      # reserved now: two refunds at once never exceed it
    session.flush()
    _audit(session, refund, charge, appointment, actor=actor, action="refund.requested",
           details={"at": now.isoformat(), "refundable_before_cents": remaining})
    return refund


# -- step 2: after the commit, tell Stripe ---------------------------------------------------------

def send_refund(session: Session, gateway: StripeGateway, refund: Refund, *, actor: Actor, now: datetime) -> Refund:
    """Create the Stripe refund (idempotent on the refund's UUID) and record it. The caller commits.

    Raises GatewayUnavailable when Stripe could not be reached (the refund stays
    ``creating``; retrying with the same key is safe) and RefundNotSent when
    Stripe refused it (marked failed, its amount released)."""
    refund = session.get(Refund, refund.id, with_for_update=True, populate_existing=True)
    if refund.status != "creating":
        return refund                                   # sent already (a retry, a second job)
    attempt = session.get(PaymentAttempt, refund.attempt_id)
    charge = session.get(Charge, refund.charge_id)
    appointment = session.get(Appointment, charge.appointment_id)
    metadata = {"refund_uuid": str(refund.uuid), "charge_id": str(charge.id), "appointment_id": str(appointment.id),
                "attempt_uuid": str(attempt.uuid)}
    try:
        result = gateway.create_refund(key=f"{refund.uuid}:create", payment_intent=attempt.stripe_payment_intent_id,
                                       amount=refund.amount_cents, reason=refund.stripe_reason, metadata=metadata)
    except GatewayUnavailable:
        raise
    except GatewayError as error:
        session.get(Charge, charge.id, with_for_update=True, populate_existing=True)
        refund.mirror("failed")                         # creating -> failed: Stripe refused it
        charge.amount_refunded_cents -= refund.amount_cents
        session.flush()
        _audit(session, refund, charge, appointment, actor=actor, action="refund.failed", outcome="failure",
               details={"error": str(error)[:200], "at": now.isoformat()})
        if _code(error.__cause__) == "charge_disputed":   # Stripe knew of a dispute before we did
            from app.services import disputes

            disputes.sync_payment_intent(session, attempt.stripe_payment_intent_id, actor=actor, now=now)
            raise DisputedAtStripe() from error
        raise RefundNotSent("Stripe refused this refund; nothing was refunded.") from error
    if result.amount != refund.amount_cents:
        log.error("refund %s: Stripe refunded %s, we asked %s", refund.id, result.amount, refund.amount_cents)
    refund.stripe_refund_id = result.id
    refund.mirror(result.status)
    if refund.is_final:                                 # failed or canceled at once: nothing moves
        session.get(Charge, charge.id, with_for_update=True, populate_existing=True)
        charge.amount_refunded_cents -= refund.amount_cents
    session.flush()
    _audit(session, refund, charge, appointment, actor=actor, action="refund.created",
           details={"stripe_status": result.status, "at": now.isoformat()})
    if refund.status in ("pending", "succeeded"):
        _tell_patient(session, refund, appointment, now=now)
    return refund


def _tell_patient(session: Session, refund: Refund, appointment: Appointment, *, now: datetime) -> None:
    from app.services import notifications

    notifications.queue(session, dedupe_key=f"refund_issued:{refund.uuid}", template="refund_issued",
                        user=appointment.patient.user, appointment=appointment, scheduled_for=now,
                        context={"amount": money(refund.amount_cents)}, prefer="email")


def unsent(session: Session, *, older_than: datetime, limit: int = 100) -> list[int]:
    """Refunds stored but not yet confirmed by Stripe (a crash or an outage between the two steps)."""
    return list(session.scalars(select(Refund.id).where(Refund.status == "creating", Refund.created_at <= older_than)
                                .order_by(Refund.id).limit(limit)))


# -- the cancellation policy -------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyDecision:
    rule: str                 # staff_cancel | before_window | late_none | late_fee | nothing_captured
    amount_cents: int
    policy: str
    clinical_reason: str
    authorized_by: User | None


def decide(session: Session, appointment: Appointment, charge: Charge) -> PolicyDecision:
    """What the cancellation policy gives back for this canceled appointment's captured charge."""
    captured = charge.amount_captured_cents
    canceled_by = session.get(User, appointment.canceled_by_id) if appointment.canceled_by_id else None
    if canceled_by is not None and canceled_by.role in STAFF_ROLES:
        return PolicyDecision("staff_cancel", captured, "staff_cancel",
                              "canceled by the clinic: refunded in full", canceled_by)
    appt_type = appointment.type
    canceled_at = appointment.canceled_at
    window_start = appointment.starts_at - timedelta(hours=appt_type.cancellation_window_hours)
    if canceled_at is not None and canceled_at <= window_start:
        return PolicyDecision("before_window", captured, "cancellation_policy",
                              "canceled before the cancellation window", None)
    if appt_type.late_cancel_policy == "fee":
        fee = min(appt_type.late_cancel_fee_cents, captured)
        return PolicyDecision("late_fee", captured - fee, "cancellation_policy",
                              f"canceled within the cancellation window: late-cancel fee of {money(fee)} kept",
                              None)
    return PolicyDecision("late_none", 0, "cancellation_policy",
                          "canceled within the cancellation window: no refund under the late-cancel policy", None)


def policy_refund(session: Session, appointment: Appointment, *, actor: Actor, now: datetime) -> list[Refund]:
    """Apply the cancellation policy to a canceled appointment, once. Returns the refunds to send
    (stored in ``creating``, including ones a previous run stored but did not send)."""
    if appointment.status != "canceled":
        return []
    to_send = []
    charges = session.scalars(select(Charge).where(Charge.appointment_id == appointment.id).order_by(Charge.id)
                              .with_for_update()).all()
    for charge in charges:
        if charge.amount_captured_cents <= 0:
            continue                                  # never captured: its authorization is canceled elsewhere
        existing = session.scalars(select(Refund).where(
            Refund.charge_id == charge.id, Refund.policy.in_(("cancellation_policy", "staff_cancel")))).all()
        if existing or _policy_applied(session, appointment.id, charge.id):
            to_send.extend(r for r in existing if r.status == "creating")
            continue
        decision = decide(session, appointment, charge)
        amount = min(decision.amount_cents, refundable_cents(charge))
        attempt = captured_attempt(session, charge)
        audit.record(session, actor=actor, action="refund.policy_applied", reason=decision.clinical_reason,
                     patient_id=appointment.patient_id, appointment_id=appointment.id,
                     payment_attempt_id=attempt.id if attempt else None,
                     authorized_by=decision.authorized_by.id if decision.authorized_by else None,
                     details={"charge_id": charge.id, "rule": decision.rule,
                              "captured_cents": charge.amount_captured_cents, "refund_cents": amount,
                              "canceled_at": appointment.canceled_at.isoformat() if appointment.canceled_at else None,
                              "cancellation_window_hours": appointment.type.cancellation_window_hours,
                              "late_cancel_policy": appointment.type.late_cancel_policy,
                              "late_cancel_fee_cents": appointment.type.late_cancel_fee_cents})
        if amount <= 0:
            continue
        try:
            to_send.append(open_refund(session, charge=charge, amount_cents=amount,
                                       stripe_reason="requested_by_customer", clinical_reason=decision.clinical_reason,
                                       policy=decision.policy, authorized_by=decision.authorized_by, actor=actor,
                                       now=now))
        except ChargeDisputed as refused:           # the dispute decides this money (decided once: audited)
            audit.record(session, actor=actor, action="refund.refused", outcome="failure",
                         reason=decision.clinical_reason, patient_id=appointment.patient_id,
                         appointment_id=appointment.id, payment_attempt_id=attempt.id if attempt else None,
                         details={"charge_id": charge.id, "requested_cents": amount, "policy": decision.policy,
                                  "why": "disputed", "message": str(refused)})
    return to_send


def _policy_applied(session: Session, appointment_id: int, charge_id: int) -> bool:
    """Decided already (e.g. 'late, no refund'): the audit row says so. Read under the charge's lock."""
    rows = session.scalars(select(AuditEvent.details).where(AuditEvent.appointment_id == appointment_id,
                                                            AuditEvent.action == "refund.policy_applied")).all()
    return any((details or {}).get("charge_id") == charge_id for details in rows)


# -- what pages show -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PaymentState:
    label: str                # "Paid $125.00", "Refunded $25.00 of $125.00", "Payment pending", ... (lazy: the viewer's language)
    kind: str                 # paid | partly_refunded | refunded | pending | authorized | canceled | none
    captured_cents: int = 0
    refunded_cents: int = 0
    has_receipt: bool = False

    @property
    def net_cents(self) -> int:
        return self.captured_cents - self.refunded_cents


def refunds_of(session: Session, charge_ids) -> list[Refund]:
    ids = list(charge_ids)
    if not ids:
        return []
    return list(session.scalars(select(Refund).where(Refund.charge_id.in_(ids)).order_by(Refund.created_at,
                                                                                         Refund.id)))


def payment_states(session: Session, appointments) -> dict[int, PaymentState]:
    """The payment state of each appointment (two queries for any number of them)."""
    appts = list(appointments)
    ids = [a.id for a in appts]
    if not ids:
        return {}
    charges = session.scalars(select(Charge).where(Charge.appointment_id.in_(ids)).order_by(Charge.id)).all()
    done = {}
    for r in refunds_of(session, [c.id for c in charges]):
        if r.status in ("pending", "succeeded"):
            done[r.charge_id] = done.get(r.charge_id, 0) + r.amount_cents
    by_appt: dict[int, list[Charge]] = {}
    for c in charges:
        by_appt.setdefault(c.appointment_id, []).append(c)
    states = {}
    for appt in appts:
        states[appt.id] = _state(appt, by_appt.get(appt.id, []), done)
    return states


def _state(appointment: Appointment, charges: list[Charge], done: dict[int, int]) -> PaymentState:
    captured = sum(c.amount_captured_cents for c in charges)
    refunded = sum(done.get(c.id, 0) for c in charges)
    if captured > 0:
        if refunded >= captured:
            return PaymentState(_l("Refunded %(amount)s", amount=money(refunded)), "refunded", captured, refunded, True)
        if refunded > 0:
            return PaymentState(_l("Paid %(paid)s · Refunded %(refunded)s", paid=money(captured), refunded=money(refunded)),
                                "partly_refunded",
                                captured, refunded, True)
        return PaymentState(_l("Paid %(amount)s", amount=money(captured)), "paid", captured, 0, True)
    statuses = {c.status for c in charges}
    if "authorized" in statuses:
        return PaymentState(_l("Authorized %(amount)s", amount=money(sum(c.amount_cents for c in charges))), "authorized")
    if appointment.payment_timing == "hybrid" and appointment.status == "held":
        return PaymentState(_l("Deposit pending"), "pending")          # the estimate's deposit, not the price
    if appointment.payment_timing != "deposit_to_book" or appointment.price_cents <= 0:
        return PaymentState(_l("Nothing due at booking") if appointment.price_cents > 0 else _l("No charge"), "none")
    if appointment.status in ("canceled", "released", "no_show"):
        return PaymentState(_l("Not charged"), "canceled")
    return PaymentState(_l("Payment pending"), "pending")
