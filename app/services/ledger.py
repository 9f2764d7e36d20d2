"""The ledger (issue 16): double-entry bookkeeping of every money movement, in cents.

``post`` writes one balanced transaction once (by its ``dedupe_key``: a second post of the same key
returns the first and writes nothing), in the caller's transaction (services never commit). The
database refuses an unbalanced transaction at commit and any change to a posted one
(app/models/ledger.py).

Sign: a positive amount is a debit, a negative one a credit. The accounts:

  stripe_balance            the platform's balance at Stripe (asset). Each entry names the Stripe
                            balance transaction it is: their ``net`` must match (reconciliation).
  stripe_fees               Stripe's processing fees (an expense the provider's share bears: the split
                            credits it back).
  dispute_fees              Stripe's dispute fees (the platform's expense).
  patient_payments          money collected from patients and not yet divided (clearing): credited
                            by a charge, debited by its split and by refunds.
  platform_fees             the platform's fee revenue (credit).
  provider_payable          what the platform owes a provider (liability, per provider): credited by
                            a split, debited when the money reaches the provider's bank (payout) or
                            when a refund / lost dispute takes their share back.
  provider_stripe           a provider's connected balance at Stripe (per provider; the transfers
                            put money there, reversals and payouts take it out). Its entries name
                            the connected account's balance transactions.
  disputes_open             money Stripe withdrew for an open dispute (receivable until decided).
  dispute_losses            disputes lost (the platform's part; the provider's share is forfeited).
  refund_losses             the part of a refund beyond the provider's pro-rata share (the
                            platform's fee's share and Stripe's fee, which Stripe keeps).
  insurer_payments          money insurers paid the clinic directly, by bank (outside Stripe).
  provider_payable_insurer  the provider's share of insurer money, for the clinic to settle outside
                            Connect (per provider).
  write_offs / uncollected  a balance the clinic gave up on (memo pair: no money moved).

Which transactions post which entries is written where they are made (app/services/payouts.py,
disputes.py, ledger_posting.py); ``reconcile`` (below) is the daily comparison with Stripe.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models.ledger import LEDGER_KINDS, LedgerEntry, LedgerTransaction
from app.services import DomainError, insert_or_existing

STRIPE_BALANCE = "stripe_balance"
STRIPE_FEES = "stripe_fees"
DISPUTE_FEES = "dispute_fees"
PATIENT_PAYMENTS = "patient_payments"
PLATFORM_FEES = "platform_fees"
PROVIDER_PAYABLE = "provider_payable"
PROVIDER_STRIPE = "provider_stripe"
DISPUTES_OPEN = "disputes_open"
DISPUTE_LOSSES = "dispute_losses"
REFUND_LOSSES = "refund_losses"
INSURER_PAYMENTS = "insurer_payments"
PROVIDER_PAYABLE_INSURER = "provider_payable_insurer"
WRITE_OFFS = "write_offs"
UNCOLLECTED = "uncollected"
ACCOUNTS = (STRIPE_BALANCE, STRIPE_FEES, DISPUTE_FEES, PATIENT_PAYMENTS, PLATFORM_FEES, PROVIDER_PAYABLE,
            PROVIDER_STRIPE, DISPUTES_OPEN, DISPUTE_LOSSES, REFUND_LOSSES, INSURER_PAYMENTS,
            PROVIDER_PAYABLE_INSURER, WRITE_OFFS, UNCOLLECTED)
# Accounts held at Stripe (their entries are balance transactions' nets) and fee accounts (their
# entries are balance transactions' fees): what the reconciliation compares.
AT_STRIPE = (STRIPE_BALANCE, PROVIDER_STRIPE)
FEE_ACCOUNTS = (STRIPE_FEES, DISPUTE_FEES)
PER_PROVIDER = (PROVIDER_PAYABLE, PROVIDER_STRIPE, PROVIDER_PAYABLE_INSURER)


class Unbalanced(DomainError):
    """A transaction whose entries do not sum to zero (a bug: nothing is written)."""


@dataclass(frozen=True)
class Entry:
    account: str
    amount_cents: int
    provider_id: int | None = None
    balance_transaction_id: str | None = None     # the Stripe balance transaction (AT_STRIPE, FEE_ACCOUNTS)
    stripe_account_id: str | None = None          # a connected account's (PROVIDER_STRIPE)
    currency: str = "usd"


def post(session: Session, *, kind: str, dedupe_key: str, occurred_at: datetime, entries: list[Entry],
         stripe_object_id: str | None = None, memo: str | None = None, **refs) -> tuple[LedgerTransaction, bool]:
    """Post one balanced transaction once. ``refs``: appointment_id, provider_id, charge_id,
    refund_id, dispute_id, transfer_id, reversal_id, payout_id. Returns ``(transaction, posted)``:
    posted is False when ``dedupe_key`` was posted before (the earlier one is returned). Entries of
    0 cents are left out; a transaction with nothing left is not posted (``(None, False)``)."""
    if kind not in LEDGER_KINDS:
        raise ValueError(f"ledger: unknown kind {kind}")
    kept = [e for e in entries if e.amount_cents != 0]
    for e in kept:
        if e.account not in ACCOUNTS:
            raise ValueError(f"ledger: unknown account {e.account}")
        if e.account in PER_PROVIDER and e.provider_id is None:
            raise ValueError(f"ledger: {e.account} needs a provider")
    if sum(e.amount_cents for e in kept) != 0:
        raise Unbalanced(f"{kind} {dedupe_key}: entries sum to {sum(e.amount_cents for e in kept)}")
    existing = find(session, dedupe_key)
    if existing is not None:
        return existing, False
    if not kept:
        return None, False
    txn = LedgerTransaction(kind=kind, dedupe_key=dedupe_key, occurred_at=occurred_at,
                            stripe_object_id=stripe_object_id, memo=memo, **refs)
    txn, inserted = insert_or_existing(session, txn, lambda: find(session, dedupe_key))
    if not inserted:
        return txn, False
    for e in kept:
        session.add(LedgerEntry(transaction_id=txn.id, account=e.account, provider_id=e.provider_id,
                                amount_cents=e.amount_cents, currency=e.currency,
                                balance_transaction_id=e.balance_transaction_id,
                                stripe_account_id=e.stripe_account_id))
    session.flush()
    return txn, True


def find(session: Session, dedupe_key: str) -> LedgerTransaction | None:
    return session.scalar(select(LedgerTransaction).where(LedgerTransaction.dedupe_key == dedupe_key))


def posted(session: Session, dedupe_key: str) -> bool:
    return session.scalar(select(LedgerTransaction.id).where(LedgerTransaction.dedupe_key == dedupe_key)) is not None


def balance(session: Session, account: str, *, provider_id: int | None = None) -> int:
    """The sum of an account's entries (per provider where it is kept per provider)."""
    query = select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0)).where(LedgerEntry.account == account)
    if provider_id is not None:
        query = query.where(LedgerEntry.provider_id == provider_id)
    return int(session.scalar(query))


def unbalanced_transactions(session: Session) -> list[int]:
    """Ids of transactions whose entries do not sum to zero (the database refuses them at commit;
    this finds any left by a hand edit as the owner)."""
    return list(session.scalars(
        select(LedgerEntry.transaction_id).group_by(LedgerEntry.transaction_id)
        .having(func.sum(LedgerEntry.amount_cents) != 0)))
