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

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, ForeignKey, Integer, SmallInteger, String,
                        UniqueConstraint, Uuid, func)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.state import Machine

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


# -- the money side (issue 16): splits, transfers, reversals, payouts --------------------------------
#
# A PayoutSplit is one Stripe charge's division, stored when that charge's money becomes final
# (app/services/payouts.py ``money_final_at``): gross (captured minus refunded by then), Stripe's fee
# (from the charge's balance transaction, posted to the ledger when it was captured), the platform's
# fee (the type's rule, else the clinic's), and the provider's share = gross - Stripe fee - platform
# fee (never below 0, never above the charge's net). ``hold_until`` = final + PAYOUT_HOLD (the
# refund window): no transfer before it.
#
#     held --transfer--> transferred --pay_out--> paid_out
#     transferred | paid_out --reverse_all--> reversed --retransfer--> transferred   (a won dispute)
#     held | reversed --forfeit--> forfeited         (refunded in full before it moved; a lost dispute)
#
# A partial reversal (a partial refund) keeps the status and grows ``reversed_cents``. While a dispute
# is open ``dispute_hold`` keeps a held share from moving.

SPLIT_TRANSITIONS = {
    ("held", "transfer"): "transferred",
    ("transferred", "pay_out"): "paid_out",
    ("transferred", "reverse_all"): "reversed",
    ("paid_out", "reverse_all"): "reversed",
    ("reversed", "retransfer"): "transferred",
    ("held", "forfeit"): "forfeited",
    ("reversed", "forfeit"): "forfeited",
}
SPLIT_MACHINE = Machine("payout_split", SPLIT_TRANSITIONS)
SPLIT_STATUSES = ("held", "transferred", "paid_out", "reversed", "forfeited")


class PayoutSplit(db.Model):
    __tablename__ = "payout_splits"
    __table_args__ = (
        CheckConstraint("status IN ('held', 'transferred', 'paid_out', 'reversed', 'forfeited')", name="status"),
        CheckConstraint("gross_cents >= 0 AND stripe_fee_cents >= 0 AND platform_fee_cents >= 0 "
                        "AND provider_share_cents >= 0", name="money"),
        CheckConstraint("provider_share_cents + stripe_fee_cents + platform_fee_cents <= gross_cents "
                        "OR provider_share_cents = 0", name="share_within_gross"),
        CheckConstraint("transferred_cents >= 0 AND reversed_cents >= 0 AND reversed_cents <= transferred_cents",
                        name="moved"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)   # idempotency key root
    charge_id: Mapped[int] = mapped_column(ForeignKey("charges.id"), unique=True)
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), index=True)
    stripe_charge_id: Mapped[str] = mapped_column(String(255), unique=True)
    gross_cents: Mapped[int] = mapped_column(Integer)
    stripe_fee_cents: Mapped[int] = mapped_column(Integer)
    platform_fee_cents: Mapped[int] = mapped_column(Integer)
    provider_share_cents: Mapped[int] = mapped_column(Integer)
    # The fee rule applied, as it stood (percent in basis points, fixed cents, where it came from).
    fee_rule: Mapped[dict] = mapped_column(JSONB, default=dict)
    final_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hold_until: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    status: Mapped[str] = mapped_column(String(12), default="held")
    dispute_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    transferred_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    reversed_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    charge = relationship("Charge")
    appointment = relationship("Appointment")
    provider = relationship("Provider")
    transfers: Mapped[list["ProviderTransfer"]] = relationship(back_populates="split",
                                                               order_by="ProviderTransfer.number")

    def transition(self, action: str) -> str:
        """The one writer of ``status`` (SPLIT_TRANSITIONS): InvalidTransition / Ignored as every machine."""
        self.status = SPLIT_MACHINE.next(self.status, action)
        return self.status

    def can(self, action: str) -> bool:
        return SPLIT_MACHINE.allows(self.status, action)

    def key(self, operation: str) -> str:
        return f"{self.uuid}:{operation}"

    @property
    def outstanding_cents(self) -> int:
        """What the provider holds of this charge at Stripe now (transferred minus reversed)."""
        return self.transferred_cents - self.reversed_cents


# A transfer is stored (``creating``) before Stripe hears of it, its UUID the key's root; ``number``
# is unique per split, so two workers can never both make the split's first (or second) transfer.
TRANSFER_STATUSES = ("creating", "created", "failed")


class ProviderTransfer(db.Model):
    __tablename__ = "provider_transfers"
    __table_args__ = (
        CheckConstraint("status IN ('creating', 'created', 'failed')", name="status"),
        CheckConstraint("kind IN ('share', 'reinstated')", name="kind"),
        CheckConstraint("amount_cents > 0 AND amount_reversed_cents >= 0 "
                        "AND amount_reversed_cents <= amount_cents", name="money"),
        CheckConstraint("status <> 'created' OR stripe_transfer_id IS NOT NULL", name="created_known"),
        UniqueConstraint("split_id", "number", name="uq_provider_transfers_split_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    split_id: Mapped[int] = mapped_column(ForeignKey("payout_splits.id"), index=True)
    provider_account_id: Mapped[int] = mapped_column(ForeignKey("provider_accounts.id"), index=True)
    number: Mapped[int] = mapped_column(SmallInteger, default=1)
    kind: Mapped[str] = mapped_column(String(12), default="share")
    amount_cents: Mapped[int] = mapped_column(Integer)
    amount_reversed_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="creating")
    failure: Mapped[str | None] = mapped_column(String(255))
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("provider_payouts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    split: Mapped[PayoutSplit] = relationship(back_populates="transfers")
    account = relationship("ProviderAccount")

    def key(self, operation: str) -> str:
        return f"{self.uuid}:{operation}"


class TransferReversal(db.Model):
    """A provider's share pulled back: a refund's pro-rata part (``refund_id``) or a dispute's
    (``dispute_id``); stored before Stripe hears of it; once per (transfer, refund) and (transfer, dispute)."""
    __tablename__ = "transfer_reversals"
    __table_args__ = (
        CheckConstraint("status IN ('creating', 'created', 'failed')", name="status"),
        CheckConstraint("reason IN ('refund', 'dispute')", name="reason"),
        CheckConstraint("amount_cents > 0", name="amount"),
        CheckConstraint("(reason = 'refund') = (refund_id IS NOT NULL) "
                        "AND (reason = 'dispute') = (dispute_id IS NOT NULL)", name="cause"),
        UniqueConstraint("transfer_id", "refund_id", name="uq_transfer_reversals_refund"),
        UniqueConstraint("transfer_id", "dispute_id", name="uq_transfer_reversals_dispute"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("provider_transfers.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(8))
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    dispute_id: Mapped[int | None] = mapped_column(ForeignKey("disputes.id"))
    stripe_reversal_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="creating")
    failure: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    transfer = relationship("ProviderTransfer")

    def key(self, operation: str) -> str:
        return f"{self.uuid}:{operation}"


# A weekly payout of a provider's available connected balance: one row per (account, period) (the
# week, e.g. 2026-W48), stored before Stripe hears of it. Its status mirrors Stripe's payout:
# creating -> pending -> paid | failed; ``nothing`` when the week found no available balance.
PAYOUT_STATUSES = ("creating", "pending", "in_transit", "paid", "failed", "canceled", "nothing")


class ProviderPayout(db.Model):
    __tablename__ = "provider_payouts"
    __table_args__ = (
        CheckConstraint("status IN ('creating', 'pending', 'in_transit', 'paid', 'failed', 'canceled', "
                        "'nothing')", name="status"),
        CheckConstraint("amount_cents >= 0", name="amount"),
        UniqueConstraint("provider_account_id", "period", name="uq_provider_payouts_account_period"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True, default=uuid.uuid4)
    provider_account_id: Mapped[int] = mapped_column(ForeignKey("provider_accounts.id"), index=True)
    period: Mapped[str] = mapped_column(String(16))
    amount_cents: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    stripe_payout_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="creating")
    failure_code: Mapped[str | None] = mapped_column(String(64))
    arrival_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_event_created: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())

    account = relationship("ProviderAccount")

    def key(self, operation: str) -> str:
        return f"{self.uuid}:{operation}"
