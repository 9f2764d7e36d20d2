"""Provider payouts (issue 16): the provider's Stripe Connect Express account.

ProviderAccount is one connected account per provider. Its row (with the UUID that roots the
idempotency key of the account's creation) is stored before Stripe hears of it, like
PaymentAttempt and CardSetup; ``stripe_account_id`` is filled in once Stripe answered.

Its ``status`` is ours, derived from Stripe's account by ``derive_status`` and written only by
``app.services.payout_accounts.apply_snapshot``:

    creating     our row exists, Stripe's account not yet known
    onboarding   the account exists; the provider has not submitted their details
    restricted   details submitted, but Stripe still wants something (requirements due, or
                 transfers / payouts not enabled yet)
    enabled      transfers can be sent and payouts made: ready to be paid
    disabled     Stripe disabled the account (``requirements.disabled_reason`` says why)

No PHI goes to Stripe: the account carries only the opaque ids of our rows in its metadata.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, String, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

ACCOUNT_STATUSES = ("creating", "onboarding", "restricted", "enabled", "disabled")


class ProviderAccount(db.Model):
    __tablename__ = "provider_accounts"
    __table_args__ = (
        CheckConstraint("status IN ('creating', 'onboarding', 'restricted', 'enabled', 'disabled')",
                        name="status"),
        CheckConstraint("status = 'creating' OR stripe_account_id IS NOT NULL", name="account_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)   # idempotency key root
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), unique=True)
    stripe_account_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="creating")
    details_submitted: Mapped[bool] = mapped_column(Boolean, default=False)
    charges_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    transfers_active: Mapped[bool] = mapped_column(Boolean, default=False)
    # Stripe's requirements: currently_due + past_due (field names, no personal data), and why disabled.
    requirements_due: Mapped[list] = mapped_column(JSONB, default=list)
    disabled_reason: Mapped[str | None] = mapped_column(String(120))
    # The ``created`` time (Stripe's clock, Unix seconds) of the newest account.updated applied: an
    # older event arriving later is ignored.
    last_event_created: Mapped[int | None] = mapped_column(BigInteger)
    synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    provider = relationship("Provider")

    def key(self, operation: str) -> str:
        """The idempotency key of one Stripe operation on this account (``<uuid>:<operation>``)."""
        return f"{self.uuid}:{operation}"

    @property
    def ready(self) -> bool:
        return self.status == "enabled"


def derive_status(*, details_submitted: bool, charges_enabled: bool, payouts_enabled: bool,
                  transfers_active: bool, requirements_due: list, disabled_reason: str | None) -> str:
    """Our status from Stripe's flags (see the module's docstring)."""
    if disabled_reason and disabled_reason.startswith(("rejected", "listed", "platform_paused")):
        return "disabled"
    if not details_submitted:
        return "onboarding"
    if payouts_enabled and transfers_active and not requirements_due and not disabled_reason:
        return "enabled"
    return "restricted"
