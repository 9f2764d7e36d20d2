"""Shared steps for the payout money tests (issue 16): a provider's Connect account onboarded at the sandbox, a
deposit-to-book visit paid (tests/helpers/payments.paid_appointment) and completed, the payout tick, a refund,
what Stripe holds (the transfers of a visit's group, a connected account's balance) and the ledger's checks."""
from __future__ import annotations

from datetime import timedelta

import stripe
from sqlalchemy import select

from app.models import Appointment, AuditEvent, Charge, LedgerTransaction, PayoutSplit, ProviderTransfer
from app.models.payouts import ProviderAccount
from app.services import booking, ledger, payout_accounts, payouts, settlement
from app.services.audit import Actor
from tests.helpers.payments import MON_10_NY, paid_appointment

REFRESH = "http://portal.test/staff/payouts/refresh"
RETURN = "http://portal.test/staff/payouts/return"


def client(sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(sandbox.secret_key, base_addresses={"api": sandbox.api_base}, max_network_retries=0)


def started(db, provider, clock) -> ProviderAccount:
    """The provider's Express account made through the app, its onboarding started (not finished)."""
    actor = Actor("user", provider.user_id, "provider")
    account = payout_accounts.open_account(db, provider, actor=actor)
    db.commit()
    payout_accounts.start_onboarding(db, account, actor=actor, now=clock.now(), refresh_url=REFRESH,
                                     return_url=RETURN)
    db.commit()
    return account


def connect(db, provider, clock, sandbox, *, onboard: bool = True, **bank) -> ProviderAccount:
    """The provider's Express account (made through the app), onboarded at the sandbox and read back
    (``bank``: the onboarding form's fields, e.g. ``account_number="000111111116"``: payouts fail)."""
    account = started(db, provider, clock)
    if onboard:
        actor = Actor("user", provider.user_id, "provider")
        sandbox.onboard_account(account.stripe_account_id, **bank)
        payout_accounts.refresh_account(db, account, actor=actor, now=clock.now())
        db.commit()
        assert account.status == "enabled"
    return account


def paid_visit(db, factories, clock, policy, sandbox, *, price_cents: int = 12500) -> Appointment:
    """A deposit-to-book visit whose deposit was paid and captured (confirmed, not yet held)."""
    appointment = paid_appointment(db, factories, clock, policy, sandbox, starts_at=MON_10_NY, price_cents=price_cents)
    charge = deposit_of(db, appointment.id)
    assert charge.status == "captured" and charge.amount_captured_cents == price_cents
    return db.get(Appointment, appointment.id)


def complete(db, appointment, clock) -> None:
    """The provider checks the patient in and completes the visit (after its start)."""
    actor = Actor("user", appointment.provider.user_id, "provider")
    booking.mark(db, appointment, "check_in", actor=actor, now=clock.now())
    booking.mark(db, appointment, "complete", actor=actor, now=clock.now())
    db.commit()


def deposit_of(db, appointment_id) -> Charge:
    db.expire_all()
    return db.scalar(select(Charge).where(Charge.appointment_id == appointment_id, Charge.purpose == "deposit"))


def tick(db, clock) -> dict:
    result = payouts.tick(db, now=clock.now())
    db.expire_all()
    return result


def after_hold(clock) -> None:
    clock.advance(payouts_hold(clock) + timedelta(seconds=1))


def payouts_hold(clock) -> timedelta:
    from flask import current_app

    return current_app.config["SETTINGS"].PAYOUT_HOLD


def split_of(db, appointment_id, purpose: str = "deposit") -> PayoutSplit | None:
    db.expire_all()
    return db.scalar(select(PayoutSplit).join(Charge, Charge.id == PayoutSplit.charge_id)
                     .where(PayoutSplit.appointment_id == appointment_id, Charge.purpose == purpose))


def transfers_of(db, split) -> list[ProviderTransfer]:
    db.expire_all()
    return list(db.scalars(select(ProviderTransfer).where(ProviderTransfer.split_id == split.id)
                           .order_by(ProviderTransfer.number)))


def group_at_stripe(sandbox, appointment_id, account) -> list:
    """The transfers Stripe holds for the visit's transfer group to this test's connected account (the sandbox
    outlives each test's database: appointment ids repeat, accounts do not)."""
    return [t for t in client(sandbox).v1.transfers.list(
        params={"transfer_group": f"appointment_{appointment_id}", "limit": 100}).auto_paging_iter()
        if t.destination == account.stripe_account_id]


def balance_of(sandbox, account_id) -> tuple[int, int]:
    """(available, pending) USD of a connected account, read with ``Stripe-Account`` through the SDK."""
    b = client(sandbox).v1.balance.retrieve(options={"stripe_account": account_id})
    available = sum(x.amount for x in b.available if x.currency == "usd")
    pending = sum(x.amount for x in b.pending if x.currency == "usd")
    return available, pending


def refund(db, charge, amount: int, *, reason: str = "billing adjustment after the visit"):
    return settlement.issue_refund(db, charge=charge, amount_cents=amount, stripe_reason="requested_by_customer",
                                   clinical_reason=reason, policy="billing", authorized_by=None,
                                   actor=Actor.system("test"))


def postings(db, *, appointment_id=None, kind=None) -> list[LedgerTransaction]:
    db.expire_all()
    query = select(LedgerTransaction).order_by(LedgerTransaction.id)
    if appointment_id is not None:
        query = query.where(LedgerTransaction.appointment_id == appointment_id)
    if kind is not None:
        query = query.where(LedgerTransaction.kind == kind)
    return list(db.scalars(query))


def entries(txn) -> dict[str, int]:
    """{account: amount} of one posting (an account twice: summed)."""
    out: dict[str, int] = {}
    for e in txn.entries:
        out[e.account] = out.get(e.account, 0) + e.amount_cents
    return out


def assert_ledger_balanced(db) -> None:
    """Every ledger transaction sums to zero, and none is empty."""
    db.expire_all()
    assert ledger.unbalanced_transactions(db) == []
    for txn in db.scalars(select(LedgerTransaction)):
        assert txn.entries and sum(e.amount_cents for e in txn.entries) == 0, txn.dedupe_key


def actions(db, appointment_id, prefix: str = "payout.") -> list[str]:
    return [a for a in db.scalars(select(AuditEvent.action).where(AuditEvent.appointment_id == appointment_id)
                                  .order_by(AuditEvent.seq)) if a.startswith(prefix)]


def held_visit(db, factories, clock, policy, sandbox, **bank):
    """A completed deposit-to-book visit of a provider with an enabled account (``bank``: see ``connect``),
    its split made by the tick and held (the hold not over yet): (appointment, account, split)."""
    appointment = paid_visit(db, factories, clock, policy, sandbox)
    account = connect(db, appointment.provider, clock, sandbox, **bank)
    complete(db, db.get(Appointment, appointment.id), clock)
    tick(db, clock)
    return appointment, account, split_of(db, appointment.id)


def transferred_visit(db, factories, clock, policy, sandbox, **bank):
    """A completed deposit-to-book visit whose provider's share was transferred after the hold."""
    appointment, account, _ = held_visit(db, factories, clock, policy, sandbox, **bank)
    after_hold(clock)
    tick(db, clock)
    split = split_of(db, appointment.id)
    assert split.status == "transferred"
    return appointment, account, split
