"""The ledger (issue 16): double-entry, in cents, append-only like the audit trail.

A LedgerTransaction is one money movement (``kind``), made once (``dedupe_key`` is unique: the
Stripe object, or our row, it records), referencing our rows and Stripe's ids. Its LedgerEntries
sum to zero (a deferred constraint trigger checks it at commit): positive is a debit, negative a
credit. Both tables refuse UPDATE, DELETE and TRUNCATE (``*_append_only``; the app's database role
has only SELECT and INSERT on them): a correction is a new transaction.

An entry on an account held at Stripe (``stripe_balance``, the platform's; ``provider_stripe``, a
provider's connected account) names the Stripe balance transaction it is (``balance_transaction_id``),
and an entry on a fee account (``stripe_fees``, ``dispute_fees``) the one whose fee it is: the
daily reconciliation (app/services/ledger.py) matches them to Stripe's list. The accounts are
listed in app/services/ledger.py (``ACCOUNTS``).
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, DateTime, ForeignKey, Integer, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db

LEDGER_KINDS = ("charge", "split", "refund", "refund_failed", "transfer", "reversal", "payout", "payout_failed",
                "dispute_withdrawal", "dispute_reinstatement", "dispute_lost", "insurer_payment", "write_off")


class LedgerTransaction(db.Model):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        CheckConstraint("kind IN ('charge', 'split', 'refund', 'refund_failed', 'transfer', 'reversal', 'payout', "
                        "'payout_failed', 'dispute_withdrawal', 'dispute_reinstatement', 'dispute_lost', "
                        "'insurer_payment', 'write_off')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), index=True)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    stripe_object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"), index=True)
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"), index=True)
    charge_id: Mapped[int | None] = mapped_column(ForeignKey("charges.id"), index=True)
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    dispute_id: Mapped[int | None] = mapped_column(ForeignKey("disputes.id"))
    transfer_id: Mapped[int | None] = mapped_column(ForeignKey("provider_transfers.id"))
    reversal_id: Mapped[int | None] = mapped_column(ForeignKey("transfer_reversals.id"))
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("provider_payouts.id"))
    memo: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    entries: Mapped[list["LedgerEntry"]] = relationship(back_populates="transaction", order_by="LedgerEntry.id")


class LedgerEntry(db.Model):
    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account: Mapped[str] = mapped_column(String(40), index=True)
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    balance_transaction_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_account_id: Mapped[str | None] = mapped_column(String(255))     # a connected account's entries
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="entries")


class LedgerReconciliation(db.Model):
    """One run of the reconciliation of a day (or a window) against Stripe's balance transactions:
    how many matched, and each mismatch ``{kind: missing_in_ledger | missing_at_stripe | amount_differs |
    fee_differs, balance_transaction, source, account, stripe_cents, ledger_cents}``."""
    __tablename__ = "ledger_reconciliations"
    __table_args__ = (CheckConstraint("status IN ('running', 'matched', 'mismatched', 'failed')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(12), default="running")
    matched: Mapped[int] = mapped_column(Integer, default=0)
    mismatches: Mapped[list] = mapped_column(JSONB, default=list)
    error: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    alerted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
