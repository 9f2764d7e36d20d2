"""The audit chain of one appointment: Patient -> (intake) -> Appointment -> card setup and consent
-> encounter (opened, signed with its content hash, addenda) -> the signed billing lines -> every
PaymentAttempt, failed confirmation, capture and Refund (with Stripe ids) -> recovery and
collections of a post-visit charge -> outcome.

Built from the audit trail (who did each step, when and why), in chain order
(``seq``), enriched from the payment tables (decline codes, refund amounts,
clinical reasons and who authorized them). A Refund row with no audit row of
its own still appears, from the table; so do the signed encounter's lines (one ``encounter.line``
step each, right after the signature: code, units, amount as signed) and a consent with no audit
row. No note text and no diagnosis ever appears: encounter steps carry codes, hashes and amounts. The page and both exports show the
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

from app.models import (Appointment, AuditEvent, Charge, CollectionCase, Encounter, PaymentAttempt, PaymentConsent,
                        Refund, User)
from app.services import audit
from app.services.audit import Actor

VIEW_ACTIONS = ("audit.chain_viewed", "audit.chain_exported")
COLUMNS = ("step", "at", "stage", "action", "actor", "actor_role", "outcome", "reason", "authorized_by",
           "payment_attempt_id", "stripe_id", "amount_cents", "decline_code", "audit_seq",
           "encounter_id", "code", "units", "content_hash")


@dataclass
class Step:
    step: int
    at: datetime
    stage: str                  # patient | intake | appointment | card | encounter | signature | codes | addendum
    #                             | payment | decline | capture | refund | charge | recovery | collections | paid
    #                             | message | alert | care | dispute | payout | outcome
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
    encounter_id: int | None = None
    code: str | None = None         # a billing line's system, code and modifier ("HCPCS G2012-95")
    units: int | None = None
    content_hash: str | None = None  # of the signed note, or of an addendum

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
    encounter: Encounter | None = None
    attempts: list[PaymentAttempt] = field(default_factory=list)
    case: CollectionCase | None = None

    @property
    def net_cents(self) -> int:
        return self.captured_cents - self.refunded_cents

    def rows(self) -> list[dict]:
        return [step.row() for step in self.steps]


# The post-visit actions (issue 14): encounter, card set-up, visit charge and collections.
POST_VISIT_STAGES = {
    "encounter.signed": "signature",
    "encounter.addendum": "addendum",
    "visit_charge.opened": "charge",
    "visit_charge.attempted": "charge",
    "visit_charge.failed": "decline",
    "visit_charge.paid": "paid",
    "card.needed": "card",
}


# The hybrid timing (issue 15): intake -> eligibility -> estimate -> deposit -> appointment -> encounter
# -> claim -> remittance -> reconciliation -> balance charge / refund -> outcome.
HYBRID_PREFIXES = (("eligibility.", "eligibility"), ("estimate.", "estimate"), ("estimates.", "estimate"),
                   ("gfe.", "estimate"), ("claim.", "claim"), ("remittance.", "remittance"),
                   ("reconciliation.", "reconciliation"))


def _stage(action: str) -> str:
    if action in POST_VISIT_STAGES:
        return POST_VISIT_STAGES[action]
    for prefix, stage in HYBRID_PREFIXES:
        if action.startswith(prefix):
            return stage
    if action.startswith("intake."):
        return "intake"
    if action.startswith(("card_setup.", "consent.")):
        return "card"
    if action.startswith("encounter."):
        return "encounter"
    if action.startswith("visit_charge."):
        return "recovery"
    if action.startswith("collections."):
        return "collections"
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
    if action.startswith("dispute."):
        return "dispute"          # issue 16: opened, reviewed, submitted, won / lost (app/services/disputes.py)
    if action.startswith("payout."):
        return "payout"           # issue 16: the provider's share: split, transferred, reversed, paid out
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


def _line_steps(encounter: Encounter, at: datetime, actor: str, actor_role: str | None) -> list[Step]:
    """One step per signed billing line: code, units and the amount copied on at signing."""
    return [Step(0, at, "codes", "encounter.line", actor, actor_role, "success",
                 encounter_id=encounter.id,
                 code=" ".join(filter(None, [line.code_system, line.code + (f"-{line.modifier}" if line.modifier
                                                                             else "")])),
                 units=line.units, amount_cents=line.amount_cents)
            for line in encounter.lines]


def _money_words(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def build(session: Session, appointment: Appointment) -> Chain:
    names = _Names(session)
    chain = Chain(appointment)
    charges = list(session.scalars(select(Charge).where(Charge.appointment_id == appointment.id)
                                   .order_by(Charge.id)))
    attempts = list(session.scalars(select(PaymentAttempt).where(
        PaymentAttempt.charge_id.in_([c.id for c in charges])).order_by(PaymentAttempt.id))) if charges else []
    refunds = list(session.scalars(select(Refund).where(
        Refund.charge_id.in_([c.id for c in charges])).order_by(Refund.id))) if charges else []
    encounter = session.scalar(select(Encounter).where(Encounter.appointment_id == appointment.id))
    case = session.scalar(select(CollectionCase).where(CollectionCase.appointment_id == appointment.id)
                          .order_by(CollectionCase.id.desc()).limit(1))
    consents = list(session.scalars(select(PaymentConsent).where(PaymentConsent.appointment_id == appointment.id)
                                    .order_by(PaymentConsent.id)))
    chain.encounter, chain.attempts, chain.case = encounter, attempts, case
    intent_ids = [a.stripe_payment_intent_id for a in attempts if a.stripe_payment_intent_id]
    refund_by_stripe = {r.stripe_refund_id: r for r in refunds if r.stripe_refund_id}
    refund_by_id = {r.id: r for r in refunds}

    patient_user = appointment.patient.user
    chain.steps.append(Step(0, patient_user.created_at, "patient", "patient.account", patient_user.full_name,
                            "patient", "success", reason=f"patient {appointment.patient_id}; account since "
                                                         f"{patient_user.created_at.date().isoformat()}"))
    hybrid = _hybrid_context(session, appointment, charges) if appointment.payment_timing == "hybrid" else None

    wanted = [AuditEvent.appointment_id == appointment.id]
    if attempts:
        wanted.append(AuditEvent.payment_attempt_id.in_([a.id for a in attempts]))
    stripe_ids = intent_ids + list(refund_by_stripe)
    if stripe_ids:
        wanted.append(AuditEvent.stripe_object_id.in_(stripe_ids))
    if encounter is not None:
        wanted.append(AuditEvent.encounter_id == encounter.id)
    events = session.scalars(select(AuditEvent).where(or_(*wanted), AuditEvent.action.not_in(VIEW_ACTIONS))
                             .order_by(AuditEvent.seq)).all()
    seen_refunds: set[int] = set()
    lines_shown = consent_shown = False
    for event in events:
        details = event.details or {}
        step = Step(0, event.occurred_at, _stage(event.action), event.action, names.actor(event),
                    event.actor_role if event.actor_type == "user" else event.actor_type, event.outcome,
                    reason=event.reason, authorized_by=names.user(event.authorized_by),
                    payment_attempt_id=event.payment_attempt_id, stripe_id=event.stripe_object_id,
                    amount_cents=details.get("amount_cents"), audit_seq=event.seq,
                    encounter_id=event.encounter_id)
        if event.action == "payment.declined":
            step.decline_code = details.get("decline_code") or details.get("code")
        if event.action == "visit_charge.failed":
            step.decline_code = details.get("code") or details.get("decline_code")
            step.reason = step.reason or (f"failure: {details['kind']}" if details.get("kind") else None)
        if event.action == "payment.captured":
            step.amount_cents = details.get("amount_received", step.amount_cents)
        if event.action in ("encounter.signed", "encounter.addendum"):
            step.content_hash = details.get("content_hash")
        if event.action == "encounter.signed":
            step.amount_cents = details.get("total_cents", step.amount_cents)
        if event.action.startswith("encounter.line_") and details.get("code"):
            step.code = " ".join(filter(None, [details.get("system"), details["code"] + (
                f"-{details['modifier']}" if details.get("modifier") else "")]))
            step.units = details.get("units")
        if event.action == "consent.recorded":
            consent_shown = True
        if hybrid is not None:
            _hybrid_step(step, event, hybrid)
        refund = refund_by_stripe.get(event.stripe_object_id) or refund_by_id.get(details.get("refund_id"))
        if refund is not None and step.stage == "refund":
            seen_refunds.add(refund.id)
            step.stripe_id = refund.stripe_refund_id or step.stripe_id
            step.amount_cents = refund.amount_cents
            step.reason = step.reason or refund.clinical_reason
            step.authorized_by = step.authorized_by or names.user(refund.authorized_by_id)
            step.payment_attempt_id = step.payment_attempt_id or refund.attempt_id
        chain.steps.append(step)
        if event.action == "encounter.signed" and encounter is not None and encounter.is_signed and not lines_shown:
            chain.steps.extend(_line_steps(encounter, event.occurred_at, step.actor, step.actor_role))
            lines_shown = True
    if encounter is not None and encounter.is_signed and not lines_shown:
        # A signature with no audit row of its own (it never happens through the EMR): from the table.
        chain.steps.append(Step(0, encounter.signed_at, "signature", "encounter.signed", "(encounter table)", None,
                                "success", encounter_id=encounter.id, content_hash=encounter.content_hash,
                                amount_cents=encounter.total_cents, authorized_by=names.user(encounter.signed_by_id)))
        chain.steps.extend(_line_steps(encounter, encounter.signed_at, "(encounter table)", None))
    if hybrid is not None:
        _hybrid_table_steps(chain, hybrid)
    if not consent_shown:
        for consent in consents:        # the consent is evidence: it appears even without its own audit row
            card = f"{(consent.card_brand or 'card').title()} {consent.card_last4}" if consent.card_last4 else "card"
            chain.steps.append(Step(0, consent.accepted_at, "card", "consent.recorded", "(consents table)", None,
                                    "success", reason=f"{consent.kind.replace('_', ' ')}; wording "
                                                      f"{consent.wording_version}; {card}"))
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
    money_words = (f"captured {chain.captured_cents}, refunded {chain.refunded_cents}, "
                   f"net {chain.net_cents} (cents)")
    if hybrid is not None and hybrid["reconciliation"] is not None:
        row = hybrid["reconciliation"]
        words = (f"appointment {appointment.status}; insurance paid {row.insurance_paid_cents}, patient's share "
                 f"{row.patient_responsibility_cents}, deposit {row.paid_cents}, written off {row.written_off_cents}"
                 f" (cents); {row.outcome.replace('_', ' ')}")
        if case is not None:
            words += f" ({case.status})"
        chain.steps.append(Step(0, last, "outcome", f"outcome.{row.outcome}", "system", None, "success",
                                reason=f"{words}; {money_words}", amount_cents=chain.net_cents,
                                encounter_id=encounter.id if encounter else None))
    elif case is not None:
        charge = next((c for c in charges if c.id == case.charge_id), None)
        balance = max(0, charge.amount_cents - charge.amount_captured_cents) if charge is not None else 0
        words = f"appointment {appointment.status}; visit charge {case.status}"
        if case.recovered and case.status == "paid":
            words += " (recovered after a failure)"
        if case.status == "written_off":
            words += f", {_money_words(balance)} written off: {case.written_off_reason}"
        elif balance:
            words += f", balance due {balance} (cents)"
        chain.steps.append(Step(0, last, "outcome", f"outcome.{case.status}", "system", None,
                                "success", reason=f"{words}; {money_words}", amount_cents=chain.net_cents,
                                authorized_by=names.user(case.written_off_by_id),
                                encounter_id=case.encounter_id))
    else:
        chain.steps.append(Step(0, last, "outcome", f"outcome.{appointment.status}", "system", None, "success",
                                reason=f"appointment {appointment.status}; {money_words}",
                                amount_cents=chain.net_cents))
    for number, step in enumerate(chain.steps, start=1):
        step.step = number
    return chain


# -- the hybrid timing's steps (issue 15) ------------------------------------------------------------

def _hybrid_context(session: Session, appointment: Appointment, charges: list[Charge]) -> dict:
    from app.models import Claim, Coverage, EligibilityCheck, Estimate, Intake, Reconciliation, Remittance

    claims = list(session.scalars(select(Claim).where(Claim.appointment_id == appointment.id).order_by(Claim.id)))
    estimates = list(session.scalars(select(Estimate).where(Estimate.appointment_id == appointment.id)
                                     .order_by(Estimate.id)))
    coverage_ids = {e.coverage_id for e in estimates if e.coverage_id} | {c.coverage_id for c in claims}
    checks = list(session.scalars(select(EligibilityCheck).where(or_(
        EligibilityCheck.appointment_id == appointment.id,
        EligibilityCheck.id.in_([e.eligibility_check_id for e in estimates if e.eligibility_check_id])))
        .order_by(EligibilityCheck.checked_at)))
    payers = {c.id: c.payer_id for c in session.scalars(select(Coverage).where(Coverage.id.in_(
        coverage_ids | {c.coverage_id for c in checks})))} if (coverage_ids or checks) else {}
    remittances = {r.claim_id: r for r in session.scalars(select(Remittance).where(
        Remittance.claim_id.in_([c.id for c in claims])))} if claims else {}
    return {
        "intakes": list(session.scalars(select(Intake).where(Intake.appointment_id == appointment.id)
                                        .order_by(Intake.id))),
        "checks": checks, "estimates": estimates, "claims": {c.id: c for c in claims}, "payers": payers,
        "remittances": remittances,
        "reconciliation": session.scalar(select(Reconciliation).where(
            Reconciliation.appointment_id == appointment.id)),
        "deposit_ids": {c.id for c in charges if c.purpose == "deposit"},
        "balance_ids": {c.id for c in charges if c.purpose == "balance"},
        "attempt_charge": {a.id: a.charge_id for c in charges for a in c.attempts},
        "deposit_attempts": [a for c in charges if c.purpose == "deposit" for a in c.attempts
                             if a.status == "succeeded" and a.amount_captured_cents],
        "seen": set(),
    }


def _hybrid_step(step: Step, event: AuditEvent, ctx: dict) -> None:
    """Deposit and balance stages; who or which payer and why, for claims and remittances."""
    details = event.details or {}
    charge_id = ctx["attempt_charge"].get(event.payment_attempt_id) or details.get("charge_id")
    if charge_id in ctx["deposit_ids"] and step.stage in ("payment", "capture", "decline", "card"):
        step.stage = "deposit"
    elif charge_id in ctx["balance_ids"] and step.stage in ("payment", "capture", "decline", "charge", "recovery",
                                                          "paid"):
        step.stage = "balance"
    # Seen under its final stage: a deposit with its own audit rows is not added again from the table.
    ctx["seen"].add(step.stage)
    claim = ctx["claims"].get(details.get("claim_id"))
    if claim is not None and step.stage in ("claim", "remittance"):
        payer = ctx["payers"].get(claim.coverage_id)
        words = f"{claim.rank} claim {claim.id} to payer {payer}"
        if step.stage == "remittance":
            step.actor = f"payer {payer}" if event.actor_type != "user" else step.actor
            remittance = ctx["remittances"].get(claim.id)
            if remittance is not None and event.action == "remittance.applied":
                labels = sorted({_label(a) for line in remittance.lines for a in line.get("adjustments", [])})
                words += f": paid {remittance.paid_cents}, patient {remittance.patient_responsibility_cents} " \
                         f"(cents); {', '.join(labels)}"
                step.amount_cents = remittance.paid_cents
        step.reason = f"{step.reason}; {words}" if step.reason else words
        step.amount_cents = step.amount_cents if step.amount_cents is not None else details.get("billed_cents")
    if event.action == "reconciliation.decided":
        step.amount_cents = details.get("amount_cents")


def _label(adjustment: dict) -> str:
    from app.services.claims import adjustment_label

    return adjustment_label(adjustment)


def _hybrid_table_steps(chain: Chain, ctx: dict) -> None:
    """Intake, eligibility and estimate from their tables when no audit row of that stage names the
    appointment (they happen before the booking exists): placed right after the patient, by time."""
    early = []
    if "intake" not in ctx["seen"]:
        early += [Step(0, i.submitted_at or i.created_at, "intake", f"intake.{i.status}", "(intake table)", None,
                       "success", reason=f"intake {i.id}") for i in ctx["intakes"]]
    if "eligibility" not in ctx["seen"]:
        early += [Step(0, c.checked_at, "eligibility", f"eligibility.{c.status}", "(eligibility table)", None,
                       "success" if c.status == "active" else "failure",
                       reason=f"check {c.id} ({c.trigger}) with payer {ctx['payers'].get(c.coverage_id)}: {c.status}")
                  for c in ctx["checks"]]
    if "estimate" not in ctx["seen"]:
        early += [Step(0, e.created_at, "estimate", "estimate.built", "(estimates table)", None, "success",
                       reason=f"estimate {e.id} ({e.kind}{', good faith' if e.good_faith else ''}): patient "
                              f"{e.patient_cents}, deposit {e.deposit_cents} (cents)", amount_cents=e.patient_cents)
                  for e in ctx["estimates"]]
    early.sort(key=lambda s: s.at)
    chain.steps[1:1] = early
    if "deposit" not in ctx["seen"]:           # money taken must appear even without its own audit row
        steps = [Step(0, a.captured_at or a.updated_at, "deposit", "payment.captured", "(payments table)", None,
                      "success", payment_attempt_id=a.id, stripe_id=a.stripe_payment_intent_id,
                      amount_cents=a.amount_captured_cents, reason="hybrid deposit")
                 for a in ctx["deposit_attempts"]]
        chain.steps[1 + len(early):1 + len(early)] = steps


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


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def post_visit(chain: Chain) -> dict:
    """The post-visit records the steps refer to, as the database holds them: the encounter (status,
    content hash, the signed lines: code, units, amounts; no note text, no diagnosis), every payment
    attempt and the collections case."""
    encounter, case = chain.encounter, chain.case
    return {
        "encounter": None if encounter is None else {
            "id": encounter.id, "status": encounter.status, "signed_at": _iso(encounter.signed_at),
            "content_hash": encounter.content_hash, "total_cents": encounter.total_cents,
            "lines": [{"position": l.position, "code_system": l.code_system, "code": l.code,
                       "modifier": l.modifier, "units": l.units, "unit_price_cents": l.unit_price_cents,
                       "amount_cents": l.amount_cents} for l in encounter.lines] if encounter.is_signed else [],
            "addenda": [{"id": a.id, "signed_at": _iso(a.signed_at), "content_hash": a.content_hash}
                        for a in encounter.addenda],
        },
        "attempts": [{"id": a.id, "charge_id": a.charge_id, "number": a.number, "status": a.status,
                      "amount_cents": a.amount_cents, "amount_captured_cents": a.amount_captured_cents,
                      "stripe_payment_intent_id": a.stripe_payment_intent_id} for a in chain.attempts],
        "case": None if case is None else {
            "id": case.id, "charge_id": case.charge_id, "status": case.status, "failure_kind": case.failure_kind,
            "failure_code": case.failure_code, "retries_done": case.retries_done, "recovered": case.recovered,
            "final_notice_at": _iso(case.final_notice_at), "agency_at": _iso(case.agency_at),
            "plan_instalments": case.plan_instalments, "plan_paid": case.plan_paid,
            "written_off_by_id": case.written_off_by_id, "resolved_at": _iso(case.resolved_at),
        },
    }


def to_json(chain: Chain) -> str:
    appointment = chain.appointment
    return json.dumps({
        "appointment_id": appointment.id, "patient_id": appointment.patient_id,
        "provider_id": appointment.provider_id, "status": appointment.status,
        "payment_timing": appointment.payment_timing,
        "captured_cents": chain.captured_cents, "refunded_cents": chain.refunded_cents,
        "net_cents": chain.net_cents, "columns": list(COLUMNS), "steps": chain.rows(),
        **post_visit(chain),
    }, indent=2)
