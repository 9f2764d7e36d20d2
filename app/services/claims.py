"""Claims, remittances and reconciliation: the hybrid timing after the visit (issue 15).

The flow (models: app/models/claims.py):

1. ``open_claim`` runs in the signing transaction of a hybrid visit (``emr.sign``). The primary coverage
   is the one on the estimate attached to the appointment (``Estimate.coverage_id``), else the patient's
   active primary ``Coverage``; a self-pay estimate, or no coverage at all, means self-pay: the visit
   is reconciled at once (owed = the signed total). Otherwise a draft primary Claim is stored (its
   ``uuid`` is the clearinghouse's claim id and the submission's idempotency key) and, with
   CLAIM_AUTO_SUBMIT, the ``submit_claim`` job is asked for after the commit.
2. ``submit`` sends the 837P (diagnoses and lines of the signed encounter, the coverage's payer and
   member id). It is idempotent by the claim's uuid: a process killed after the clearinghouse accepted
   the claim but before we recorded it leaves the claim a draft; the next try (billing's "Submit", the
   job's retry, or the sweep for auto/requested drafts) gets the clearinghouse's first answer back.
3. ``poll_remittances`` (periodic, and billing's "Check now") reads the 835s after the stored cursor
   (``ClearinghouseCursor``, locked) and applies each one in the same transaction that moves the cursor:
   a remittance for an unknown claim is skipped (audited) and the cursor still moves; a duplicate or a
   late second answer for a claim already answered is audited and ignored (``Remittance.claim_id`` and
   ``external_id`` are unique). Billing may enter a paper EOB instead (``record_eob``, validated per
   line: billed = paid + adjustments).
4. ``reconcile`` (the ``reconcile_visit`` job after the remittance's commit, or the sweep) decides once
   per appointment (``Reconciliation.appointment_id`` unique, under the appointment's row lock): when
   the primary left a patient balance (PR > 0) and the patient has a secondary coverage, a secondary
   claim comes first (see below); then owed = the PR sum, paid = the deposit captured minus refunded,
   and owed > paid -> a balance Charge (purpose 'balance') with its collections case
   (``visit_charges.open_balance_case``: the same off-session charge job, retries, pay link and
   collections as a post-visit charge); owed < paid -> a partial refund of the deposit (policy
   'overpayment', Stripe reason requested_by_customer, the reason in plain words), sent after the
   commit (``send_refund`` job; ``app.jobs.refunds.resume_unsent`` finishes one a crash left); equal ->
   nothing. CO amounts are written off, never billed.

Secondary claims (a documented simplification). The payer simulator does no coordination of benefits:
a secondary payer adjudicates whatever it is billed as if it were primary. So the secondary claim bills,
line by line, the primary's patient responsibility on that line (only lines with PR > 0); the patient
then owes, per line, the secondary's PR on that line capped at the primary's PR on it. Everything else
(the secondary's payment, its contractual adjustments) is not the patient's.

Money in cents. Audit rows carry ids and amounts only (claim, remittance, coverage and charge ids):
never a member id, a payer name, a diagnosis or a name. Nothing here commits: the jobs
(app/jobs/claims.py) and the billing views commit; side effects (claim submission after a draft is
stored, refunds, charges) run after the commit through ``unit_of_work.request``.
"""
from __future__ import annotations

import logging
import re
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.integrations import clearinghouse as ch
from app.integrations.clearinghouse import ClearinghouseError  # noqa: F401  (raised by poll_remittances)
from app.models import (Appointment, Charge, Claim, ClearinghouseCursor, Coverage, Encounter, Estimate,
                        Reconciliation, Refund, Remittance)
from app.services import DomainError, audit, refunds, visit_charges
from app.services.audit import Actor
from app.services.unit_of_work import request

log = logging.getLogger(__name__)

SUBMIT_JOB = "submit_claim"          # unit-of-work request: app.jobs.claims.submit_claim(claim_id)
RECONCILE_JOB = "reconcile_visit"    # unit-of-work request: app.jobs.claims.reconcile_visit(appointment_id)
REFUND_JOB = "send_refund"           # unit-of-work request: app.jobs.claims.send_refund(refund_id)
CLEARINGHOUSE = Actor.system("clearinghouse")

GROUPS = ("PR", "CO", "OA", "PI")
CARC_CODE = re.compile(r"^[A-Z0-9]{1,5}$")

# CARC in plain words, for the patient (statement, explanation) and billing (claim page).
CARC_WORDS = {
    ("PR", "1"): "your deductible",
    ("PR", "2"): "your coinsurance",
    ("PR", "3"): "your copay",
    ("PR", "204"): "this service is not covered by your plan",
    ("PR", "27"): "your coverage was not active on the visit date",
    ("CO", "45"): "the amount above your plan's allowed amount (the clinic writes it off)",
    ("CO", "50"): "not paid by your plan; the clinic writes it off, you owe nothing for it",
    ("CO", "197"): "not paid by your plan; the clinic writes it off, you owe nothing for it",
    ("CO", "31"): "your plan could not find you as a member; the clinic writes it off, you owe nothing for it",
}
# Short names for billing's labels ("PR-2 coinsurance $14.00").
CARC_SHORT = {
    ("PR", "1"): "deductible", ("PR", "2"): "coinsurance", ("PR", "3"): "copay",
    ("PR", "204"): "not covered", ("PR", "27"): "coverage not active", ("CO", "45"): "contractual",
    ("CO", "50"): "not medically necessary", ("CO", "197"): "authorization absent",
    ("CO", "31"): "member not identified",
}
STATUS_LABELS = {
    "draft": "Draft: not sent", "submitted": "Sent: waiting for the payer", "adjudicated": "Answered by the payer",
    "denied": "Denied by the payer", "reconciled": "Reconciled",
}
OUTCOME_LABELS = {"balance_charge": "Balance charged", "refund": "Deposit partly refunded", "none": "Nothing more due"}


class ClaimError(DomainError):
    """A claim step the rules refuse; the message is for the person who asked."""


class EobInvalid(ClaimError):
    """A manual EOB that does not add up: ``errors`` maps a field name to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("Please correct the highlighted lines.")
        self.errors = errors


def money(cents: int | None) -> str:
    cents = cents or 0
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def adjustment_words(group: str, code: str) -> str:
    """A CARC adjustment in plain words."""
    found = CARC_WORDS.get((group, str(code)))
    if found:
        return found
    if group == "PR":
        return f"your share (reason {code})"
    if group == "CO":
        return f"written off by the clinic (reason {code}); you owe nothing for it"
    return f"adjusted by your plan (reason {code}); you owe nothing for it"


def adjustment_label(adjustment: dict) -> str:
    """``PR-2 coinsurance $14.00`` (billing's claim page)."""
    group, code = adjustment.get("group"), str(adjustment.get("code"))
    short = CARC_SHORT.get((group, code), "")
    return " ".join(filter(None, [f"{group}-{code}", short, money(adjustment.get("amount_cents"))]))


def _settings():
    return current_app.config["SETTINGS"]


# -- which coverage ------------------------------------------------------------------------------------

def attached_estimate(session: Session, appointment_id: int) -> Estimate | None:
    return session.scalar(select(Estimate).where(Estimate.appointment_id == appointment_id)
                          .order_by(Estimate.id.desc()).limit(1))


def _active(session: Session, patient_id: int, rank: str) -> Coverage | None:
    return session.scalar(select(Coverage).where(Coverage.patient_id == patient_id, Coverage.rank == rank,
                                                 Coverage.status == "active").order_by(Coverage.id.desc()).limit(1))


def coverages_for(session: Session, appointment: Appointment) -> tuple[Coverage | None, Coverage | None]:
    """(primary, secondary) for the visit: the estimate attached to the appointment names them (a
    self-pay estimate means no insurance for this visit); without one, the patient's active coverages."""
    estimate = attached_estimate(session, appointment.id)
    if estimate is not None and estimate.kind == "self_pay":
        return None, None
    primary = session.get(Coverage, estimate.coverage_id) if estimate is not None and estimate.coverage_id else None
    if primary is None:
        primary = _active(session, appointment.patient_id, "primary")
    if primary is None:
        return None, None
    secondary = (session.get(Coverage, estimate.secondary_coverage_id)
                 if estimate is not None and estimate.secondary_coverage_id else None)
    if secondary is None:
        secondary = _active(session, appointment.patient_id, "secondary")
    if secondary is not None and secondary.id == primary.id:
        secondary = None
    return primary, secondary


def claims_of(session: Session, encounter_id: int) -> dict[str, Claim]:
    return {c.rank: c for c in session.scalars(select(Claim).where(Claim.encounter_id == encounter_id))}


def remittance_of(session: Session, claim_id: int) -> Remittance | None:
    return session.scalar(select(Remittance).where(Remittance.claim_id == claim_id))


def deposit_charge(session: Session, appointment_id: int) -> Charge | None:
    return session.scalar(select(Charge).where(Charge.appointment_id == appointment_id, Charge.purpose == "deposit"))


def deposit_paid_cents(charge: Charge | None) -> int:
    """What the patient paid toward the visit: the deposit captured minus refunded (reserved refunds too)."""
    if charge is None:
        return 0
    return max(0, charge.amount_captured_cents - charge.amount_refunded_cents)


def _audit(session: Session, claim: Claim | None, action: str, *, actor: Actor, appointment: Appointment | None = None,
           outcome: str = "success", reason: str | None = None, details: dict | None = None,
           at: datetime | None = None) -> None:
    appointment = appointment or (session.get(Appointment, claim.appointment_id) if claim else None)
    base = {"claim_id": claim.id, "rank": claim.rank, "coverage_id": claim.coverage_id} if claim else {}
    audit.record(session, actor=actor, action=action, outcome=outcome, reason=reason,
                 patient_id=appointment.patient_id if appointment else None,
                 appointment_id=appointment.id if appointment else None,
                 encounter_id=claim.encounter_id if claim else None, at=at,
                 details={**base, **(details or {})})


# -- 1. the claim, at signing --------------------------------------------------------------------------

def _line_snapshot(encounter: Encounter) -> list[dict]:
    return [{"line_number": n, "code_system": line.code_system, "code": line.code,
             "modifiers": [line.modifier] if line.modifier else [], "units": line.units,
             "billed_cents": line.amount_cents, "pointers": list(line.diagnosis_pointers)}
            for n, line in enumerate(sorted(encounter.lines, key=lambda li: li.position), start=1)]


def open_claim(session: Session, encounter: Encounter, *, actor: Actor, now: datetime):
    """In the signing transaction of a hybrid visit: its primary claim (draft), made once; or, for a
    self-pay visit, its reconciliation at once (owed = the signed total). None for other timings."""
    appointment = encounter.appointment
    if appointment.payment_timing != "hybrid" or not encounter.is_signed:
        return None
    existing = claims_of(session, encounter.id).get("primary")
    if existing is not None:
        return existing
    primary, _ = coverages_for(session, appointment)
    if primary is None:
        audit.record(session, actor=actor, action="claim.self_pay", patient_id=appointment.patient_id,
                     appointment_id=appointment.id, encounter_id=encounter.id, at=now,
                     reason="no insurance for this visit: the patient pays the signed total",
                     details={"total_cents": encounter.total_cents or 0})
        return reconcile(session, appointment.id, actor=actor, now=now)
    claim = Claim(uuid=uuidlib.uuid4(), encounter_id=encounter.id, appointment_id=appointment.id,
                  coverage_id=primary.id, rank="primary", status="draft", billed_cents=encounter.total_cents or 0,
                  lines=_line_snapshot(encounter), provider_npi=provider_npi(session, appointment))
    session.add(claim)
    session.flush()
    _audit(session, claim, "claim.opened", actor=actor, appointment=appointment, at=now,
           details={"billed_cents": claim.billed_cents, "lines": len(claim.lines),
                    "auto_submit": bool(_settings().CLAIM_AUTO_SUBMIT)})
    if _settings().CLAIM_AUTO_SUBMIT:
        request(session, SUBMIT_JOB, claim.id)
    return claim


def _open_secondary(session: Session, primary: Claim, remittance: Remittance, coverage: Coverage, *,
                    actor: Actor, now: datetime) -> Claim:
    """The secondary claim: per line, the primary's patient responsibility on that line."""
    by_number = {ln["line_number"]: ln for ln in primary.lines}
    lines = []
    for rline in remittance.lines:
        pr = sum(a["amount_cents"] for a in rline.get("adjustments", []) if a.get("group") == "PR")
        if pr <= 0:
            continue
        source = by_number.get(rline["line_number"], {})
        lines.append({"line_number": rline["line_number"], "code_system": rline["code_system"],
                      "code": rline["code"], "modifiers": list(rline.get("modifiers") or []),
                      "units": rline.get("units", 1), "billed_cents": pr,
                      "pointers": list(source.get("pointers") or [1])})
    session.execute(pg_insert(Claim).values(
        uuid=uuidlib.uuid4(), encounter_id=primary.encounter_id, appointment_id=primary.appointment_id,
        coverage_id=coverage.id, rank="secondary", primary_claim_id=primary.id, status="draft",
        billed_cents=sum(ln["billed_cents"] for ln in lines), lines=lines, provider_npi=primary.provider_npi)
        .on_conflict_do_nothing(constraint="uq_claims_encounter_rank"))
    claim = claims_of(session, primary.encounter_id)["secondary"]
    _audit(session, claim, "claim.opened", actor=actor, at=now,
           reason="the primary payer left a patient balance: the secondary plan is billed for it first",
           details={"billed_cents": claim.billed_cents, "lines": len(claim.lines), "primary_claim_id": primary.id,
                    "auto_submit": bool(_settings().CLAIM_AUTO_SUBMIT)})
    if _settings().CLAIM_AUTO_SUBMIT:
        request(session, SUBMIT_JOB, claim.id)
    return claim


# -- 2. submission ----------------------------------------------------------------------------------------

def client() -> ch.Clearinghouse | None:
    return ch.from_settings(_settings())


def _service_date(appointment: Appointment):
    tz = getattr(appointment.provider, "timezone", None) or "UTC"
    try:
        return appointment.starts_at.astimezone(ZoneInfo(tz)).date()
    except Exception:           # a bad stored zone: the UTC date
        return appointment.starts_at.date()


def _lock(session: Session, claim_id: int) -> Claim | None:
    return session.scalars(select(Claim).where(Claim.id == claim_id).with_for_update()
                           .execution_options(populate_existing=True)).first()


def request_submit(session: Session, claim: Claim, *, user, actor: Actor, now: datetime) -> None:
    """Billing asked for the claim to be sent: remembered (``submitted_by_id``), so the sweep sends a
    draft whose submission failed for an outage. Refused unless the claim is a draft."""
    if claim.status != "draft":
        raise ClaimError(f"This claim was already sent ({STATUS_LABELS.get(claim.status, claim.status).lower()}).")
    claim.submitted_by_id = user.id if user is not None else None
    _audit(session, claim, "claim.submit_requested", actor=actor, at=now)


def submit(session: Session, claim_id: int, *, actor: Actor, now: datetime) -> str:
    """Send a draft claim (837P) to the clearinghouse and record its acknowledgement (the caller
    commits). Idempotent by the claim's uuid. Never raises for the clearinghouse: an outage or a
    refusal is recorded on the claim (``last_error``, audited) and answered ``unavailable`` /
    ``rejected``; otherwise ``submitted`` (or the claim's status when it is not a draft)."""
    claim = _lock(session, claim_id)
    if claim is None:
        return "missing"
    if claim.status != "draft":
        return claim.status
    gw = client()
    if gw is None:
        claim.last_error = "unavailable: no clearinghouse is configured"
        _audit(session, claim, "claim.submit_failed", actor=actor, outcome="failure", at=now,
               details={"why": "no clearinghouse"})
        return "unavailable"
    appointment = session.get(Appointment, claim.appointment_id)
    encounter = session.get(Encounter, claim.encounter_id)
    coverage = session.get(Coverage, claim.coverage_id)
    lines = [ch.ClaimLine(code_system=ln["code_system"], code=ln["code"], billed_cents=ln["billed_cents"],
                          units=ln.get("units", 1), modifiers=tuple(ln.get("modifiers") or ()),
                          diagnosis_pointers=tuple(ln.get("pointers") or (1,))) for ln in claim.lines]
    try:
        ack = gw.submit_claim(claim_id=str(claim.uuid), payer_id=coverage.payer_id, member_id=coverage.member_id,
                              service_date=_service_date(appointment),
                              diagnoses=[d.code for d in sorted(encounter.diagnoses, key=lambda d: d.position)],
                              lines=lines, place_of_service="10" if appointment.modality == "telehealth" else "11",
                              provider_npi=claim.provider_npi)
    except ch.ClearinghouseRejected as error:
        claim.last_error = f"rejected: {error.code}: {error.message}"[:255]
        _audit(session, claim, "claim.submit_failed", actor=actor, outcome="failure", at=now,
               details={"why": "rejected", "status": error.status, "code": error.code,
                        "fields": [d.split(":", 1)[0] for d in error.details][:10]})
        return "rejected"
    except ch.ClearinghouseError as error:
        claim.last_error = f"unavailable: {error}"[:255]
        _audit(session, claim, "claim.submit_failed", actor=actor, outcome="failure", at=now,
               details={"why": "unavailable"})
        return "unavailable"
    claim.transition("submit")
    claim.payer_claim_number = ack.payer_claim_number
    claim.submitted_at = now
    claim.last_error = None
    _audit(session, claim, "claim.submitted", actor=actor, at=now,
           details={"claim_uuid": str(claim.uuid), "billed_cents": claim.billed_cents, "replayed": ack.replayed,
                    "payer_claim_number": ack.payer_claim_number})
    return "submitted"


def provider_npi(session: Session, appointment: Appointment) -> str | None:
    """The NPI a claim is sent with: the appointment's clinician's, else the clinic's (None: neither on
    file). Kept on the claim when it opens (``claims.provider_npi``), so every resend of a claim carries
    the same content even if an NPI is edited in between."""
    from app.models import ClinicSettings, Provider

    provider = session.get(Provider, appointment.provider_id) if appointment.provider_id else None
    if provider is not None and provider.npi:
        return provider.npi
    clinic = session.get(ClinicSettings, 1)
    return clinic.npi if clinic is not None and clinic.npi else None


def due_drafts(session: Session, *, quiet: timedelta, limit: int = 100) -> list[int]:
    """Drafts the sweep sends: every draft with CLAIM_AUTO_SUBMIT, else the ones billing asked for; never
    one the clearinghouse refused (billing fixes and resubmits it), and not while one is fresh."""
    query = select(Claim.id).where(Claim.status == "draft", Claim.updated_at < func.now() - quiet,
                                   or_(Claim.last_error.is_(None), Claim.last_error.like("unavailable:%")))
    if not _settings().CLAIM_AUTO_SUBMIT:
        query = query.where(Claim.submitted_by_id.is_not(None))
    return list(session.scalars(query.order_by(Claim.id).limit(limit)))


# -- 3. remittances ------------------------------------------------------------------------------------------

@dataclass
class PollResult:
    fetched: int = 0
    applied: list[int] = field(default_factory=list)      # claim ids
    ignored: int = 0
    skipped: int = 0
    cursor: int = 0


def _lines_of(remittance: ch.Remittance) -> list[dict]:
    return [{"line_number": ln.line_number, "code_system": ln.code_system, "code": ln.code,
             "modifiers": list(ln.modifiers), "units": ln.units, "billed_cents": ln.billed_cents,
             "allowed_cents": ln.allowed_cents, "paid_cents": ln.paid_cents,
             "adjustments": [{"group": a.group, "code": a.code, "amount_cents": a.amount_cents,
                              "description": a.description} for a in ln.adjustments]}
            for ln in remittance.lines]


def _sum(lines: list[dict], group: str) -> int:
    return sum(a["amount_cents"] for ln in lines for a in ln.get("adjustments", []) if a.get("group") == group)


def apply(session: Session, claim_id: int, *, external_id: str, source: str, status: str, lines: list[dict],
          billed_cents: int, allowed_cents: int, paid_cents: int, payer_claim_number: str | None = None,
          seq: int | None = None, raw: str | None = None, entered_by_id: int | None = None,
          actor: Actor, now: datetime) -> Remittance | None:
    """Apply one payer answer to its claim, once (under the claim's row lock). A second answer for the
    claim (a duplicate, or a late one after another was applied) is audited and ignored: None. The
    reconciliation is asked for after the commit."""
    claim = _lock(session, claim_id)
    existing = session.scalar(select(Remittance).where(or_(Remittance.claim_id == claim_id,
                                                           Remittance.external_id == external_id)).limit(1))
    pr, co = _sum(lines, "PR"), _sum(lines, "CO")
    if existing is not None or not claim.can("deny" if status == "denied" else "adjudicate"):
        why = ("duplicate" if existing is not None and existing.external_id == external_id
               else "the claim was already answered")
        _audit(session, claim, "remittance.ignored", actor=actor, outcome="failure", at=now, reason=why,
               details={"external_id": external_id, "source": source, "seq": seq, "paid_cents": paid_cents,
                        "patient_responsibility_cents": pr,
                        "applied_remittance_id": existing.id if existing is not None else None,
                        "claim_status": claim.status})
        return None
    remittance = Remittance(claim_id=claim.id, external_id=external_id, source=source, seq=seq, status=status,
                            payer_claim_number=payer_claim_number, billed_cents=billed_cents,
                            allowed_cents=allowed_cents, paid_cents=paid_cents, patient_responsibility_cents=pr,
                            written_off_cents=co, lines=lines, raw=raw, entered_by_id=entered_by_id,
                            received_at=now)
    session.add(remittance)
    session.flush()
    claim.transition("deny" if status == "denied" else "adjudicate")
    claim.adjudicated_at = now
    claim.payer_claim_number = claim.payer_claim_number or payer_claim_number
    claim.last_error = None
    _audit(session, claim, "remittance.applied", actor=actor, at=now,
           details={"remittance_id": remittance.id, "source": source, "seq": seq, "status": status,
                    "billed_cents": billed_cents, "allowed_cents": allowed_cents, "paid_cents": paid_cents,
                    "patient_responsibility_cents": pr, "written_off_cents": co,
                    "adjustments": sorted({f"{a['group']}-{a['code']}" for ln in lines
                                           for a in ln.get("adjustments", [])})})
    request(session, RECONCILE_JOB, claim.appointment_id)
    return remittance


def _claim_for(session: Session, claim_uuid: str) -> Claim | None:
    try:
        key = uuidlib.UUID(claim_uuid)
    except (ValueError, TypeError, AttributeError):
        return None
    return session.scalar(select(Claim).where(Claim.uuid == key))


def cursor(session: Session, *, lock: bool = False) -> ClearinghouseCursor:
    session.execute(pg_insert(ClearinghouseCursor).values(id=1, remittance_seq=0).on_conflict_do_nothing())
    query = select(ClearinghouseCursor).where(ClearinghouseCursor.id == 1).execution_options(populate_existing=True)
    return session.scalars(query.with_for_update() if lock else query).one()


def poll_remittances(session: Session, *, actor: Actor = CLEARINGHOUSE, now: datetime) -> PollResult:
    """Fetch the remittances after the cursor and apply each, moving the cursor in the same
    transaction (the caller commits). Raises ``ClearinghouseUnavailable`` (nothing moved) when the
    clearinghouse cannot be read; returns an empty result when none is configured."""
    gw = client()
    result = PollResult()
    if gw is None:
        return result
    row = cursor(session, lock=True)              # one poll at a time: a second waits, then reads past it
    found = gw.remittances(since=row.remittance_seq)
    result.fetched = len(found)
    for remote in found:
        claim = _claim_for(session, remote.claim_id)
        if claim is None:
            audit.record(session, actor=actor, action="remittance.skipped", outcome="failure", at=now,
                         reason="no claim of ours has this id",
                         details={"external_id": remote.id, "seq": remote.seq, "paid_cents": remote.paid_cents})
            result.skipped += 1
        else:
            applied = apply(session, claim.id, external_id=remote.id, source="clearinghouse", status=remote.status,
                            lines=_lines_of(remote), billed_cents=remote.billed_cents,
                            allowed_cents=remote.allowed_cents, paid_cents=remote.paid_cents,
                            payer_claim_number=remote.payer_claim_number, seq=remote.seq,
                            raw=_raw(remote), actor=actor, now=now)
            if applied is None:
                result.ignored += 1
            else:
                result.applied.append(claim.id)
        row.remittance_seq = max(row.remittance_seq, remote.seq)
    row.polled_at = now
    result.cursor = row.remittance_seq
    return result


def _raw(remote: ch.Remittance) -> str | None:
    import json

    try:
        return json.dumps(dict(remote.raw), sort_keys=True, default=str)
    except (TypeError, ValueError):
        return None


def awaiting_answers(session: Session) -> bool:
    """Is any claim of ours out with a payer? Automatic polls ask only then (no traffic, and no
    answers for other systems' claims to skip, while nothing is pending); billing's "Check now" always asks."""
    return session.scalar(select(Claim.id).where(Claim.status == "submitted").limit(1)) is not None


def poll_due(session: Session, *, now: datetime) -> bool:
    if not awaiting_answers(session):
        return False
    row = session.get(ClearinghouseCursor, 1)
    interval = _settings().REMITTANCE_POLL_INTERVAL
    return row is None or row.polled_at is None or row.polled_at <= now - interval


# -- manual EOB ------------------------------------------------------------------------------------------

@dataclass
class EobLine:
    line_number: int
    allowed_cents: int
    paid_cents: int
    adjustments: list[tuple[str, str, int]]       # (group, CARC code, amount)


def validate_eob(claim: Claim, eob: list[EobLine]) -> list[dict]:
    """The remittance lines of a paper EOB, checked line by line against the claim: every claim line
    answered once; group PR/CO/OA/PI, a CARC code, an amount above zero; paid <= allowed <= billed;
    billed = paid + the adjustments. ``EobInvalid`` (field -> message) otherwise."""
    errors: dict[str, str] = {}
    by_number = {ln["line_number"]: ln for ln in claim.lines}
    given = {line.line_number: line for line in eob}
    out = []
    for number, source in sorted(by_number.items()):
        line = given.get(number)
        prefix = f"line-{number}"
        if line is None:
            errors[prefix] = f"Line {number}: enter what the payer said about it."
            continue
        billed = source["billed_cents"]
        if line.paid_cents < 0 or line.allowed_cents < 0:
            errors[prefix] = f"Line {number}: amounts cannot be negative."
            continue
        if line.allowed_cents > billed:
            errors[f"{prefix}-allowed"] = f"Line {number}: the allowed amount cannot be more than billed ({money(billed)})."
        if line.paid_cents > line.allowed_cents:
            errors[f"{prefix}-paid"] = f"Line {number}: paid cannot be more than the allowed amount."
        adjustments = []
        for k, (group, code, amount) in enumerate(line.adjustments):
            if group not in GROUPS:
                errors[f"{prefix}-adj-{k}-group"] = f"Line {number}: choose the group (PR, CO, OA or PI)."
            if not CARC_CODE.match(code or ""):
                errors[f"{prefix}-adj-{k}-code"] = f"Line {number}: the reason code is 1 to 5 letters or digits, like 45."
            if amount is None or amount <= 0:
                errors[f"{prefix}-adj-{k}-amount"] = f"Line {number}: an adjustment's amount is more than $0.00."
            adjustments.append({"group": group, "code": code, "amount_cents": amount or 0,
                                "description": adjustment_words(group, code)})
        total = line.paid_cents + sum(a["amount_cents"] for a in adjustments)
        if not any(k.startswith(prefix) for k in errors) and total != billed:
            errors[prefix] = (f"Line {number}: billed {money(billed)} must equal paid plus adjustments "
                              f"({money(total)}): {money(billed - total)} is unaccounted for.")
        out.append({"line_number": number, "code_system": source["code_system"], "code": source["code"],
                    "modifiers": list(source.get("modifiers") or []), "units": source.get("units", 1),
                    "billed_cents": billed, "allowed_cents": line.allowed_cents, "paid_cents": line.paid_cents,
                    "adjustments": adjustments})
    extra = sorted(set(given) - set(by_number))
    if extra:
        errors["lines"] = f"The claim has no line {extra[0]}."
    if errors:
        raise EobInvalid(errors)
    return out


def record_eob(session: Session, claim_id: int, eob: list[EobLine], *, user, actor: Actor, now: datetime
               ) -> Remittance:
    """Billing enters a paper EOB for a claim with no answer yet (the caller commits)."""
    claim = _lock(session, claim_id)
    if claim is None:
        raise ClaimError("No such claim.")
    if remittance_of(session, claim.id) is not None or claim.status not in ("draft", "submitted"):
        raise ClaimError("This claim already has the payer's answer; a second one is not applied.")
    lines = validate_eob(claim, eob)
    paid = sum(ln["paid_cents"] for ln in lines)
    denied = all(ln["paid_cents"] == 0 and ln["allowed_cents"] == 0 for ln in lines)
    remittance = apply(session, claim.id, external_id=f"manual:{uuidlib.uuid4()}", source="manual",
                       status="denied" if denied else "processed", lines=lines,
                       billed_cents=sum(ln["billed_cents"] for ln in lines),
                       allowed_cents=sum(ln["allowed_cents"] for ln in lines), paid_cents=paid,
                       entered_by_id=user.id if user is not None else None, actor=actor, now=now)
    if remittance is None:
        raise ClaimError("This claim already has the payer's answer; a second one is not applied.")
    return remittance


# -- 4. reconciliation --------------------------------------------------------------------------------------

@dataclass
class Owed:
    owed_cents: int
    insurance_paid_cents: int
    billed_cents: int
    deciding: Claim | None
    words: list[str]


def _line_pr(lines: list[dict]) -> dict[int, int]:
    return {ln["line_number"]: sum(a["amount_cents"] for a in ln.get("adjustments", []) if a.get("group") == "PR")
            for ln in lines}


def _explain_lines(remittance: Remittance, *, plan: str = "your plan") -> list[str]:
    words = []
    for ln in remittance.lines:
        parts = [f"{ln['code_system']} {ln['code']}: billed {money(ln['billed_cents'])}"]
        if ln.get("paid_cents"):
            parts.append(f"{plan} paid {money(ln['paid_cents'])}")
        for a in ln.get("adjustments", []):
            parts.append(f"{money(a['amount_cents'])} is {adjustment_words(a['group'], a['code'])}")
        words.append("; ".join(parts) + ".")
    return words


def owed(session: Session, encounter: Encounter, claims: dict[str, Claim]) -> Owed | None:
    """What the patient owes once the payers answered; None while an answer is awaited."""
    primary = claims.get("primary")
    total = encounter.total_cents or 0
    if primary is None:
        return Owed(total, 0, total, None, [f"No insurance was billed for this visit, so its price, "
                                            f"{money(total)}, is yours."])
    first = remittance_of(session, primary.id)
    if first is None:
        return None
    secondary = claims.get("secondary")
    words = _explain_lines(first)
    if secondary is None:
        return Owed(first.patient_responsibility_cents, first.paid_cents, first.billed_cents, primary, words)
    second = remittance_of(session, secondary.id)
    if second is None:
        return None
    primary_pr = _line_pr(first.lines)
    owed_cents = sum(min(pr, primary_pr.get(number, 0)) for number, pr in _line_pr(second.lines).items())
    words.append(f"Your second plan was billed your share of {money(first.patient_responsibility_cents)} and "
                 f"paid {money(second.paid_cents)}; of the rest, {money(owed_cents)} is yours.")
    return Owed(owed_cents, first.paid_cents + second.paid_cents, first.billed_cents, secondary, words)


def reconcile(session: Session, appointment_id: int, *, actor: Actor, now: datetime) -> Reconciliation | None:
    """Decide how the hybrid visit ends, once (the caller commits). None while a payer's answer is
    awaited (a secondary claim is opened first when the primary left a balance and a secondary
    coverage exists). The balance charge and the refund are sent after the commit."""
    appointment = session.get(Appointment, appointment_id, with_for_update=True, populate_existing=True)
    if appointment is None or appointment.payment_timing != "hybrid":
        return None
    done = session.scalar(select(Reconciliation).where(Reconciliation.appointment_id == appointment_id))
    if done is not None:
        return done
    encounter = session.scalar(select(Encounter).where(Encounter.appointment_id == appointment_id,
                                                       Encounter.status == "signed"))
    if encounter is None:
        return None
    claims = claims_of(session, encounter.id)
    primary = claims.get("primary")
    if primary is not None and "secondary" not in claims:
        first = remittance_of(session, primary.id)
        if first is None:
            return None
        _, secondary_coverage = coverages_for(session, appointment)
        if first.patient_responsibility_cents > 0 and secondary_coverage is not None:
            _open_secondary(session, primary, first, secondary_coverage, actor=actor, now=now)
            return None
    result = owed(session, encounter, claims)
    if result is None:
        return None
    deposit = deposit_charge(session, appointment_id)
    if deposit is not None:
        deposit = session.get(Charge, deposit.id, with_for_update=True, populate_existing=True)
    paid = deposit_paid_cents(deposit)
    difference = result.owed_cents - paid
    written_off = max(0, result.billed_cents - result.insurance_paid_cents - result.owed_cents)
    words = list(result.words)
    if written_off and primary is not None:
        words.append(f"In all, {money(written_off)} is written off by the clinic: you are never billed for it.")
    words.append(f"Your share is {money(result.owed_cents)}; you paid {money(paid)} as a deposit.")
    outcome, charge_id, refund = "none", None, None
    if difference > 0:
        case = visit_charges.open_balance_case(session, encounter, amount_cents=difference, actor=actor, now=now,
                                               details={"owed_cents": result.owed_cents, "paid_cents": paid})
        outcome, charge_id = "balance_charge", case.charge_id
        words.append(f"The balance, {money(difference)}, is charged to your card on file.")
    elif difference < 0 and deposit is not None and refunds.refundable_cents(deposit) > 0:
        amount = min(-difference, refunds.refundable_cents(deposit))
        reason = (f"your insurer's answer: your share is {money(result.owed_cents)}, you paid "
                  f"{money(paid)}: {money(amount)} refunded")
        refund = refunds.open_refund(session, charge=deposit, amount_cents=amount,
                                     stripe_reason="requested_by_customer", clinical_reason=reason,
                                     policy="overpayment", authorized_by=None, actor=actor, now=now)
        outcome = "refund"
        words.append(f"You paid {money(amount)} more than your share: it is refunded to your card.")
    else:
        words.append("Nothing more is due.")
    row = Reconciliation(appointment_id=appointment_id, claim_id=result.deciding.id if result.deciding else None,
                         patient_responsibility_cents=result.owed_cents, paid_cents=paid,
                         difference_cents=difference, written_off_cents=written_off,
                         insurance_paid_cents=result.insurance_paid_cents, outcome=outcome,
                         balance_charge_id=charge_id, refund_id=refund.id if refund else None,
                         explanation=" ".join(words), created_at=now)
    session.add(row)
    session.flush()
    for claim in claims.values():
        if claim.can("reconcile"):
            claim.transition("reconcile")
            claim.reconciled_at = now
    audit.record(session, actor=actor, action="reconciliation.decided", patient_id=appointment.patient_id,
                 appointment_id=appointment_id, encounter_id=encounter.id, at=now,
                 reason={"balance_charge": "the patient's share is more than the deposit",
                         "refund": "the deposit is more than the patient's share",
                         "none": "the deposit covers the patient's share exactly"}[outcome],
                 details={"reconciliation_id": row.id, "claim_id": row.claim_id, "outcome": outcome,
                          "owed_cents": result.owed_cents, "paid_cents": paid, "difference_cents": difference,
                          "insurance_paid_cents": result.insurance_paid_cents, "written_off_cents": written_off,
                          "balance_charge_id": charge_id, "refund_id": refund.id if refund else None,
                          "amount_cents": abs(difference) if outcome != "none" else 0})
    if refund is not None:
        request(session, REFUND_JOB, refund.id)
    return row


def due_reconciliations(session: Session, *, quiet: timedelta, limit: int = 100) -> list[int]:
    """Appointments whose claim was answered but not reconciled (a lost job, a crash between applying
    the remittance and reconciling): the sweep reconciles them."""
    done = select(Reconciliation.id).where(Reconciliation.appointment_id == Claim.appointment_id).exists()
    return list(session.scalars(select(Claim.appointment_id).distinct().where(
        Claim.status.in_(("adjudicated", "denied")), Claim.updated_at < func.now() - quiet, ~done)
        .order_by(Claim.appointment_id).limit(limit)))


# -- what pages show -------------------------------------------------------------------------------------

@dataclass
class Adjustment:
    words: str
    label: str
    amount_cents: int
    group: str


@dataclass
class HybridSummary:
    """The insurer's part of a hybrid visit's statement."""
    billed_cents: int
    insurance_paid_cents: int
    adjustments: list[Adjustment]
    your_share_cents: int | None          # None: the insurer has not answered yet
    deposit_paid_cents: int
    deposit_captured_cents: int
    balance_charged_cents: int
    refunded_cents: int
    outcome: str | None
    explanation: str
    self_pay: bool
    status_words: str

    @property
    def waiting(self) -> bool:
        return self.your_share_cents is None


def hybrid_summary(session: Session, appointment: Appointment) -> HybridSummary | None:
    """Billed, what insurance paid, the adjustments in words, the patient's share, the deposit, and the
    balance charged or the refund: for a signed hybrid visit (None otherwise)."""
    if appointment.payment_timing != "hybrid":
        return None
    encounter = session.scalar(select(Encounter).where(Encounter.appointment_id == appointment.id,
                                                       Encounter.status == "signed"))
    if encounter is None:
        return None
    claims = claims_of(session, encounter.id)
    deposit = deposit_charge(session, appointment.id)
    captured = deposit.amount_captured_cents if deposit is not None else 0
    row = session.scalar(select(Reconciliation).where(Reconciliation.appointment_id == appointment.id))
    adjustments: list[Adjustment] = []
    for rank in ("primary", "secondary"):
        claim = claims.get(rank)
        remittance = remittance_of(session, claim.id) if claim else None
        if remittance is None:
            continue
        merged: dict[tuple[str, str], int] = {}
        for ln in remittance.lines:
            for a in ln.get("adjustments", []):
                key = (a["group"], str(a["code"]))
                merged[key] = merged.get(key, 0) + a["amount_cents"]
        for (group, code), amount in merged.items():
            words = adjustment_words(group, code)
            if rank == "secondary":
                words = f"second plan: {words}"
            adjustments.append(Adjustment(words, adjustment_label({"group": group, "code": code,
                                                                   "amount_cents": amount}), amount, group))
    result = owed(session, encounter, claims)
    refunded = sum(r.amount_cents for r in session.scalars(select(Refund).where(
        Refund.charge_id == deposit.id, Refund.status.in_(("creating", "pending", "succeeded"))))) if deposit else 0
    balance = session.get(Charge, row.balance_charge_id) if row is not None and row.balance_charge_id else None
    if row is not None:
        words = {"balance_charge": f"Balance of {money(row.difference_cents)} charged to your card",
                 "refund": f"{money(-row.difference_cents)} of your deposit refunded",
                 "none": "Nothing more is due"}[row.outcome]
    elif "primary" not in claims:
        words = "Being finalized"
    else:
        words = "Waiting for your insurer's answer"
    return HybridSummary(
        billed_cents=encounter.total_cents or 0,
        insurance_paid_cents=result.insurance_paid_cents if result is not None else 0,
        adjustments=adjustments,
        your_share_cents=row.patient_responsibility_cents if row is not None else (
            result.owed_cents if result is not None and result.deciding is None else None),
        deposit_paid_cents=max(0, captured - refunded), deposit_captured_cents=captured,
        balance_charged_cents=balance.amount_cents if balance is not None else 0,
        refunded_cents=refunded, outcome=row.outcome if row is not None else None,
        explanation=row.explanation if row is not None else "", self_pay="primary" not in claims,
        status_words=words)


@dataclass
class ClaimRow:
    claim: Claim
    appointment: Appointment
    patient_name: str
    payer_id: str
    remittance: Remittance | None
    reconciliation: Reconciliation | None

    @property
    def label(self) -> str:
        return STATUS_LABELS.get(self.claim.status, self.claim.status)


WORKLIST = {
    "open": ("Open", ("draft", "submitted", "adjudicated", "denied")),
    "draft": ("Draft", ("draft",)),
    "submitted": ("Submitted", ("submitted",)),
    "adjudicated": ("Adjudicated", ("adjudicated",)),
    "denied": ("Denied", ("denied",)),
    "reconciled": ("Reconciled", ("reconciled",)),
    "all": ("All", None),
}


def worklist(session: Session, statuses, *, claim_id: int | None = None, limit: int = 200) -> list[ClaimRow]:
    from app.models import Patient, User

    query = (select(Claim, Appointment, User.full_name, Coverage.payer_id)
             .join(Appointment, Appointment.id == Claim.appointment_id)
             .join(Patient, Patient.id == Appointment.patient_id).join(User, User.id == Patient.user_id)
             .join(Coverage, Coverage.id == Claim.coverage_id))
    if claim_id is not None:
        query = query.where(Claim.id == claim_id)
    elif statuses is not None:
        query = query.where(Claim.status.in_(statuses))
    found = session.execute(query.order_by(Claim.created_at.desc(), Claim.id.desc()).limit(limit)).all()
    ids = [c.id for c, *_ in found]
    remits = {r.claim_id: r for r in session.scalars(select(Remittance).where(Remittance.claim_id.in_(ids)))} if ids else {}
    appts = {a.id for _, a, *_ in found}
    recs = {r.appointment_id: r for r in session.scalars(select(Reconciliation).where(
        Reconciliation.appointment_id.in_(appts)))} if appts else {}
    return [ClaimRow(c, a, name, payer, remits.get(c.id), recs.get(a.id)) for c, a, name, payer in found]
