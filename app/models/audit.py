"""The append-only audit trail (HIPAA audit controls): rows, and the chain that links them.

``AuditEvent`` rows are written only by ``app.services.audit``, in the transaction
of the change they describe, each with its own HMAC (``hash``) over its content;
``seq`` comes from a sequence (a unique id, ascending in allocation order; not
commit order, and not gap-free: a rolled-back transaction leaves a gap).

``AuditLink`` is the chain: one sequencer (``audit.link_pending``) appends a link
for every committed row, gap-free ``position`` 1, 2, 3..., with
``hash = HMAC(key, prev_hash : row HMAC : position)``. The database refuses
UPDATE, DELETE and TRUNCATE on both tables (see the migrations).
"""
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, Sequence, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import EncryptedText

SEQ_SEQUENCE = "audit_events_seq_seq"


class AuditEvent(db.Model):
    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, Sequence(SEQ_SEQUENCE), primary_key=True)
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
    # Encrypted at rest; the row's HMAC is over the plaintext (app/services/audit.py), and a row is
    # never re-encrypted (append-only): it keeps the key id it was written with.
    reason: Mapped[str | None] = mapped_column(EncryptedText("audit_events.reason"))
    authorized_by: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSONB, default=dict)
    # Rows written before migration 0007 were chained row to row: their previous row's hash.
    # NULL for rows written since (the chain lives in audit_links); covered by the HMAC either way.
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))           # the row's HMAC over HASHED

    # The columns covered by the row HMAC, in a fixed order.
    HASHED = (
        "seq", "occurred_at", "actor_type", "actor_id", "actor_role", "action",
        "patient_id", "appointment_id", "payment_attempt_id", "stripe_object_id",
        "encounter_id", "subject_user_id", "outcome", "reason", "authorized_by",
        "request_id", "ip", "details", "prev_hash",
    )


class AuditLink(db.Model):
    __tablename__ = "audit_links"

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_seq: Mapped[int] = mapped_column(BigInteger, ForeignKey("audit_events.seq", ondelete="RESTRICT"),
                                           unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
