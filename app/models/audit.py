"""The append-only, hash-chained audit trail (HIPAA audit controls).

Rows are written only by ``app.services.audit`` just before a commit; the
database itself refuses UPDATE, DELETE and TRUNCATE (see the migration).
``seq`` is the chain position, assigned under an advisory lock at write time.
"""
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class AuditEvent(db.Model):
    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_type: Mapped[str] = mapped_column(String(16))    # user | system | job | webhook
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[int | None] = mapped_column(Integer, index=True)
    appointment_id: Mapped[int | None] = mapped_column(Integer, index=True)
    payment_attempt_id: Mapped[int | None] = mapped_column(Integer)
    stripe_object_id: Mapped[str | None] = mapped_column(String(255))
    encounter_id: Mapped[int | None] = mapped_column(Integer)
    subject_user_id: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(32), default="success")
    reason: Mapped[str | None] = mapped_column(Text)
    authorized_by: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSONB, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    # The columns covered by the HMAC, in a fixed order.
    HASHED = (
        "seq", "occurred_at", "actor_type", "actor_id", "actor_role", "action",
        "patient_id", "appointment_id", "payment_attempt_id", "stripe_object_id",
        "encounter_id", "subject_user_id", "outcome", "reason", "authorized_by",
        "request_id", "ip", "details", "prev_hash",
    )
