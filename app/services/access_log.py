"""Who looked at which patient: the PHI access audit (45 CFR 164.312(b)).

Every page that shows PHI declares it (``@access(..., phi="kind")``, app/access.py); app/phi.py
calls ``record_view`` once per view, in the request's own transaction, so the page is not sent
unless its audit row is committed. The row carries who (user id and role), which patient(s) and
which record (appointment, charge, page kind, endpoint), when, and from where (the request id and
address of the audit context). A page that shows several patients (a day list, the payments list)
writes one row whose ``details.patient_ids`` lists them.

``patient_report`` and ``user_report`` read the trail back for the admin's review pages
("who looked at this patient", and everything one user opened), each exportable as CSV.
Break-glass views (a provider opening a patient who is not on their schedule, with a reason) are
``phi.break_glass`` rows, flagged on those pages and listed by ``break_glass_report``.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.models import AuditEvent, User
from app.services import audit
from app.services.audit import Actor

VIEWED = "phi.viewed"
BREAK_GLASS = "phi.break_glass"
# Other rows that are themselves a view of PHI (the audit chain page and its exports).
VIEW_ACTIONS = (VIEWED, BREAK_GLASS, "audit.chain_viewed", "audit.chain_exported")
MAX_LISTED_PATIENTS = 500        # a page listing more still gets one row; the list is cut (and says so)


def record_view(session: Session, *, actor: Actor, kind: str, endpoint: str,
                patient_id: int | None = None, appointment_id: int | None = None,
                patient_ids: list[int] | tuple[int, ...] | None = None, record: dict | None = None,
                at: datetime | None = None) -> None:
    """One audit row for one view of a PHI page (written with the request's commit)."""
    ids = sorted({int(i) for i in (patient_ids or ()) if i is not None})
    if patient_id is None and len(ids) == 1:
        patient_id = ids[0]
    details: dict = {"kind": kind, "endpoint": endpoint}
    if ids and (patient_id is None or ids != [patient_id]):
        details["patient_ids"] = ids[:MAX_LISTED_PATIENTS]
        if len(ids) > MAX_LISTED_PATIENTS:
            details["patients_listed"] = len(ids)
    if record:
        details["record"] = record
    audit.record(session, actor=actor, action=VIEWED, patient_id=patient_id, appointment_id=appointment_id,
                 details=details, at=at)


def record_break_glass(session: Session, *, actor: Actor, patient_id: int, reason: str, endpoint: str,
                       at: datetime | None = None) -> None:
    """A provider opened a patient not on their schedule, giving ``reason`` (flagged for review)."""
    audit.record(session, actor=actor, action=BREAK_GLASS, patient_id=patient_id, reason=reason,
                 details={"kind": "patient", "endpoint": endpoint, "flagged": True}, at=at)


@dataclass(frozen=True)
class AccessRow:
    seq: int
    occurred_at: datetime
    actor_type: str
    actor_id: int | None
    actor_role: str | None
    actor_email: str | None
    action: str
    patient_id: int | None
    patient_ids: tuple[int, ...]
    appointment_id: int | None
    kind: str | None
    endpoint: str | None
    reason: str | None
    ip: str | None
    request_id: str | None

    @property
    def flagged(self) -> bool:
        return self.action == BREAK_GLASS

    @property
    def is_view(self) -> bool:
        return self.action in VIEW_ACTIONS


CSV_COLUMNS = ("seq", "occurred_at", "actor_type", "actor_id", "actor_role", "actor_email", "action",
               "patient_id", "patient_ids", "appointment_id", "kind", "endpoint", "flagged", "reason", "ip",
               "request_id")


def _rows(session: Session, where, *, limit: int) -> list[AccessRow]:
    query = (select(AuditEvent, User.email).outerjoin(User, and_(AuditEvent.actor_type == "user",
                                                                 User.id == AuditEvent.actor_id))
             .where(where).order_by(AuditEvent.seq.desc()).limit(limit))
    out = []
    for event, email in session.execute(query).all():
        details = event.details or {}
        out.append(AccessRow(
            seq=event.seq, occurred_at=event.occurred_at, actor_type=event.actor_type, actor_id=event.actor_id,
            actor_role=event.actor_role, actor_email=email, action=event.action, patient_id=event.patient_id,
            patient_ids=tuple(details.get("patient_ids") or ()), appointment_id=event.appointment_id,
            kind=details.get("kind"), endpoint=details.get("endpoint"), reason=event.reason, ip=event.ip,
            request_id=event.request_id))
    return out


def _about_patient(patient_id: int):
    listed = AuditEvent.details["patient_ids"].contains(func.cast(literal(f"[{int(patient_id)}]"), JSONB))
    return or_(AuditEvent.patient_id == patient_id, listed)


def patient_report(session: Session, patient_id: int, *, views_only: bool = False,
                   limit: int = 1000) -> list[AccessRow]:
    """Everyone (users, not jobs) who viewed or acted on the patient's records, newest first."""
    where = and_(_about_patient(patient_id), AuditEvent.actor_type.in_(("user", "anonymous")))
    if views_only:
        where = and_(where, AuditEvent.action.in_(VIEW_ACTIONS))
    return _rows(session, where, limit=limit)


def user_report(session: Session, user_id: int, *, since: datetime | None = None,
                until: datetime | None = None, limit: int = 5000) -> list[AccessRow]:
    """Every PHI view and action by one user, newest first."""
    where = and_(AuditEvent.actor_type == "user", AuditEvent.actor_id == user_id)
    if since is not None:
        where = and_(where, AuditEvent.occurred_at >= since)
    if until is not None:
        where = and_(where, AuditEvent.occurred_at < until)
    return _rows(session, where, limit=limit)


def break_glass_report(session: Session, *, limit: int = 200) -> list[AccessRow]:
    return _rows(session, AuditEvent.action == BREAK_GLASS, limit=limit)


def to_csv(rows: list[AccessRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row.seq, row.occurred_at.isoformat(), row.actor_type, row.actor_id or "",
                         row.actor_role or "", row.actor_email or "", row.action, row.patient_id or "",
                         " ".join(str(i) for i in row.patient_ids), row.appointment_id or "", row.kind or "",
                         row.endpoint or "", "yes" if row.flagged else "", row.reason or "", row.ip or "",
                         row.request_id or ""])
    return out.getvalue()
