"""The ledger's postings for money the platform takes, gives back, divides and moves to providers (issue 16):
charges, refunds and failed refunds, splits, transfers, reversals, payouts and failed payouts, insurer payments
and write-offs. (Disputes' withdrawals and reinstatements are posted by app/services/disputes.py; a lost
dispute's division by ``dispute_lost`` here, which app/services/payouts.py calls.)

Each ``post_*`` takes the session, our row(s) and the Stripe figures, and posts one balanced transaction once
(``ledger.post``: by its dedupe key; a second call writes nothing). Signs: debit +, credit -. S = the split's
provider share, G = its gross, P = its platform fee, F = Stripe's fee:

    charge:<ch>          stripe_balance +net (the charge's bt), stripe_fees +fee (same bt), patient_payments -amount
    refund:<re>          before the charge's split: stripe_balance -R (the refund's bt), patient_payments +R;
                         after it: stripe_balance -R, provider_payable +s_r, platform_fees +p_r,
                         refund_losses +(R - s_r - p_r)   (s_r = S*R/G, p_r = P*R/G, half up, within what is left)
    refund_failed:<re>   the refund's entries negated; stripe_balance names the failure's bt
    split:<charge id>    patient_payments +G, stripe_fees -F, platform_fees -P, provider_payable -S
                         (G < F: refund_losses +(F - G), the fee Stripe kept on money given back)
    transfer:<tr>        stripe_balance -T (the platform's ``transfer`` bt), provider_stripe +T (the connected
                         account's ``payment`` bt: source = the transfer's destination_payment)
    reversal:<trr>       stripe_balance +r (``transfer_refund`` bt), provider_stripe -r (the connected
                         ``payment_refund`` bt: source = the reversal's destination_payment_refund)
    payout:<po>          provider_stripe -X (the connected ``payout`` bt), provider_payable +X
    payout_failed:<po>   provider_stripe +X (the connected failure bt), provider_payable -X
    dispute_lost:<du>    disputes_open -D, provider_payable +s_d (S*D/G), dispute_losses +(D - s_d)
    insurer_payment:<remittance id>  insurer_payments +A, platform_fees -p, provider_payable_insurer -(A - p)
    write_off:<case id>  write_offs +A, uncollected -A

``catch_up`` finds what is missing and posts it: the database finishes the work a crash interrupted
(captured charges, refunds at Stripe, failed refunds, transfers, reversals and payouts recorded without
their posting, applied remittances an insurer paid, written-off collection cases). It reads Stripe but
never commits (the payout tick commits after it). No function here commits.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import and_, exists, func, literal, select
from sqlalchemy.orm import Session

from app.integrations.stripe_common import BalanceTxn, GatewayError, GatewayUnavailable
from app.integrations.stripe_money import ChargeMoney, PayoutResult, RefundMoney, ReversalResult, TransferResult
from app.models import (Appointment, AuditEvent, Charge, Claim, CollectionCase, PaymentAttempt, Refund, Remittance)
from app.models.ledger import LedgerEntry, LedgerTransaction
from app.models.payouts import PayoutSplit, ProviderAccount, ProviderPayout, ProviderTransfer, TransferReversal
from app.services import ledger
from app.services.ledger import Entry

log = logging.getLogger(__name__)
BATCH = 100


# -- arithmetic ---------------------------------------------------------------------------------------

def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up (both >= 0, denominator > 0)."""
    return (2 * numerator + denominator) // (2 * denominator)


def pro_rata(part_of: int, amount: int, whole: int, *, left: int) -> int:
    """``part_of`` x amount / whole, rounded half up, never more than ``left`` (nor below 0)."""
    if whole <= 0 or amount <= 0 or part_of <= 0:
        return 0
    return max(0, min(round_half_up(part_of * amount, whole), left))


def _at(created: int | None, fallback: datetime) -> datetime:
    """Stripe's ``created`` (Unix seconds) as a UTC time: when the money moved at Stripe."""
    return datetime.fromtimestamp(created, timezone.utc) if created else fallback


def _provider_of(session: Session, appointment_id: int) -> int:
    return session.scalar(select(Appointment.provider_id).where(Appointment.id == appointment_id))


def split_of_charge(session: Session, charge_id: int) -> PayoutSplit | None:
    return session.scalar(select(PayoutSplit).where(PayoutSplit.charge_id == charge_id))


def taken_back(session: Session, charge_id: int, account: str) -> int:
    """What refunds (net of failed ones) posted after the split took back from ``account`` of this charge
    (positive: debits of provider_payable / platform_fees)."""
    return int(session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.charge_id == charge_id, LedgerTransaction.kind.in_(("refund", "refund_failed")),
               LedgerEntry.account == account)))


# -- postings -----------------------------------------------------------------------------------------

def post_charge(session: Session, charge: Charge, money: ChargeMoney, *, now: datetime):
    """``charge:<ch>``: the captured charge's money at Stripe (its balance transaction)."""
    bt = money.balance_transaction
    if bt is None:
        return None, False
    provider_id = _provider_of(session, charge.appointment_id)
    return ledger.post(session, kind="charge", dedupe_key=f"charge:{money.id}", occurred_at=_at(bt.created, now),
                       stripe_object_id=money.id, appointment_id=charge.appointment_id, provider_id=provider_id,
                       charge_id=charge.id, entries=[
                           Entry(ledger.STRIPE_BALANCE, bt.net, balance_transaction_id=bt.id, currency=bt.currency),
                           Entry(ledger.STRIPE_FEES, bt.fee, balance_transaction_id=bt.id, currency=bt.currency),
                           Entry(ledger.PATIENT_PAYMENTS, -bt.amount, currency=bt.currency)])


@dataclass(frozen=True)
class RefundShares:
    provider: int      # s_r
    platform: int      # p_r
    loss: int          # R - s_r - p_r


def refund_shares(split: PayoutSplit, amount: int, *, provider_taken: int, platform_taken: int) -> RefundShares:
    """How a refund of ``amount`` after the split divides: the provider's pro-rata share (within what is left
    of S), the platform fee's (within what is left of P), and the rest (Stripe's fee, which it keeps)."""
    s_r = pro_rata(split.provider_share_cents, amount, split.gross_cents,
                   left=split.provider_share_cents - provider_taken)
    p_r = pro_rata(split.platform_fee_cents, amount, split.gross_cents,
                   left=min(split.platform_fee_cents - platform_taken, amount - s_r))
    return RefundShares(s_r, p_r, amount - s_r - p_r)


def post_refund(session: Session, refund: Refund, money: RefundMoney, *, now: datetime):
    """``refund:<re>``: before the charge's split the money goes back out of patient_payments; after it, the
    provider's pro-rata share and the platform fee's come back, the rest is the platform's loss."""
    bt = money.balance_transaction
    if bt is None:
        return None, False
    charge = session.get(Charge, refund.charge_id)
    amount = -bt.net                     # the refund's bt: -R, no fee
    split = split_of_charge(session, charge.id)
    provider_id = _provider_of(session, charge.appointment_id)
    entries = [Entry(ledger.STRIPE_BALANCE, bt.net, balance_transaction_id=bt.id, currency=bt.currency)]
    if split is None:
        entries.append(Entry(ledger.PATIENT_PAYMENTS, amount, currency=bt.currency))
    else:
        shares = refund_shares(split, amount, provider_taken=taken_back(session, charge.id, ledger.PROVIDER_PAYABLE),
                               platform_taken=taken_back(session, charge.id, ledger.PLATFORM_FEES))
        entries += [Entry(ledger.PROVIDER_PAYABLE, shares.provider, provider_id=split.provider_id,
                          currency=bt.currency),
                    Entry(ledger.PLATFORM_FEES, shares.platform, currency=bt.currency),
                    Entry(ledger.REFUND_LOSSES, shares.loss, currency=bt.currency)]
    return ledger.post(session, kind="refund", dedupe_key=f"refund:{money.id}", occurred_at=_at(bt.created, now),
                       stripe_object_id=money.id, appointment_id=charge.appointment_id, provider_id=provider_id,
                       charge_id=charge.id, refund_id=refund.id, entries=entries)


def post_refund_failed(session: Session, refund: Refund, money: RefundMoney, *, now: datetime):
    """``refund_failed:<re>``: the refund's own entries negated, the money back on the failure's bt."""
    fbt = money.failure_balance_transaction
    posted = ledger.find(session, f"refund:{money.id}")
    if fbt is None or posted is None:
        return None, False
    entries = []
    for e in posted.entries:
        if e.account == ledger.STRIPE_BALANCE:
            entries.append(Entry(e.account, fbt.net, balance_transaction_id=fbt.id, currency=fbt.currency))
        else:
            entries.append(Entry(e.account, -e.amount_cents, provider_id=e.provider_id, currency=e.currency))
    return ledger.post(session, kind="refund_failed", dedupe_key=f"refund_failed:{money.id}",
                       occurred_at=_at(fbt.created, now), stripe_object_id=money.id,
                       appointment_id=posted.appointment_id, provider_id=posted.provider_id,
                       charge_id=posted.charge_id, refund_id=refund.id, entries=entries)


def post_split(session: Session, split: PayoutSplit):
    """``split:<charge id>``: the charge's money, final, divided (see the module's docstring)."""
    g, f, p, s = split.gross_cents, split.stripe_fee_cents, split.platform_fee_cents, split.provider_share_cents
    return ledger.post(session, kind="split", dedupe_key=f"split:{split.charge_id}", occurred_at=split.final_at,
                       stripe_object_id=split.stripe_charge_id, appointment_id=split.appointment_id,
                       provider_id=split.provider_id, charge_id=split.charge_id, entries=[
                           Entry(ledger.PATIENT_PAYMENTS, g), Entry(ledger.STRIPE_FEES, -f),
                           Entry(ledger.PLATFORM_FEES, -p),
                           Entry(ledger.PROVIDER_PAYABLE, -s, provider_id=split.provider_id),
                           Entry(ledger.REFUND_LOSSES, f + p + s - g)])


def post_transfer(session: Session, transfer: ProviderTransfer, result: TransferResult, payment: BalanceTxn, *,
                  now: datetime):
    """``transfer:<tr>``: from the platform's balance to the provider's connected balance."""
    split = transfer.split
    account = session.get(ProviderAccount, transfer.provider_account_id)
    return ledger.post(session, kind="transfer", dedupe_key=f"transfer:{result.id}",
                       occurred_at=_at(result.created, now),
                       stripe_object_id=result.id, appointment_id=split.appointment_id, provider_id=split.provider_id,
                       charge_id=split.charge_id, transfer_id=transfer.id, entries=[
                           Entry(ledger.STRIPE_BALANCE, -result.amount,
                                 balance_transaction_id=result.balance_transaction, currency=result.currency),
                           Entry(ledger.PROVIDER_STRIPE, result.amount, provider_id=split.provider_id,
                                 balance_transaction_id=payment.id, stripe_account_id=account.stripe_account_id,
                                 currency=result.currency)])


def post_reversal(session: Session, reversal: TransferReversal, result: ReversalResult, payment_refund: BalanceTxn,
                  *, now: datetime):
    """``reversal:<trr>``: back from the provider's connected balance to the platform's."""
    transfer = session.get(ProviderTransfer, reversal.transfer_id)
    split = transfer.split
    account = session.get(ProviderAccount, transfer.provider_account_id)
    return ledger.post(session, kind="reversal", dedupe_key=f"reversal:{result.id}",
                       occurred_at=_at(result.created, now),
                       stripe_object_id=result.id, appointment_id=split.appointment_id, provider_id=split.provider_id,
                       charge_id=split.charge_id, transfer_id=transfer.id, reversal_id=reversal.id,
                       refund_id=reversal.refund_id, dispute_id=reversal.dispute_id, entries=[
                           Entry(ledger.STRIPE_BALANCE, result.amount,
                                 balance_transaction_id=result.balance_transaction),
                           Entry(ledger.PROVIDER_STRIPE, -result.amount, provider_id=split.provider_id,
                                 balance_transaction_id=payment_refund.id,
                                 stripe_account_id=account.stripe_account_id)])


def post_payout(session: Session, payout: ProviderPayout, result: PayoutResult, *, now: datetime):
    """``payout:<po>``: the provider's money leaves their connected balance for their bank."""
    account = session.get(ProviderAccount, payout.provider_account_id)
    return ledger.post(session, kind="payout", dedupe_key=f"payout:{result.id}", occurred_at=_at(result.created, now),
                       stripe_object_id=result.id, provider_id=account.provider_id, payout_id=payout.id, entries=[
                           Entry(ledger.PROVIDER_STRIPE, -result.amount, provider_id=account.provider_id,
                                 balance_transaction_id=result.balance_transaction,
                                 stripe_account_id=account.stripe_account_id, currency=result.currency),
                           Entry(ledger.PROVIDER_PAYABLE, result.amount, provider_id=account.provider_id,
                                 currency=result.currency)])


def post_payout_failed(session: Session, payout: ProviderPayout, result: PayoutResult, *, now: datetime,
                       failed_at: int | None = None):
    """``payout_failed:<po>``: the bank sent it back; the money is in the connected balance again
    (``failed_at``: the failure's balance transaction's ``created``)."""
    if not result.failure_balance_transaction:
        return None, False
    account = session.get(ProviderAccount, payout.provider_account_id)
    return ledger.post(session, kind="payout_failed", dedupe_key=f"payout_failed:{result.id}",
                       occurred_at=_at(failed_at, now),
                       stripe_object_id=result.id, provider_id=account.provider_id, payout_id=payout.id, entries=[
                           Entry(ledger.PROVIDER_STRIPE, result.amount, provider_id=account.provider_id,
                                 balance_transaction_id=result.failure_balance_transaction,
                                 stripe_account_id=account.stripe_account_id, currency=result.currency),
                           Entry(ledger.PROVIDER_PAYABLE, -result.amount, provider_id=account.provider_id,
                                 currency=result.currency)])


def post_dispute_lost(session: Session, dispute, split: PayoutSplit, provider_share: int, *, now: datetime):
    """``dispute_lost:<du>``: the disputed amount is lost; the provider's pro-rata share comes back out of
    what the platform owes them, the rest is the platform's loss."""
    return ledger.post(session, kind="dispute_lost", dedupe_key=f"dispute_lost:{dispute.stripe_dispute_id}",
                       occurred_at=now, stripe_object_id=dispute.stripe_dispute_id,
                       appointment_id=split.appointment_id, provider_id=split.provider_id, charge_id=split.charge_id,
                       dispute_id=dispute.id, entries=[
                           Entry(ledger.DISPUTES_OPEN, -dispute.amount_cents, currency=dispute.currency),
                           Entry(ledger.PROVIDER_PAYABLE, provider_share, provider_id=split.provider_id,
                                 currency=dispute.currency),
                           Entry(ledger.DISPUTE_LOSSES, dispute.amount_cents - provider_share,
                                 currency=dispute.currency)])


def post_insurer_payment(session: Session, remittance: Remittance, *, appointment: Appointment,
                         platform_fee_cents: int):
    """``insurer_payment:<remittance id>``: money an insurer paid the clinic by bank (outside Stripe): the
    platform's fee on it, and the provider's share for the clinic to settle outside Connect."""
    amount = remittance.paid_cents
    fee = min(platform_fee_cents, amount)
    return ledger.post(session, kind="insurer_payment", dedupe_key=f"insurer_payment:{remittance.id}",
                       occurred_at=remittance.received_at, appointment_id=appointment.id,
                       provider_id=appointment.provider_id, entries=[
                           Entry(ledger.INSURER_PAYMENTS, amount), Entry(ledger.PLATFORM_FEES, -fee),
                           Entry(ledger.PROVIDER_PAYABLE_INSURER, -(amount - fee),
                                 provider_id=appointment.provider_id)])


def post_write_off(session: Session, case: CollectionCase, amount_cents: int, *, now: datetime):
    """``write_off:<case id>``: a balance the clinic gave up on (a memo pair: no money moved)."""
    provider_id = _provider_of(session, case.appointment_id)
    return ledger.post(session, kind="write_off", dedupe_key=f"write_off:{case.id}",
                       occurred_at=case.resolved_at or now, appointment_id=case.appointment_id,
                       provider_id=provider_id, charge_id=case.charge_id, entries=[
                           Entry(ledger.WRITE_OFFS, amount_cents), Entry(ledger.UNCOLLECTED, -amount_cents)])


# -- Stripe's side of the postings that need a connected account's balance transaction -----------------

def payment_bt(gw, account: str, source: str | None) -> BalanceTxn | None:
    """The connected account's balance transaction whose source is ``source`` (a transfer's
    destination_payment ``py_``, a reversal's destination_payment_refund ``pyr_``)."""
    if not source:
        return None
    found = gw.balance_transactions(account=account, source=source)
    return found[0] if found else None


def record_transfer_posting(session: Session, gw, transfer: ProviderTransfer, result: TransferResult, *,
                            now: datetime):
    account = session.get(ProviderAccount, transfer.provider_account_id)
    payment = payment_bt(gw, account.stripe_account_id, result.destination_payment)
    if payment is None:
        raise GatewayUnavailable(f"transfer {result.id}: the connected account's payment is not listed yet")
    return post_transfer(session, transfer, result, payment, now=now)


def record_reversal_posting(session: Session, gw, reversal: TransferReversal, result: ReversalResult, *,
                            now: datetime):
    transfer = session.get(ProviderTransfer, reversal.transfer_id)
    account = session.get(ProviderAccount, transfer.provider_account_id)
    payment_refund = payment_bt(gw, account.stripe_account_id, result.destination_payment_refund)
    if payment_refund is None:
        raise GatewayUnavailable(f"reversal {result.id}: the connected account's payment refund is not listed yet")
    return post_reversal(session, reversal, result, payment_refund, now=now)


# -- catch-up: the database finishes the work -----------------------------------------------------------

def _not_posted(key_prefix: str, column):
    return ~exists().where(LedgerTransaction.dedupe_key == literal(key_prefix).concat(column))


def _posted(key_prefix: str, column):
    return exists().where(LedgerTransaction.dedupe_key == literal(key_prefix).concat(column))


def _guarded(counts: dict, name: str, session: Session, work) -> None:
    """One item: Stripe read first, then the posting in a savepoint; a failure skips the item (the next
    catch-up tries again) and never spoils the others."""
    try:
        with session.begin_nested():
            done = work()
    except GatewayError as error:
        log.warning("ledger catch-up: %s skipped (%s)", name, error)
        counts["skipped"] = counts.get("skipped", 0) + 1
        return
    if done:
        counts[name] = counts.get(name, 0) + 1


def unposted_charge_ids(session: Session, *, limit: int = BATCH) -> list[int]:
    """Our charges with more captured attempts than ``charge:`` postings (a payment plan's instalments are
    several captured Stripe charges of one of ours)."""
    posted = (select(func.count()).select_from(LedgerTransaction)
              .where(LedgerTransaction.kind == "charge", LedgerTransaction.charge_id == PaymentAttempt.charge_id)
              .correlate(PaymentAttempt).scalar_subquery())
    return list(session.scalars(
        select(PaymentAttempt.charge_id)
        .where(PaymentAttempt.status == "succeeded", PaymentAttempt.amount_captured_cents > 0,
               PaymentAttempt.stripe_payment_intent_id.is_not(None))
        .group_by(PaymentAttempt.charge_id).having(func.count() > posted)
        .order_by(PaymentAttempt.charge_id).limit(limit)))


def captured_attempts(session: Session, charge_id: int) -> list[PaymentAttempt]:
    return list(session.scalars(select(PaymentAttempt).where(
        PaymentAttempt.charge_id == charge_id, PaymentAttempt.status == "succeeded",
        PaymentAttempt.amount_captured_cents > 0, PaymentAttempt.stripe_payment_intent_id.is_not(None))
        .order_by(PaymentAttempt.number)))


def post_charges_of(session: Session, gw, charge: Charge, *, now: datetime) -> int:
    """Post every captured Stripe charge of our charge (once each); returns how many were new."""
    new = 0
    for attempt in captured_attempts(session, charge.id):
        money = gw.charge_of_intent(attempt.stripe_payment_intent_id)
        if money is not None and money.captured:
            _, posted = post_charge(session, charge, money, now=now)
            new += posted
    return new


def post_refund_of(session: Session, gw, refund: Refund, *, now: datetime, money: RefundMoney | None = None) -> bool:
    """The refund's posting (and its failure's, if it failed at Stripe)."""
    money = money or gw.retrieve_refund_money(refund.stripe_refund_id)
    _, posted = post_refund(session, refund, money, now=now)
    if money.status == "failed":
        _, failed = post_refund_failed(session, refund, money, now=now)
        posted = posted or failed
    return posted


def write_off_amount(session: Session, case: CollectionCase) -> int:
    """The balance written off, as the write-off's audit row recorded it (else what is still owed)."""
    details = session.scalar(select(AuditEvent.details).where(AuditEvent.appointment_id == case.appointment_id,
                                                              AuditEvent.action == "collections.written_off")
                             .order_by(AuditEvent.seq.desc()).limit(1))
    if details and isinstance(details.get("balance_cents"), int):
        return details["balance_cents"]
    charge = session.get(Charge, case.charge_id)
    return max(0, charge.amount_cents - charge.amount_captured_cents)


def catch_up(session: Session, gw, *, now: datetime) -> dict:
    """Post what is missing (see the module's docstring); returns counts per kind. Reads Stripe, never commits."""
    from app.services import payouts     # the fee rule (payouts imports this module)

    counts: dict[str, int] = {}
    for charge_id in unposted_charge_ids(session):
        charge = session.get(Charge, charge_id)
        _guarded(counts, "charge", session, lambda: post_charges_of(session, gw, charge, now=now))

    refunds = session.scalars(select(Refund).where(
        Refund.stripe_refund_id.is_not(None), _not_posted("refund:", Refund.stripe_refund_id))
        .order_by(Refund.id).limit(BATCH)).all()
    for refund in refunds:
        _guarded(counts, "refund", session, lambda: post_refund_of(session, gw, refund, now=now))

    failed = session.scalars(select(Refund).where(
        Refund.status == "failed", Refund.stripe_refund_id.is_not(None), _posted("refund:", Refund.stripe_refund_id),
        _not_posted("refund_failed:", Refund.stripe_refund_id)).order_by(Refund.id).limit(BATCH)).all()
    for refund in failed:
        _guarded(counts, "refund_failed", session, lambda: post_refund_failed(
            session, refund, gw.retrieve_refund_money(refund.stripe_refund_id), now=now)[1])

    transfers = session.scalars(select(ProviderTransfer).where(
        ProviderTransfer.status == "created", _not_posted("transfer:", ProviderTransfer.stripe_transfer_id))
        .order_by(ProviderTransfer.id).limit(BATCH)).all()
    for transfer in transfers:
        _guarded(counts, "transfer", session, lambda: record_transfer_posting(
            session, gw, transfer, gw.retrieve_transfer(transfer.stripe_transfer_id), now=now)[1])

    reversals = session.execute(select(TransferReversal, ProviderTransfer.stripe_transfer_id)
                                .join(ProviderTransfer, ProviderTransfer.id == TransferReversal.transfer_id)
                                .where(TransferReversal.status == "created",
                                       _not_posted("reversal:", TransferReversal.stripe_reversal_id))
                                .order_by(TransferReversal.id).limit(BATCH)).all()
    for reversal, stripe_transfer_id in reversals:
        _guarded(counts, "reversal", session, lambda: record_reversal_posting(
            session, gw, reversal, gw.retrieve_transfer_reversal(stripe_transfer_id, reversal.stripe_reversal_id),
            now=now)[1])

    payouts_rows = session.execute(select(ProviderPayout, ProviderAccount.stripe_account_id)
                                   .join(ProviderAccount, ProviderAccount.id == ProviderPayout.provider_account_id)
                                   .where(ProviderPayout.stripe_payout_id.is_not(None),
                                          _not_posted("payout:", ProviderPayout.stripe_payout_id)
                                          | and_(ProviderPayout.status == "failed",
                                                 _not_posted("payout_failed:", ProviderPayout.stripe_payout_id)))
                                   .order_by(ProviderPayout.id).limit(BATCH)).all()
    for payout, stripe_account_id in payouts_rows:
        def post_payout_rows(payout=payout, stripe_account_id=stripe_account_id):
            result = gw.retrieve_payout(stripe_account_id, payout.stripe_payout_id)
            posted = post_payout(session, payout, result, now=now)[1]
            if result.status == "failed" and result.failure_balance_transaction:
                back = gw.retrieve_balance_transaction(result.failure_balance_transaction, account=stripe_account_id)
                posted = post_payout_failed(session, payout, result, now=now, failed_at=back.created)[1] or posted
            return posted
        _guarded(counts, "payout", session, post_payout_rows)

    remittances = session.execute(select(Remittance, Claim.appointment_id)
                                  .join(Claim, Claim.id == Remittance.claim_id)
                                  .where(Remittance.paid_cents > 0,
                                         _not_posted("insurer_payment:", Remittance.id))
                                  .order_by(Remittance.id).limit(BATCH)).all()
    for remittance, appointment_id in remittances:
        appointment = session.get(Appointment, appointment_id)
        rule = payouts.fee_rule_for(session, appointment)
        _guarded(counts, "insurer_payment", session, lambda: post_insurer_payment(
            session, remittance, appointment=appointment,
            platform_fee_cents=payouts.platform_fee(remittance.paid_cents, rule))[1])

    cases = session.scalars(select(CollectionCase).where(
        CollectionCase.status == "written_off",
        _not_posted("write_off:", CollectionCase.id))
        .order_by(CollectionCase.id).limit(BATCH)).all()
    for case in cases:
        _guarded(counts, "write_off", session, lambda: post_write_off(
            session, case, write_off_amount(session, case), now=now)[1])
    return counts
