"""The audit chain of one appointment: Patient -> Appointment -> every PaymentAttempt,
failed confirmation, capture and Refund (with Stripe ids) -> outcome.

Built from the audit trail (who did each step, when and why), in chain order
(``seq``), enriched from the payment tables (decline codes, refund amounts,
clinical reasons and who authorized them). A Refund row with no audit row of
its own still appears, from the table. The page and both exports show the
same rows; opening either is itself audited (``audit.chain_viewed`` /
``audit.chain_exported``). No function here commits.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.models import Appointment, AuditEvent, Charge, PaymentAttempt, Refund, User
from app.services import audit
from app.services.audit import Actor

VIEW_ACTIONS = ("audit.chain_viewed", "audit.chain_exported")
COLUMNS = ("step", "at", "stage", "action", "actor", "actor_role", "outcome", "reason", "authorized_by",
           "payment_attempt_id", "stripe_id", "amount_cents", "decline_code", "audit_seq")


@dataclass
class Step:
    step: int
    at: datetime
    stage: str                  # patient | appointment | payment | decline | capture | refund | message | ...
    action: str
    actor: str                  # a name, or system / job / webhook
    actor_role: str | None
    outcome: str
    reason: str | None = None
    authorized_by: str | None = None
    payment_attempt_id: int | None = None
    stripe_id: str | None = None
    amount_cents: int | None = None
    decline_code: str | None = None
    audit_seq: int | None = None

    def row(self) -> dict:
        values = asdict(self)
        values["at"] = self.at.isoformat()
        return values


@dataclass
class Chain:
    appointment: Appointment
    steps: list[Step] = field(default_factory=list)
    captured_cents: int = 0
    refunded_cents: int = 0

    @property
    def net_cents(self) -> int:
        return self.captured_cents - self.refunded_cents

    def rows(self) -> list[dict]:
        return [step.row() for step in self.steps]


def _stage(action: str) -> str:
    if action == "payment.declined":
        return "decline"
    if action == "payment.captured":
        return "capture"
    if action.startswith("refund."):
        return "refund"
    if action.startswith("payment.") or action.startswith("stripe."):
        return "payment"
    if action.startswith("notification."):
        return "message"
    if action.startswith("provider_alert."):
        return "alert"
    if action.startswith("visit.") or action.startswith("encounter."):
        return "care"
    return "appointment"


class _Names:
    def __init__(self, session: Session):
        self.session, self.cache = session, {}

    def user(self, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        if user_id not in self.cache:
            user = self.session.get(User, user_id)
            self.cache[user_id] = f"{user.full_name} ({user.role})" if user else f"user {user_id}"
        return self.cache[user_id]

    def actor(self, event: AuditEvent) -> str:
        if event.actor_type == "user":
            name = self.user(event.actor_id)
            return name.rsplit(" (", 1)[0] if name else "unknown user"
        return event.actor_type


def build(session: Session, appointment: Appointment) -> Chain:
    names = _Names(session)
    chain = Chain(appointment)
    charges = list(session.scalars(select(Charge).where(Charge.appointment_id == appointment.id)
                                   .order_by(Charge.id)))
    attempts = list(session.scalars(select(PaymentAttempt).where(
        PaymentAttempt.charge_id.in_([c.id for c in charges])).order_by(PaymentAttempt.id))) if charges else []
    refunds = list(session.scalars(select(Refund).where(
        Refund.charge_id.in_([c.id for c in charges])).order_by(Refund.id))) if charges else []
    intent_ids = [a.stripe_payment_intent_id for a in attempts if a.stripe_payment_intent_id]
    refund_by_stripe = {r.stripe_refund_id: r for r in refunds if r.stripe_refund_id}
    refund_by_id = {r.id: r for r in refunds}

    patient_user = appointment.patient.user
    chain.steps.append(Step(0, patient_user.created_at, "patient", "patient.account", patient_user.full_name,
                            "patient", "success", reason=f"patient {appointment.patient_id}; account since "
                                                         f"{patient_user.created_at.date().isoformat()}"))

    wanted = [AuditEvent.appointment_id == appointment.id]
    if attempts:
        wanted.append(AuditEvent.payment_attempt_id.in_([a.id for a in attempts]))
    stripe_ids = intent_ids + list(refund_by_stripe)
    if stripe_ids:
        wanted.append(AuditEvent.stripe_object_id.in_(stripe_ids))
    events = session.scalars(select(AuditEvent).where(or_(*wanted), AuditEvent.action.not_in(VIEW_ACTIONS))
                             .order_by(AuditEvent.seq)).all()
    seen_refunds: set[int] = set()
    for event in events:
        details = event.details or {}
        step = Step(0, event.occurred_at, _stage(event.action), event.action, names.actor(event),
                    event.actor_role if event.actor_type == "user" else event.actor_type, event.outcome,
                    reason=event.reason, authorized_by=names.user(event.authorized_by),
                    payment_attempt_id=event.payment_attempt_id, stripe_id=event.stripe_object_id,
                    amount_cents=details.get("amount_cents"), audit_seq=event.seq)
        if event.action == "payment.declined":
            step.decline_code = details.get("decline_code") or details.get("code")
        if event.action == "payment.captured":
            step.amount_cents = details.get("amount_received", step.amount_cents)
        refund = refund_by_stripe.get(event.stripe_object_id) or refund_by_id.get(details.get("refund_id"))
        if refund is not None and step.stage == "refund":
            seen_refunds.add(refund.id)
            step.stripe_id = refund.stripe_refund_id or step.stripe_id
            step.amount_cents = refund.amount_cents
            step.reason = step.reason or refund.clinical_reason
            step.authorized_by = step.authorized_by or names.user(refund.authorized_by_id)
            step.payment_attempt_id = step.payment_attempt_id or refund.attempt_id
        chain.steps.append(step)
    for refund in refunds:                  # money given back must appear even without its own audit row
        if refund.id not in seen_refunds:
            chain.steps.append(Step(0, refund.created_at, "refund", "refund." + refund.status, "(payments table)",
                                    None, refund.status, reason=refund.clinical_reason,
                                    authorized_by=names.user(refund.authorized_by_id),
                                    payment_attempt_id=refund.attempt_id, stripe_id=refund.stripe_refund_id,
                                    amount_cents=refund.amount_cents))

    chain.captured_cents = sum(c.amount_captured_cents for c in charges)
    chain.refunded_cents = sum(r.amount_cents for r in refunds if r.status in ("pending", "succeeded"))
    last = max((s.at for s in chain.steps), default=appointment.created_at)
    chain.steps.append(Step(0, last, "outcome", f"outcome.{appointment.status}", "system", None, "success",
                            reason=(f"appointment {appointment.status}; captured {chain.captured_cents}, "
                                    f"refunded {chain.refunded_cents}, net {chain.net_cents} (cents)"),
                            amount_cents=chain.net_cents))
    for number, step in enumerate(chain.steps, start=1):
        step.step = number
    return chain


def record_access(session: Session, chain: Chain, *, actor: Actor, export: str | None = None) -> None:
    """Opening the chain (or exporting it) is itself an audit event."""
    appointment = chain.appointment
    audit.record(session, actor=actor, action="audit.chain_exported" if export else "audit.chain_viewed",
                 patient_id=appointment.patient_id, appointment_id=appointment.id,
                 details={"steps": len(chain.steps), **({"format": export} if export else {})})


def to_csv(chain: Chain) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in chain.rows():
        writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})
    return out.getvalue()


def to_json(chain: Chain) -> str:
    appointment = chain.appointment
    return json.dumps({
        "appointment_id": appointment.id, "patient_id": appointment.patient_id,
        "provider_id": appointment.provider_id, "status": appointment.status,
        "captured_cents": chain.captured_cents, "refunded_cents": chain.refunded_cents,
        "net_cents": chain.net_cents, "columns": list(COLUMNS), "steps": chain.rows(),
    }, indent=2)
