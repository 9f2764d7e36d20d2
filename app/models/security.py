"""Server-side sign-in sessions and MFA recovery codes (app/services/sessions.py, app/services/mfa.py)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.types import created_at_column


class UserSession(db.Model):
    """One signed-in browser. The cookie carries a random token; the row is keyed by its SHA-256, so
    a database dump holds no usable session. A row is valid while not revoked and not expired
    (``expires_at``: the absolute lifetime, whatever the activity)."""
    __tablename__ = "user_sessions"
    __table_args__ = (
        Index("ix_user_sessions_live_by_user", "user_id", postgresql_where=text("revoked_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)       # sha256 hex of the cookie token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    remember: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # The last time this session proved the second factor (sign-in, enrolment, step-up).
    mfa_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"<UserSession user={self.user_id}>"


class RecoveryCode(db.Model):
    """A one-time MFA recovery code, stored as the SHA-256 of its normalized text (the codes are
    random, 50 bits each: no salt or slow hash needed)."""
    __tablename__ = "mfa_recovery_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash", name="uq_mfa_recovery_codes_user_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at_column()
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"<RecoveryCode {self.id} user={self.user_id}>"
