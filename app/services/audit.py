"""The audit core: one function every state change calls, in its transaction.

``record()`` only collects the row on the session. Just before the commit
(``before_commit``) the collected rows are written together, under a
transaction-scoped advisory lock taken at that moment, each with its chain
position (seq) assigned under the lock and an HMAC over its content and the
previous row's hash. Taking the lock only at commit time keeps it out of the
way of other locks the transaction waits for (the booking exclusion
constraint), which could otherwise deadlock. The database refuses UPDATE,
DELETE and TRUNCATE on the table (triggers in the migration); ``verify()``
walks the chain and reports the first broken link.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import event, insert, select, text
from sqlalchemy.orm import Session

from app.models.audit import AuditEvent

log = logging.getLogger("app.audit")
GENESIS = "0" * 64
LOCK_KEY = 0x4155_4449_54  # "AUDIT"
_PENDING = "audit_pending"
_CONTEXT = "audit_context"
_KEY = "audit_hmac_key"


@dataclass(frozen=True)
class Actor:
    type: str                     # user | system | job | webhook
    id: int | None = None
    role: str | None = None

    @classmethod
    def of(cls, user) -> "Actor":
        if user is None or not getattr(user, "is_authenticated", False):
            return cls("anonymous")
        return cls("user", user.id, user.role)

    @classmethod
    def system(cls, kind: str = "system") -> "Actor":
        return cls(kind)


_process_key: str | None = None


def use_key(key: str) -> None:
    """Set the HMAC key for this process (create_app does it from settings)."""
    global _process_key
    _process_key = key


def set_context(session: Session, *, request_id: str | None, ip: str | None) -> None:
    """Request id and address for rows recorded in this unit of work (set by the web edge)."""
    session.info[_CONTEXT] = {"request_id": request_id, "ip": ip}


def record(session: Session, *, actor: Actor, action: str, outcome: str = "success",
           reason: str | None = None, patient_id: int | None = None,
           appointment_id: int | None = None, payment_attempt_id: int | None = None,
           stripe_object_id: str | None = None, encounter_id: int | None = None,
           subject_user_id: int | None = None, authorized_by: int | None = None,
           details: dict | None = None, at: datetime | None = None) -> None:
    """Collect one audit row; it is written with the transaction's commit."""
    context = session.info.get(_CONTEXT) or {}
    session.connection()   # begin the transaction now, so its rollback drops the row too
    session.info.setdefault(_PENDING, []).append(dict(
        occurred_at=(at or datetime.now(timezone.utc)).astimezone(timezone.utc),
        actor_type=actor.type, actor_id=actor.id, actor_role=actor.role,
        action=action, patient_id=patient_id, appointment_id=appointment_id,
        payment_attempt_id=payment_attempt_id, stripe_object_id=stripe_object_id,
        encounter_id=encounter_id, subject_user_id=subject_user_id, outcome=outcome,
        reason=reason, authorized_by=authorized_by,
        request_id=context.get("request_id"), ip=context.get("ip"),
        details=details or {},
    ))


def _canonical(row: dict[str, Any]) -> bytes:
    values = {}
    for name in AuditEvent.HASHED:
        value = row.get(name)
        if isinstance(value, datetime):
            value = value.astimezone(timezone.utc).isoformat(timespec="microseconds")
        values[name] = value
    return json.dumps(values, sort_keys=True, separators=(",", ":"), default=str).encode()


def compute_hash(key: str, row: dict[str, Any]) -> str:
    return hmac.new(key.encode(), _canonical(row), hashlib.sha256).hexdigest()


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    key = session.info.get(_KEY) or _process_key
    if not key:
        raise RuntimeError("audit: the session has no HMAC key (create_app configures it)")
    conn = session.connection()
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    head = conn.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
    rows = []
    for row in pending:
        seq += 1
        row = dict(row, seq=seq, prev_hash=prev)
        row["hash"] = prev = compute_hash(key, row)
        rows.append(row)
    conn.execute(insert(AuditEvent.__table__), rows)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str | None = None
    head_seq: int | None = None
    head_hash: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} rows, head {self.head_seq} {self.head_hash}"
        return f"audit chain BROKEN at seq {self.broken_seq}: {self.problem} ({self.checked} rows checked before it)"


def verify(session: Session, *, key: str, batch: int = 5000) -> Verification:
    """Walk the chain in order; report the first row whose link or content is wrong."""
    prev, expected_seq, checked = GENESIS, 1, 0
    last_seq = 0
    while True:
        rows = session.execute(
            select(AuditEvent.__table__).where(AuditEvent.seq > last_seq)
            .order_by(AuditEvent.seq).limit(batch)
        ).mappings().all()
        if not rows:
            break
        for row in rows:
            row = dict(row)
            if row["seq"] != expected_seq:
                return Verification(False, checked, expected_seq,
                                    f"row {expected_seq} is missing (next row is {row['seq']})")
            if row["prev_hash"] != prev:
                return Verification(False, checked, row["seq"],
                                    "does not link to the previous row's hash")
            if not hmac.compare_digest(compute_hash(key, row), row["hash"]):
                return Verification(False, checked, row["seq"], "content does not match its hash")
            prev, expected_seq, checked = row["hash"], expected_seq + 1, checked + 1
            last_seq = row["seq"]
    return Verification(True, checked, head_seq=last_seq or None, head_hash=prev)


def head(session: Session) -> tuple[int, str] | None:
    row = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    return (row.seq, row.hash) if row else None


def anchor(session: Session) -> tuple[int, str] | None:
    """Write the chain head to the application log: an anchor outside the database."""
    current = head(session)
    if current:
        log.info("audit anchor seq=%s hash=%s", *current)
    return current


def actions_for(session: Session, **filters) -> list[str]:
    query = select(AuditEvent.action).order_by(AuditEvent.seq)
    for name, value in filters.items():
        query = query.where(getattr(AuditEvent, name) == value)
    return list(session.scalars(query))
