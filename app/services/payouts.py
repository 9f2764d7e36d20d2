"""Provider payouts, the money side (issue 16): splits, the payout hold, transfers, reversals, accrual and the
weekly payouts of the providers' Stripe Connect accounts (separate charges and transfers).

The split. When one of our charges' money is final (``money_final_at``) it is divided once
(``make_splits``): G = what the patient paid net of refunds by then, F = Stripe's fees (the charge's
balance transactions), P = the platform's fee on G (the type's rule, else the clinic's: percent rounded
half up, plus a fixed amount), S = G - F - P (when G < F + P: P = G - F, at least 0, and S = 0). Final:

    deposit of a deposit_to_book visit   captured, and the visit completed (or no_show, or canceled once
                                         the cancellation policy decided what is kept)
    hybrid deposit                       captured, and the visit reconciled (its claim answered)
    visit / balance / no_show_fee        captured, and its collections case (if any) paid or written off

The hold. ``hold_until`` = final + PAYOUT_HOLD (the refund window): nothing moves before it. After it, the
provider's share is transferred once per Stripe charge (``source_transaction`` = the charge,
``transfer_group`` = ``appointment_<id>``, metadata: opaque ids) to their connected account, never more
than what is left of the charge at Stripe. A provider without an enabled account accrues: the split stays
held and moves on the first tick after the account is enabled.

What the provider should hold at Stripe for a split (``target_cents``) is S minus the pro-rata shares of
refunds after the split and of open or lost disputes; what they hold (``held_cents``) is what was
transferred minus what was reversed (rows being sent included). The tick converges the two (``plan``):
more held than owed is reversed (a refund's share, reason ``refund``; a dispute's, reason ``dispute``),
less is transferred (once the hold is over, no dispute holds it and the account is enabled; after a
reversal, as kind ``reinstated``). Every transfer and reversal is a row stored (``creating``, its UUID the
idempotency key's root) and committed before Stripe hears of it, then sent (``send_transfer`` /
``send_reversal``: created with that key, recorded with its ledger posting in one transaction). A crash
after Stripe made it is finished by the next tick, once: the same key answers the same object, and after a
500 the gateway finds it by its UUID in its metadata.

Weekly, ``weekly_payouts`` pays out each enabled account's available balance (one ProviderPayout per
account and ISO week); ``apply_payout_event`` mirrors a connected account's ``payout.*`` (re-read from
Stripe, in order, once).

Entry points that call Stripe and commit between "stored" and "sent" (like settlement.py): ``tick``,
``send_transfer``, ``send_reversal``, ``send_pending``, ``weekly_payouts``. Everything else leaves the
commit to its caller.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.integrations.stripe_common import GatewayError, GatewayUnavailable, _code
from app.integrations.stripe_money import ChargeMoney, PayoutResult, ReversalResult, TransferResult
from app.models import (Appointment, AuditEvent, Charge, CollectionCase, PaymentAttempt, Provider, Reconciliation,
                        Refund)
from app.models.disputes import OPEN as DISPUTE_OPEN
from app.models.disputes import Dispute
from app.models.ledger import LedgerEntry, LedgerTransaction
from app.models.payouts import PayoutSplit, ProviderAccount, ProviderPayout, ProviderTransfer, TransferReversal
from app.services import audit, insert_or_existing, ledger, ledger_posting
from app.services.audit import Actor
from app.services.clinic import current_clinic
from app.services.gateway import gateway, settings
from app.services.ledger_posting import pro_rata, round_half_up

log = logging.getLogger(__name__)
JOB = Actor.system("job")
BATCH = 100
# Refunds re-read from Stripe while young (a succeeded refund can still fail: the sandbox's 5126; a real
# card's within days): their failure is mirrored and posted (``refund_failed``).
REFUND_WATCH = timedelta(days=3)
LIVE = ("creating", "created")          # transfers / reversals that count (being sent, or made)


def _now() -> datetime:
    """The app's clock (a FrozenClock in tests)."""
    return current_app.extensions["clock"].now()


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}${cents // 100:,}.{cents % 100:02d}"


def transfer_group(appointment_id: int) -> str:
    return f"appointment_{appointment_id}"


# -- the fee rule and the split (pure) -------------------------------------------------------------------

@dataclass(frozen=True)
class FeeRule:
    percent_bp: int        # basis points: 1000 = 10%
    fixed_cents: int
    source: str            # type | clinic

    def as_dict(self) -> dict:
        return {"percent_bp": self.percent_bp, "fixed_cents": self.fixed_cents, "source": self.source}


def rule_of(appointment_type, clinic) -> FeeRule:
    """The type's rule when it has one (either field set), else the clinic's default."""
    if appointment_type is not None and (appointment_type.platform_fee_percent_bp is not None
                                         or appointment_type.platform_fee_fixed_cents is not None):
        return FeeRule(appointment_type.platform_fee_percent_bp or 0, appointment_type.platform_fee_fixed_cents or 0,
                       "type")
    return FeeRule(clinic.platform_fee_percent_bp or 0, clinic.platform_fee_fixed_cents or 0, "clinic")


def fee_rule_for(session: Session, appointment: Appointment) -> FeeRule:
    return rule_of(appointment.type, current_clinic(session))


def platform_fee(gross_cents: int, rule: FeeRule) -> int:
    """The platform's fee on ``gross_cents``: its percent (rounded half up) plus its fixed amount; 0 on nothing."""
    if gross_cents <= 0:
        return 0
    return round_half_up(gross_cents * rule.percent_bp, 10000) + rule.fixed_cents


@dataclass(frozen=True)
class SplitFigures:
    gross: int
    stripe_fee: int
    platform_fee: int
    provider_share: int


def split_for(gross_cents: int, stripe_fee_cents: int, rule: FeeRule) -> SplitFigures:
    """G, F, P, S: S = G - F - P; when G < F + P the platform's fee is cut to G - F (at least 0) and S = 0."""
    gross, fee = max(0, gross_cents), max(0, stripe_fee_cents)
    platform = platform_fee(gross, rule)
    if gross < fee + platform:
        return SplitFigures(gross, fee, max(0, gross - fee), 0)
    return SplitFigures(gross, fee, platform, gross - fee - platform)


# -- when the money is final --------------------------------------------------------------------------------

def _audit_time(session: Session, appointment_id: int, action: str) -> datetime | None:
    """When the domain says it happened (``details.at``, the app's clock), else when it was recorded."""
    row = session.scalars(select(AuditEvent).where(AuditEvent.appointment_id == appointment_id,
                                                   AuditEvent.action == action)
                          .order_by(AuditEvent.seq.desc()).limit(1)).first()
    if row is None:
        return None
    at = (row.details or {}).get("at")
    try:
        return datetime.fromisoformat(at) if at else row.occurred_at
    except (TypeError, ValueError):
        return row.occurred_at


def _policy_decided(session: Session, appointment_id: int, charge_id: int) -> datetime | None:
    rows = session.scalars(select(AuditEvent).where(AuditEvent.appointment_id == appointment_id,
                                                    AuditEvent.action == "refund.policy_applied")).all()
    return next((r.occurred_at for r in rows if (r.details or {}).get("charge_id") == charge_id), None)


def money_final_at(session: Session, charge: Charge) -> datetime | None:
    """When this charge's money became final (module docstring), or None while it is not: nothing
    captured, a refund still being made, a payment attempt still open, or the visit not yet settled."""
    if charge.amount_captured_cents <= 0:
        return None
    if session.scalar(select(Refund.id).where(Refund.charge_id == charge.id, Refund.status == "creating").limit(1)):
        return None
    attempts = session.scalars(select(PaymentAttempt).where(PaymentAttempt.charge_id == charge.id)).all()
    if any(a.status not in ("succeeded", "canceled") for a in attempts):
        return None
    captured = [a.captured_at for a in attempts if a.status == "succeeded" and a.captured_at]
    if not captured:
        return None
    captured_at = max(captured)
    appointment = session.get(Appointment, charge.appointment_id)
    if charge.purpose == "deposit":
        if appointment.payment_timing == "hybrid":
            row = session.scalar(select(Reconciliation).where(Reconciliation.appointment_id == appointment.id))
            return max(captured_at, row.created_at) if row is not None else None
        if appointment.status == "completed":
            at = _audit_time(session, appointment.id, "visit.completed")
        elif appointment.status == "no_show":
            at = _audit_time(session, appointment.id, "visit.no_show")
        elif appointment.status == "canceled":
            decided = _policy_decided(session, appointment.id, charge.id)
            at = (appointment.canceled_at or decided) if decided is not None else None
            if at is None:
                return None
        else:
            return None
        return max(captured_at, at or captured_at)
    case = session.scalar(select(CollectionCase).where(CollectionCase.charge_id == charge.id))
    if case is not None:
        if case.status not in ("paid", "written_off"):
            return None
        return max(captured_at, case.resolved_at or captured_at)
    return captured_at if charge.status == "captured" else None


def final_candidates(session: Session, *, limit: int = 1000) -> list[int]:
    """Captured charges with no split whose visit may have settled (``money_final_at`` decides)."""
    has_split = select(PayoutSplit.id).where(PayoutSplit.charge_id == Charge.id).exists()
    reconciled = select(Reconciliation.id).where(Reconciliation.appointment_id == Charge.appointment_id).exists()
    case_open = select(CollectionCase.id).where(CollectionCase.charge_id == Charge.id,
                                                CollectionCase.status.not_in(("paid", "written_off"))).exists()
    return list(session.scalars(
        select(Charge.id).join(Appointment, Appointment.id == Charge.appointment_id)
        .where(Charge.amount_captured_cents > 0, ~has_split,
               or_((Charge.purpose == "deposit") & (Appointment.payment_timing == "hybrid") & reconciled,
                   (Charge.purpose == "deposit") & (Appointment.payment_timing != "hybrid")
                   & Appointment.status.in_(("completed", "no_show", "canceled")),
                   (Charge.purpose != "deposit") & ~case_open))
        .order_by(Charge.id).limit(limit)))


# -- the split ---------------------------------------------------------------------------------------------

def split_for_charge(session: Session, charge_id: int) -> PayoutSplit | None:
    return ledger_posting.split_of_charge(session, charge_id)


def _charge_sums(session: Session, charge_id: int) -> tuple[int, int, str | None]:
    """(G, F, the first Stripe charge id) from the ledger: G is what patient_payments holds of this charge
    (captured minus refunded, net of failed refunds), F the fees of its captured Stripe charges."""
    rows = session.execute(
        select(LedgerTransaction.kind, LedgerTransaction.stripe_object_id, LedgerEntry.account,
               LedgerEntry.amount_cents)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.charge_id == charge_id,
               LedgerTransaction.kind.in_(("charge", "refund", "refund_failed")))
        .order_by(LedgerTransaction.id, LedgerEntry.id)).all()
    gross = -sum(amount for _, _, account, amount in rows if account == ledger.PATIENT_PAYMENTS)
    fee = sum(amount for kind, _, account, amount in rows if kind == "charge" and account == ledger.STRIPE_FEES)
    first = next((obj for kind, obj, _, _ in rows if kind == "charge"), None)
    return gross, fee, first


def _open_dispute(session: Session, charge_id: int, *, other_than: int | None = None) -> bool:
    query = select(Dispute.id).where(Dispute.charge_id == charge_id, Dispute.status.in_(DISPUTE_OPEN))
    if other_than is not None:
        query = query.where(Dispute.id != other_than)
    return session.scalar(query.limit(1)) is not None


def _audit(session: Session, split: PayoutSplit, action: str, *, actor: Actor, reason: str,
           stripe_object_id: str | None = None, outcome: str = "success", details: dict | None = None) -> None:
    appointment = split.appointment or session.get(Appointment, split.appointment_id)
    audit.record(session, actor=actor, action=action, outcome=outcome, reason=reason,
                 appointment_id=split.appointment_id, patient_id=appointment.patient_id if appointment else None,
                 stripe_object_id=stripe_object_id,
                 details={"split_id": split.id, "charge_id": split.charge_id, "provider_id": split.provider_id,
                          **(details or {})})


def make_split(session: Session, gw, charge: Charge, *, now: datetime, actor: Actor = JOB) -> PayoutSplit | None:
    """Divide one charge whose money is final, once: its Stripe charges and refunds are posted first (so G
    is what the ledger says the patient paid), then the split is stored and posted (``split:<charge id>``)
    and audited (``payout.split_made``). None while the money is not final."""
    existing = split_for_charge(session, charge.id)
    if existing is not None:
        return existing
    final_at = money_final_at(session, charge)
    if final_at is None:
        return None
    ledger_posting.post_charges_of(session, gw, charge, now=now)
    refunds = session.scalars(select(Refund).where(Refund.charge_id == charge.id,
                                                   Refund.stripe_refund_id.is_not(None)).order_by(Refund.id)).all()
    for refund in refunds:
        if not ledger.posted(session, f"refund:{refund.stripe_refund_id}"):
            ledger_posting.post_refund_of(session, gw, refund, now=now)
    gross, fee, stripe_charge_id = _charge_sums(session, charge.id)
    if stripe_charge_id is None:
        return None                            # Stripe's charge not readable yet: the next tick
    appointment = session.get(Appointment, charge.appointment_id)
    rule = fee_rule_for(session, appointment)
    figures = split_for(gross, fee, rule)
    split = PayoutSplit(charge_id=charge.id, appointment_id=appointment.id, provider_id=appointment.provider_id,
                        stripe_charge_id=stripe_charge_id, gross_cents=figures.gross,
                        stripe_fee_cents=figures.stripe_fee, platform_fee_cents=figures.platform_fee,
                        provider_share_cents=figures.provider_share,
                        fee_rule={**rule.as_dict(), "purpose": charge.purpose}, final_at=final_at,
                        hold_until=final_at + settings().PAYOUT_HOLD, status="held",
                        dispute_hold=_open_dispute(session, charge.id))
    split, inserted = insert_or_existing(session, split, lambda: split_for_charge(session, charge.id))
    if not inserted:
        return split
    ledger_posting.post_split(session, split)
    _audit(session, split, "payout.split_made", actor=actor, stripe_object_id=stripe_charge_id,
           reason=(f"visit payment final: {money(figures.gross)} paid, Stripe fee {money(figures.stripe_fee)}, "
                   f"platform fee {money(figures.platform_fee)}, provider's share {money(figures.provider_share)}; "
                   f"held until {split.hold_until.date().isoformat()}"),
           details={"amount_cents": figures.provider_share, "gross_cents": figures.gross,
                    "stripe_fee_cents": figures.stripe_fee, "platform_fee_cents": figures.platform_fee,
                    "fee_rule": rule.as_dict(), "final_at": final_at.isoformat(),
                    "hold_until": split.hold_until.isoformat(), "dispute_hold": split.dispute_hold})
    for dispute in session.scalars(select(Dispute).where(Dispute.charge_id == charge.id, Dispute.status == "lost")):
        _post_lost(session, dispute, split, now=now)
    if target_cents(session, split) == 0:
        _forfeit_if_nothing_left(session, split, actor=actor)
    return split


def make_splits(session: Session, *, now: datetime, actor: Actor = JOB) -> int:
    """Split every charge whose money became final (a batch); returns how many were made. Reads Stripe for
    charges and refunds not yet posted; does not commit."""
    gw, made = gateway(), 0
    for charge_id in final_candidates(session):
        charge = session.get(Charge, charge_id)
        try:
            with session.begin_nested():
                split = make_split(session, gw, charge, now=now, actor=actor)
        except GatewayError as error:
            log.warning("split of charge %s waits: Stripe (%s)", charge_id, error)
            continue
        except Exception:                    # one charge's bug never stops the others' money
            log.exception("split of charge %s failed", charge_id)
            continue
        made += split is not None
    return made


# -- what the provider should hold at Stripe, and what they hold ------------------------------------------

def dispute_share(session: Session, split: PayoutSplit, dispute: Dispute) -> int:
    """The provider's pro-rata share of a disputed amount: S x D / G, half up, within what refunds left of S
    (a lost dispute: as its ``dispute_lost`` posting said)."""
    posted = ledger.find(session, f"dispute_lost:{dispute.stripe_dispute_id}")
    if posted is not None:
        return sum(e.amount_cents for e in posted.entries if e.account == ledger.PROVIDER_PAYABLE)
    refunded = ledger_posting.taken_back(session, split.charge_id, ledger.PROVIDER_PAYABLE)
    return pro_rata(split.provider_share_cents, dispute.amount_cents, split.gross_cents,
                    left=split.provider_share_cents - refunded)


def _disputes(session: Session, split: PayoutSplit, statuses) -> list[Dispute]:
    return list(session.scalars(select(Dispute).where(Dispute.charge_id == split.charge_id,
                                                      Dispute.status.in_(tuple(statuses))).order_by(Dispute.id)))


def target_cents(session: Session, split: PayoutSplit) -> int:
    """What the provider should hold at Stripe for this split: S less refunds' shares after the split and
    the shares of open or lost disputes."""
    refunded = ledger_posting.taken_back(session, split.charge_id, ledger.PROVIDER_PAYABLE)
    disputed = sum(dispute_share(session, split, d) for d in _disputes(session, split, DISPUTE_OPEN + ("lost",)))
    return max(0, split.provider_share_cents - refunded - disputed)


def _transfers(session: Session, split: PayoutSplit) -> list[ProviderTransfer]:
    return list(session.scalars(select(ProviderTransfer).where(ProviderTransfer.split_id == split.id)
                                .order_by(ProviderTransfer.number)))


def _reversals(session: Session, transfer_ids: list[int]) -> list[TransferReversal]:
    if not transfer_ids:
        return []
    return list(session.scalars(select(TransferReversal).where(TransferReversal.transfer_id.in_(transfer_ids))
                                .order_by(TransferReversal.id)))


def held_cents(session: Session, split: PayoutSplit) -> int:
    """What the provider holds (or is being sent) for this split: live transfers less live reversals."""
    transfers = [t for t in _transfers(session, split) if t.status in LIVE]
    reversals = [r for r in _reversals(session, [t.id for t in transfers]) if r.status in LIVE]
    return sum(t.amount_cents for t in transfers) - sum(r.amount_cents for r in reversals)


def _account_of(session: Session, provider_id: int) -> ProviderAccount | None:
    return session.scalar(select(ProviderAccount).where(ProviderAccount.provider_id == provider_id))


def _blocked(session: Session, split: PayoutSplit) -> bool:
    """A transfer Stripe refused stops new ones for the split (a person looks at why first)."""
    return session.scalar(select(ProviderTransfer.id).where(ProviderTransfer.split_id == split.id,
                                                            ProviderTransfer.status == "failed").limit(1)) is not None


def may_transfer(session: Session, split: PayoutSplit, *, now: datetime) -> bool:
    """The hold is over, no dispute holds it, and the provider's account is enabled (else: accrual)."""
    if split.status == "forfeited" or split.dispute_hold or now < split.hold_until:
        return False
    account = _account_of(session, split.provider_id)
    return account is not None and account.ready and not _blocked(session, split)


def _refund_causes(session: Session, split: PayoutSplit) -> list[tuple[int, int]]:
    """(refund id, the provider's share it took back) of refunds after the split still counted (not failed)."""
    rows = session.execute(
        select(LedgerTransaction.refund_id, LedgerTransaction.kind, LedgerEntry.amount_cents)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.charge_id == split.charge_id,
               LedgerTransaction.kind.in_(("refund", "refund_failed")),
               LedgerEntry.account == ledger.PROVIDER_PAYABLE)
        .order_by(LedgerTransaction.id)).all()
    shares: dict[int, int] = {}
    for refund_id, _, amount in rows:
        shares[refund_id] = shares.get(refund_id, 0) + amount
    return [(refund_id, amount) for refund_id, amount in shares.items() if amount > 0]


def _next_number(transfers: list[ProviderTransfer]) -> int:
    return max((t.number for t in transfers), default=0) + 1


def plan(session: Session, split: PayoutSplit, *, now: datetime, actor: Actor = JOB, gw=None) -> dict:
    """Store the moves that bring what the provider holds for this split to what they should hold (see the
    module's docstring): reversals (causes: refunds after the split, then disputes) or a transfer. With a
    gateway, a payment plan's transfer is split between its Stripe charges (one charge: capped by what the
    ledger says is left of it). The split's row is locked.
    Returns what was stored; does not commit."""
    _lock(session, split)
    stored = {"transfers": 0, "reversals": 0}
    target, held = target_cents(session, split), held_cents(session, split)
    transfers = _transfers(session, split)
    if held > target:
        stored["reversals"] = _store_reversals(session, split, transfers, held - target, now=now)
    elif held < target and may_transfer(session, split, now=now):
        stored["transfers"] = _store_transfers(session, split, transfers, target - held, gw=gw)
    elif held == 0 and target == 0:
        _forfeit_if_nothing_left(session, split, actor=actor)
    return stored


def _lock(session: Session, split: PayoutSplit) -> None:
    """The split's row lock, its pending changes kept (flushed first) and its columns read again."""
    session.flush()
    session.refresh(split, with_for_update=True)


def _forfeit_if_nothing_left(session: Session, split: PayoutSplit, *, actor: Actor) -> None:
    """Nothing is left for the provider and nothing is at Stripe: a held split (refunded before it moved, or
    a share of 0) or one wholly reversed for a lost dispute is forfeited."""
    if split.dispute_hold or _open_dispute(session, split.charge_id):
        return
    lost = _disputes(session, split, ("lost",))
    if split.status == "held" or (split.status == "reversed" and lost):
        split.transition("forfeit")
        why = ("the disputed payment was lost" if lost else
               "the payment was refunded before it moved" if split.gross_cents <= split.stripe_fee_cents
               else "the fees took all of it")
        _audit(session, split, "payout.forfeited", actor=actor, reason=f"nothing is left for the provider: {why}",
               details={"amount_cents": 0})


def _store_reversals(session: Session, split: PayoutSplit, transfers: list[ProviderTransfer], excess: int, *,
                     now: datetime) -> int:
    created = [t for t in transfers if t.status == "created"]
    reversals = _reversals(session, [t.id for t in transfers])
    pending = {t.id: sum(r.amount_cents for r in reversals if r.transfer_id == t.id and r.status == "creating")
               for t in created}
    # A cause is reversed once per transfer (unique at the database); one Stripe refused stays failed (a person
    # looks at why): never stored again.
    tried = {(r.transfer_id, r.reason, r.refund_id or r.dispute_id) for r in reversals}
    refunds_done = {r.refund_id for r in reversals if r.refund_id and r.status in LIVE}
    disputes_done = {r.dispute_id for r in reversals if r.dispute_id and r.status in LIVE}
    causes = [("refund", refund_id, share) for refund_id, share in _refund_causes(session, split)
              if refund_id not in refunds_done]
    causes += [("dispute", d.id, dispute_share(session, split, d))
               for d in _disputes(session, split, DISPUTE_OPEN + ("lost",)) if d.id not in disputes_done]
    stored = 0
    for reason, cause_id, share in causes:
        want = min(share, excess)
        for transfer in sorted(created, key=lambda t: t.id, reverse=True):
            left = transfer.amount_cents - transfer.amount_reversed_cents - pending[transfer.id]
            take = min(want, left)
            if take <= 0 or (transfer.id, reason, cause_id) in tried:
                continue
            session.add(TransferReversal(transfer_id=transfer.id, amount_cents=take, reason=reason,
                                         refund_id=cause_id if reason == "refund" else None,
                                         dispute_id=cause_id if reason == "dispute" else None, status="creating"))
            pending[transfer.id] += take
            want -= take
            excess -= take
            stored += 1
        if excess <= 0:
            break
    session.flush()
    return stored


def _store_transfers(session: Session, split: PayoutSplit, transfers: list[ProviderTransfer], need: int, *,
                     gw=None) -> int:
    account = _account_of(session, split.provider_id)
    kind = "reinstated" if any(t.status == "created" for t in transfers) else "share"
    if len(ledger_posting.captured_attempts(session, split.charge_id)) <= 1:
        amounts = [min(need, _room(session, split))]
    elif gw is not None:
        amounts = _allocate(session, gw, split, need)
    else:
        amounts = []                        # several Stripe charges: the tick allocates them (it reads Stripe)
    number = _next_number(transfers)
    for amount in amounts:
        if amount <= 0:
            continue
        session.add(ProviderTransfer(split_id=split.id, provider_account_id=account.id, number=number, kind=kind,
                                     amount_cents=amount, status="creating"))
        number += 1
    session.flush()
    return len([a for a in amounts if a > 0])


# -- the Stripe charges behind a split (a payment plan has several) ----------------------------------------

def _room(session: Session, split: PayoutSplit) -> int:
    """What is left of the split's (one) Stripe charge for transfers, as the ledger knows it: the charge's net
    less its refunds (the stripe_balance entries of its postings), less what is transferred and not reversed.
    Stripe checks the same (``balance_insufficient``): never more than the charge's net."""
    net_left = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.charge_id == split.charge_id,
               LedgerTransaction.kind.in_(("charge", "refund", "refund_failed")),
               LedgerEntry.account == ledger.STRIPE_BALANCE))
    return max(0, int(net_left) - held_cents(session, split))


def _sources(session: Session, gw, split: PayoutSplit) -> list[ChargeMoney]:
    found = []
    for attempt in ledger_posting.captured_attempts(session, split.charge_id):
        charge = gw.charge_of_intent(attempt.stripe_payment_intent_id)
        if charge is not None and charge.captured:
            found.append(charge)
    return found


def _remaining(gw, split: PayoutSplit, sources: list[ChargeMoney]) -> dict[str, int]:
    """What is left of each Stripe charge for transfers: its net, less refunds and transfers not reversed."""
    used: dict[str, int] = {}
    for transfer in gw.transfers_in_group(transfer_group(split.appointment_id)):
        if transfer.source_transaction:
            used[transfer.source_transaction] = (used.get(transfer.source_transaction, 0)
                                                 + transfer.amount - transfer.amount_reversed)
    return {s.id: s.net - s.amount_refunded - used.get(s.id, 0) for s in sources}


def _allocate(session: Session, gw, split: PayoutSplit, need: int) -> list[int]:
    """One amount per Stripe charge (most room first), each within what is left of that charge."""
    sources = _sources(session, gw, split)
    if not sources:
        return []
    room = _remaining(gw, split, sources)
    amounts = []
    for source in sorted(sources, key=lambda s: -room[s.id]):
        take = min(need, room[source.id])
        if take > 0:
            amounts.append(take)
            need -= take
        if need <= 0:
            break
    return amounts


def _source_for(session: Session, gw, split: PayoutSplit, amount: int) -> str:
    """The Stripe charge a transfer draws on: the split's one, or (several) the one with the most room."""
    if len(ledger_posting.captured_attempts(session, split.charge_id)) <= 1:
        return split.stripe_charge_id
    sources = _sources(session, gw, split)
    room = _remaining(gw, split, sources)
    fitting = [s for s in sources if room[s.id] >= amount] or sources
    return max(fitting, key=lambda s: room[s.id]).id


# -- sending: stored first, then Stripe, then recorded (entry points: they commit) --------------------------

def _send(session: Session, model, row_id: int, what: str, *, now: datetime, actor: Actor, split_of, create,
          record, refused: str) -> str:
    """Send one stored row (a ProviderTransfer or a TransferReversal; ``what``: "transfer" or "reversal") to
    Stripe and record it (commits). The row is locked and must still be ``creating``; ``create(session, gw,
    row, split)`` makes it at Stripe with its key, ``record(session, gw, row, result, now=, actor=)`` records
    it with its ledger posting, in one transaction. Stripe did it but reading its side failed, or Stripe
    unreachable: the row stays ``creating`` (the next tick sends it again, same key). Stripe refused:
    ``failed`` with the reason, audited ``payout.<what>_failed`` (``refused``: its words, with ``{amount}``
    and ``{failure}``). Returns the row's status."""
    session.rollback()
    row = session.get(model, row_id, with_for_update=True, populate_existing=True)
    if row is None or row.status != "creating":
        session.rollback()
        return row.status if row is not None else "missing"
    split = split_of(session, row)
    split_id = split.id
    gw = gateway()
    try:
        result = create(session, gw, row, split)
        try:
            record(session, gw, row, result, now=now, actor=actor)
        except GatewayError as error:      # Stripe did it; reading its side failed: the next run records it
            raise GatewayUnavailable(str(error)) from error
    except GatewayUnavailable as error:
        session.rollback()
        log.warning("%s %s not sent yet: %s", what, row_id, error)
        return "creating"
    except GatewayError as error:
        session.rollback()
        row = session.get(model, row_id, with_for_update=True, populate_existing=True)
        if row.status != "creating":
            session.rollback()
            return row.status
        row.status, row.failure = "failed", str(error)[:255]
        _audit(session, session.get(PayoutSplit, split_id), f"payout.{what}_failed", actor=actor, outcome="failure",
               reason=refused.format(amount=money(row.amount_cents), failure=row.failure),
               details={"amount_cents": row.amount_cents, f"{what}_id": row.id, "error": row.failure})
    session.commit()
    return row.status


def send_transfer(session: Session, transfer_id: int, *, now: datetime, actor: Actor = JOB) -> str:
    """Send one stored transfer (commits): create it with its key (after a crash that followed Stripe's work,
    the same key answers the same transfer; after a 500 the gateway finds it by its UUID among the group's
    transfers: adopted, once) and record it with its ledger posting in one transaction. Stripe refused:
    ``failed`` with the reason, audited. Stripe unreachable: stays ``creating`` (the next tick sends it
    again, same key)."""
    return _send(session, ProviderTransfer, transfer_id, "transfer", now=now, actor=actor,
                 split_of=_split_of_transfer, create=_create_transfer, record=_record_transfer,
                 refused="Stripe refused the transfer of {amount} to the provider: {failure}")


def _split_of_transfer(session: Session, row: ProviderTransfer) -> PayoutSplit:
    return session.get(PayoutSplit, row.split_id)


def _create_transfer(session: Session, gw, row: ProviderTransfer, split: PayoutSplit) -> TransferResult:
    account = session.get(ProviderAccount, row.provider_account_id)
    group = transfer_group(split.appointment_id)
    try:
        source = _source_for(session, gw, split, row.amount_cents)
        return gw.create_transfer(
            key=row.key("transfer"), amount=row.amount_cents, currency="usd",
            destination=account.stripe_account_id, source_transaction=source, transfer_group=group,
            metadata={"transfer_uuid": str(row.uuid), "transfer_id": str(row.id), "split_id": str(split.id),
                      "appointment_id": str(split.appointment_id), "provider_account_id": str(account.id)})
    except GatewayError as error:
        # The same key with other parameters (a payment plan's source chosen again): ours, if Stripe has it.
        if _code(error.__cause__) != "idempotency_error":
            raise
        result = gw.find_transfer(transfer_group=group, metadata_key="transfer_uuid", metadata_value=str(row.uuid))
        if result is None:
            raise GatewayUnavailable(f"transfer {row.id}: its key was used with other parameters") from error
        return result


def _record_transfer(session: Session, gw, row: ProviderTransfer, result: TransferResult, *, now: datetime,
                     actor: Actor) -> None:
    split = session.get(PayoutSplit, row.split_id, with_for_update=True, populate_existing=True)
    row.stripe_transfer_id, row.status, row.failure = result.id, "created", None
    if result.amount != row.amount_cents:
        log.error("transfer %s: Stripe moved %s, we asked %s", row.id, result.amount, row.amount_cents)
        row.amount_cents = result.amount
    split.transferred_cents += row.amount_cents
    if split.status == "held":
        split.transition("transfer")
    elif split.status == "reversed":
        split.transition("retransfer")
    session.flush()
    ledger_posting.record_transfer_posting(session, gw, row, result, now=now)
    _audit(session, split, "payout.transfer_sent", actor=actor, stripe_object_id=result.id,
           reason=(f"{'reinstated: ' if row.kind == 'reinstated' else ''}the provider's share, "
                   f"{money(row.amount_cents)}, moved to their Stripe account "
                   f"(from charge {result.source_transaction or split.stripe_charge_id})"),
           details={"amount_cents": row.amount_cents, "transfer_id": row.id, "kind": row.kind,
                    "provider_account_id": row.provider_account_id, "source_transaction": result.source_transaction})


def send_reversal(session: Session, reversal_id: int, *, now: datetime, actor: Actor = JOB) -> str:
    """Send one stored reversal (commits), as ``send_transfer`` does a transfer."""
    return _send(session, TransferReversal, reversal_id, "reversal", now=now, actor=actor,
                 split_of=_split_of_reversal, create=_create_reversal, record=_record_reversal,
                 refused="Stripe refused to pull back {amount} from the provider: {failure}")


def _split_of_reversal(session: Session, row: TransferReversal) -> PayoutSplit:
    return session.get(PayoutSplit, session.get(ProviderTransfer, row.transfer_id).split_id)


def _create_reversal(session: Session, gw, row: TransferReversal, split: PayoutSplit) -> ReversalResult:
    transfer = session.get(ProviderTransfer, row.transfer_id)
    return gw.create_transfer_reversal(
        transfer.stripe_transfer_id, key=row.key("reversal"), amount=row.amount_cents,
        metadata={"reversal_uuid": str(row.uuid), "reversal_id": str(row.id), "split_id": str(split.id),
                  "appointment_id": str(split.appointment_id), "reason": row.reason})


def _record_reversal(session: Session, gw, row: TransferReversal, result: ReversalResult, *, now: datetime,
                     actor: Actor) -> None:
    transfer = session.get(ProviderTransfer, row.transfer_id, with_for_update=True, populate_existing=True)
    split = session.get(PayoutSplit, transfer.split_id, with_for_update=True, populate_existing=True)
    row.stripe_reversal_id, row.status, row.failure = result.id, "created", None
    if result.amount != row.amount_cents:
        log.error("reversal %s: Stripe reversed %s, we asked %s", row.id, result.amount, row.amount_cents)
        row.amount_cents = result.amount
    transfer.amount_reversed_cents += row.amount_cents
    split.reversed_cents += row.amount_cents
    if split.outstanding_cents <= 0 and split.can("reverse_all"):
        split.transition("reverse_all")
    session.flush()
    ledger_posting.record_reversal_posting(session, gw, row, result, now=now)
    why = "a refund of the visit's payment" if row.reason == "refund" else "a dispute of the visit's payment"
    _audit(session, split, "payout.reversed", actor=actor, stripe_object_id=result.id,
           reason=f"{money(row.amount_cents)} of the provider's share pulled back from their Stripe account: {why}",
           details={"amount_cents": row.amount_cents, "reversal_id": row.id, "transfer_id": transfer.id,
                    "reason": row.reason, "refund_id": row.refund_id, "dispute_id": row.dispute_id,
                    "stripe_transfer_id": transfer.stripe_transfer_id})


def due_transfers(session: Session, *, limit: int = BATCH) -> list[int]:
    """Transfers stored and not yet confirmed by Stripe (this tick's, or one a crash or an outage left)."""
    return list(session.scalars(select(ProviderTransfer.id).where(ProviderTransfer.status == "creating")
                                .order_by(ProviderTransfer.id).limit(limit)))


def due_reversals(session: Session, *, limit: int = BATCH) -> list[int]:
    return list(session.scalars(
        select(TransferReversal.id).join(ProviderTransfer, ProviderTransfer.id == TransferReversal.transfer_id)
        .where(TransferReversal.status == "creating", ProviderTransfer.status == "created")
        .order_by(TransferReversal.id).limit(limit)))


def send_pending(session: Session, *, now: datetime | None = None, actor: Actor = JOB) -> dict:
    """Send every stored transfer and reversal (reversals first; commits each). The disputes service may
    call it after committing ``dispute_opened``'s reversals; the tick always does."""
    now = now or _now()
    session.commit()
    sent = {"reversals": 0, "transfers": 0, "failed": 0, "waiting": 0}
    for reversal_id in due_reversals(session):
        state = send_reversal(session, reversal_id, now=now, actor=actor)
        sent["reversals" if state == "created" else "failed" if state == "failed" else "waiting"] += 1
    for transfer_id in due_transfers(session):
        state = send_transfer(session, transfer_id, now=now, actor=actor)
        sent["transfers" if state == "created" else "failed" if state == "failed" else "waiting"] += 1
    return sent


# -- which splits may need a move ----------------------------------------------------------------------------

def due_splits(session: Session, *, now: datetime, limit: int = 500) -> list[int]:
    """Held splits whose hold is over, and splits whose charge saw a refund, a failed refund or a dispute
    since their last transfer or reversal."""
    last_transfer = (select(func.max(ProviderTransfer.created_at)).where(ProviderTransfer.split_id == PayoutSplit.id)
                     .correlate(PayoutSplit).scalar_subquery())
    last_reversal = (select(func.max(TransferReversal.created_at))
                     .join(ProviderTransfer, ProviderTransfer.id == TransferReversal.transfer_id)
                     .where(ProviderTransfer.split_id == PayoutSplit.id).correlate(PayoutSplit).scalar_subquery())
    last_move = func.greatest(PayoutSplit.created_at, func.coalesce(last_transfer, PayoutSplit.created_at),
                              func.coalesce(last_reversal, PayoutSplit.created_at))
    news = (select(LedgerTransaction.id)
            .where(LedgerTransaction.charge_id == PayoutSplit.charge_id,
                   LedgerTransaction.kind.in_(("refund", "refund_failed", "dispute_withdrawal",
                                               "dispute_reinstatement", "dispute_lost")),
                   LedgerTransaction.created_at >= last_move)
            .correlate(PayoutSplit).exists())
    disputed = select(Dispute.id).where(Dispute.charge_id == PayoutSplit.charge_id,
                                        Dispute.status.in_(DISPUTE_OPEN + ("lost",))).exists()
    return list(session.scalars(
        select(PayoutSplit.id).where(
            PayoutSplit.status != "forfeited",
            or_((PayoutSplit.status == "held") & (PayoutSplit.hold_until <= now) & ~PayoutSplit.dispute_hold,
                news, (PayoutSplit.status.in_(("transferred", "paid_out"))) & disputed))
        .order_by(PayoutSplit.id).limit(limit)))


def plan_due(session: Session, *, now: datetime, actor: Actor = JOB) -> dict:
    """Plan every due split (stores transfers and reversals); does not commit."""
    gw, totals = gateway(), {"transfers": 0, "reversals": 0}
    for split_id in due_splits(session, now=now):
        split = session.get(PayoutSplit, split_id)
        try:
            with session.begin_nested():
                stored = plan(session, split, now=now, actor=actor, gw=gw)
        except GatewayError as error:
            log.warning("split %s waits: Stripe (%s)", split_id, error)
            continue
        except Exception:
            log.exception("planning split %s failed", split_id)
            continue
        for name in totals:
            totals[name] += stored[name]
    return totals


# -- refunds at Stripe after they were made ------------------------------------------------------------------

def watch_refunds(session: Session, gw, *, now: datetime, actor: Actor = JOB) -> int:
    """Re-read young refunds (pending or succeeded): a change Stripe reports is mirrored (a failed one gives
    its amount back to what may be refunded, audited ``refund.failed``) and posted (``refund_failed``).
    Returns how many changed; does not commit."""
    changed = 0
    rows = session.scalars(select(Refund).where(Refund.status.in_(("pending", "succeeded")),
                                                Refund.stripe_refund_id.is_not(None),
                                                Refund.created_at >= now - REFUND_WATCH)
                           .order_by(Refund.id).limit(BATCH)).all()
    for refund in rows:
        try:
            found = gw.retrieve_refund_money(refund.stripe_refund_id)
        except GatewayError as error:
            log.warning("refund %s not re-read: %s", refund.id, error)
            continue
        status = "pending" if found.status == "requires_action" else found.status
        if status == refund.status:
            continue
        with session.begin_nested():
            apply_refund(session, refund, found, now=now, actor=actor)
        changed += 1
    return changed


def apply_refund(session: Session, refund: Refund, found, *, now: datetime, actor: Actor) -> bool:
    """Mirror a refund's status as Stripe reports it (``found``: RefundMoney); a failure (or a cancel) gives
    the amount back to the charge and is posted. Does not commit."""
    refund = session.get(Refund, refund.id, with_for_update=True, populate_existing=True)
    before = refund.status
    if not refund.mirror(found.status if found.status != "requires_action" else "pending"):
        return False
    charge = session.get(Charge, refund.charge_id, with_for_update=True, populate_existing=True)
    appointment = session.get(Appointment, charge.appointment_id)
    if refund.is_final and before not in ("failed", "canceled"):
        charge.amount_refunded_cents = max(0, charge.amount_refunded_cents - refund.amount_cents)
    session.flush()
    audit.record(session, actor=actor, action="refund.failed" if refund.is_final else "refund.updated",
                 outcome="failure" if refund.is_final else "success", reason=refund.clinical_reason,
                 patient_id=appointment.patient_id, appointment_id=appointment.id,
                 payment_attempt_id=refund.attempt_id, stripe_object_id=refund.stripe_refund_id,
                 details={"refund_id": refund.id, "charge_id": charge.id, "amount_cents": refund.amount_cents,
                          "from": before, "to": refund.status, "failure_reason": found.failure_reason,
                          "at": now.isoformat()})
    if found.balance_transaction is not None:
        ledger_posting.post_refund_of(session, gateway(), refund, now=now, money=found)
    return True


def apply_refund_event(session: Session, *, event_id: str, event_type: str, object_id: str, created: int,
                       account: str | None, actor: Actor) -> str:
    """``refund.updated`` / ``refund.failed`` / ``charge.refund.updated`` (routed by settlement.process_event):
    re-read the refund and mirror it (``apply_refund``); a refund not ours is ignored. Does not commit."""
    refund = session.scalar(select(Refund).where(Refund.stripe_refund_id == object_id))
    if refund is None:
        return "ignored"
    found = gateway().retrieve_refund_money(object_id)
    return "applied" if apply_refund(session, refund, found, now=_now(), actor=actor) else "unchanged"


# -- disputes (called by app/services/disputes.py, in its transaction; none commits) --------------------------

def dispute_opened(session: Session, dispute: Dispute, *, now: datetime, actor: Actor) -> None:
    """The split of the disputed charge is held (``dispute_hold``); a share already transferred has the
    provider's pro-rata share of the disputed amount pulled back: a TransferReversal (reason dispute) is
    stored, sent by the tick (or ``send_pending`` after the caller's commit). No split yet: the split, when
    made, starts held."""
    split = split_for_charge(session, dispute.charge_id) if dispute.charge_id else None
    if split is None:
        return
    _lock(session, split)
    if not split.dispute_hold:
        split.dispute_hold = True
        _audit(session, split, "payout.dispute_hold", actor=actor, stripe_object_id=dispute.stripe_dispute_id,
               reason="a dispute of the visit's payment holds the provider's share",
               details={"dispute_id": dispute.id, "amount_cents": dispute_share(session, split, dispute),
                        "disputed_cents": dispute.amount_cents})
    plan(session, split, now=now, actor=actor)


def dispute_won(session: Session, dispute: Dispute, *, now: datetime, actor: Actor) -> None:
    """The hold ends; what was reversed for the dispute is transferred again (a ``reinstated`` transfer,
    stored, sent by the tick); a share not yet moved moves when its hold ends."""
    split = split_for_charge(session, dispute.charge_id) if dispute.charge_id else None
    if split is None:
        return
    _lock(session, split)
    held_before = split.dispute_hold
    split.dispute_hold = _open_dispute(session, split.charge_id, other_than=dispute.id)
    if held_before or dispute.status == "won":
        _audit(session, split, "payout.dispute_released", actor=actor, stripe_object_id=dispute.stripe_dispute_id,
               reason="the dispute was decided for the clinic: the provider's share is theirs again",
               details={"dispute_id": dispute.id, "amount_cents": dispute_share(session, split, dispute)})
    plan(session, split, now=now, actor=actor)


def _post_lost(session: Session, dispute: Dispute, split: PayoutSplit, *, now: datetime) -> int:
    """``dispute_lost`` with the provider's pro-rata share (once the withdrawal is posted)."""
    if not ledger.posted(session, f"dispute_withdrawal:{dispute.stripe_dispute_id}"):
        return 0
    share = dispute_share(session, split, dispute)
    ledger_posting.post_dispute_lost(session, dispute, split, share, now=now)
    return share


def dispute_lost(session: Session, dispute: Dispute, *, now: datetime, actor: Actor) -> None:
    """The hold ends and nothing more moves: the provider's share of the disputed amount is forfeited (a
    split wholly disputed: ``forfeit``); the ledger posts ``dispute_lost``. No split yet: posted when the
    split is made (its share is known then)."""
    split = split_for_charge(session, dispute.charge_id) if dispute.charge_id else None
    if split is None:
        return
    _lock(session, split)
    split.dispute_hold = _open_dispute(session, split.charge_id, other_than=dispute.id)
    share = _post_lost(session, dispute, split, now=now)
    _audit(session, split, "payout.dispute_lost", actor=actor, stripe_object_id=dispute.stripe_dispute_id,
           reason=f"the dispute was lost: the provider's share of it, {money(share)}, is forfeited",
           details={"dispute_id": dispute.id, "amount_cents": share, "disputed_cents": dispute.amount_cents})
    plan(session, split, now=now, actor=actor)


# -- the tick -------------------------------------------------------------------------------------------------

def tick(session: Session, *, now: datetime, actor: Actor = JOB) -> dict:
    """The payout tick (commits between steps): the ledger's catch-up, young refunds re-read, splits of
    money that became final, the moves due (stored), then everything stored is sent."""
    gw = gateway()
    session.rollback()
    result = {"posted": ledger_posting.catch_up(session, gw, now=now)}
    session.commit()
    result["refunds_changed"] = watch_refunds(session, gw, now=now, actor=actor)
    session.commit()
    result["splits"] = make_splits(session, now=now, actor=actor)
    session.commit()
    result["planned"] = plan_due(session, now=now, actor=actor)
    session.commit()
    result["sent"] = send_pending(session, now=now, actor=actor)
    return result


# -- weekly payouts ---------------------------------------------------------------------------------------------

def period_of(now: datetime) -> str:
    year, week, _ = now.isocalendar()
    return f"{year}-W{week:02d}"


STATUS_RANK = {"creating": 0, "nothing": 0, "pending": 1, "in_transit": 2, "paid": 3, "failed": 4, "canceled": 4}


def _payout_audit(session: Session, payout: ProviderPayout, action: str, *, actor: Actor, reason: str,
                  outcome: str = "success", details: dict | None = None) -> None:
    account = session.get(ProviderAccount, payout.provider_account_id)
    provider = session.get(Provider, account.provider_id)
    audit.record(session, actor=actor, action=action, outcome=outcome, reason=reason,
                 subject_user_id=provider.user_id if provider else None, stripe_object_id=payout.stripe_payout_id,
                 details={"payout_id": payout.id, "period": payout.period, "provider_id": account.provider_id,
                          "amount_cents": payout.amount_cents, "status": payout.status, **(details or {})})


def _mirror_payout(session: Session, payout: ProviderPayout, result: PayoutResult, *, now: datetime,
                   actor: Actor) -> bool:
    """Apply Stripe's status to our row when it moves forward (paid may still fail); audit and post once."""
    old, new = payout.status, result.status
    forward = STATUS_RANK.get(new, 0) > STATUS_RANK.get(old, 0) or (old == "paid" and new == "failed")
    if result.arrival_date:
        payout.arrival_date = ledger_posting._at(result.arrival_date, now)
    if not forward:
        return False
    payout.status = new
    payout.failure_code = result.failure_code
    session.flush()
    if new == "failed" and result.failure_balance_transaction:
        account = session.get(ProviderAccount, payout.provider_account_id)
        back = gateway().retrieve_balance_transaction(result.failure_balance_transaction,
                                                      account=account.stripe_account_id)
        ledger_posting.post_payout_failed(session, payout, result, now=now, failed_at=back.created)
    if new in ("paid", "failed", "canceled"):
        words = {"paid": f"the weekly payout of {money(payout.amount_cents)} reached the provider's bank",
                 "failed": f"the weekly payout of {money(payout.amount_cents)} failed "
                           f"({result.failure_code or 'no reason given'}): the money is back in their Stripe balance",
                 "canceled": f"the weekly payout of {money(payout.amount_cents)} was canceled"}[new]
        _payout_audit(session, payout, f"payout.payout_{new}", actor=actor, reason=words,
                      outcome="failure" if new != "paid" else "success", details={"from": old})
    return True


def _swept_transfers(session: Session, gw, payout: ProviderPayout, account: ProviderAccount,
                     result: PayoutResult) -> list[ProviderTransfer]:
    """The account's transfers this payout took: the connected ``payment`` balance transactions Stripe lists
    for the payout, matched to our transfers' ledger postings; when Stripe lists none (a manual payout at
    Stripe does not say), every transfer of the account not yet in a paid or pending payout."""
    bts = [bt.id for bt in gw.balance_transactions(account=account.stripe_account_id, payout=result.id)
           if bt.type == "payment"]
    if bts:
        ids = session.scalars(select(LedgerTransaction.transfer_id)
                              .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
                              .where(LedgerEntry.account == ledger.PROVIDER_STRIPE,
                                     LedgerEntry.balance_transaction_id.in_(bts),
                                     LedgerTransaction.transfer_id.is_not(None))).all()
        return list(session.scalars(select(ProviderTransfer).where(ProviderTransfer.id.in_(list(ids)))))
    failed = select(ProviderPayout.id).where(ProviderPayout.status.in_(("failed", "canceled")))
    return list(session.scalars(select(ProviderTransfer).where(
        ProviderTransfer.provider_account_id == account.id, ProviderTransfer.status == "created",
        or_(ProviderTransfer.payout_id.is_(None), ProviderTransfer.payout_id.in_(failed)))))


def _record_payout(session: Session, gw, payout: ProviderPayout, account: ProviderAccount, result: PayoutResult, *,
                   now: datetime, actor: Actor) -> None:
    payout.stripe_payout_id = result.id
    payout.amount_cents = result.amount
    old = payout.status
    payout.status = "pending"                  # Stripe's later statuses are mirrored below, audited once
    if result.arrival_date:
        payout.arrival_date = ledger_posting._at(result.arrival_date, now)
    session.flush()
    ledger_posting.post_payout(session, payout, result, now=now)
    _payout_audit(session, payout, "payout.payout_sent", actor=actor,
                  reason=f"weekly payout of the provider's available balance, {money(result.amount)}, to their bank",
                  details={"from": old})
    for transfer in _swept_transfers(session, gw, payout, account, result):
        transfer.payout_id = payout.id
        split = session.get(PayoutSplit, transfer.split_id, with_for_update=True, populate_existing=True)
        if split.status == "transferred":
            split.transition("pay_out")
            _audit(session, split, "payout.paid_out", actor=actor, stripe_object_id=result.id,
                   reason=(f"the provider's share is in their weekly payout {payout.period} "
                           f"({money(result.amount)} in all)"),
                   details={"amount_cents": split.outstanding_cents, "payout_id": payout.id,
                            "transfer_id": transfer.id})
    session.flush()
    if result.status != "pending":
        _mirror_payout(session, payout, result, now=now, actor=actor)


def _payout_row(session: Session, account: ProviderAccount, period: str) -> ProviderPayout:
    def find():
        return session.scalar(select(ProviderPayout).where(ProviderPayout.provider_account_id == account.id,
                                                           ProviderPayout.period == period))
    row = find()
    if row is None:
        row, _ = insert_or_existing(session, ProviderPayout(provider_account_id=account.id, period=period,
                                                            status="creating", amount_cents=0), find)
    return row


def pay_out_account(session: Session, account_id: int, *, now: datetime, actor: Actor = JOB) -> str:
    """This week's payout of one account (commits): the row stored first (one per account and ISO week), then
    its amount (the available balance), then the payout created with its key (a crash after Stripe made it:
    the same key answers the same payout; after a 500 the gateway finds it by its UUID), recorded and posted."""
    session.rollback()
    account = session.get(ProviderAccount, account_id)
    if account is None or not account.ready:
        session.rollback()
        return "not_ready"
    period = period_of(now)
    row = _payout_row(session, account, period)
    session.commit()
    row = session.get(ProviderPayout, row.id, with_for_update=True, populate_existing=True)
    if row.status != "creating":
        session.rollback()
        return row.status
    gw = gateway()
    try:
        if row.amount_cents <= 0:
            available = gw.connected_balance(account.stripe_account_id).available
            if available <= 0:
                row.status = "nothing"
                _payout_audit(session, row, "payout.payout_nothing", actor=actor,
                              reason="no available balance to pay out this week")
                session.commit()
                return "nothing"
            row.amount_cents = available
            session.commit()               # the amount is stored before Stripe hears of it: a resend is the same
            row = session.get(ProviderPayout, row.id, with_for_update=True, populate_existing=True)
        result = gw.create_payout(account.stripe_account_id, key=row.key("payout"), amount=row.amount_cents,
                                  currency=row.currency,
                                  metadata={"payout_uuid": str(row.uuid), "provider_payout_id": str(row.id),
                                            "provider_account_id": str(account.id), "period": row.period})
        try:
            _record_payout(session, gw, row, account, result, now=now, actor=actor)
        except GatewayError as error:      # Stripe did it; reading its side failed: the next run records it
            raise GatewayUnavailable(str(error)) from error
    except GatewayUnavailable as error:
        session.rollback()
        log.warning("payout of account %s not sent yet: %s", account_id, error)
        return "creating"
    except GatewayError as error:
        session.rollback()
        row = session.get(ProviderPayout, row.id, with_for_update=True, populate_existing=True)
        if row.status != "creating":
            session.rollback()
            return row.status
        row.status, row.failure_code = "failed", str(error)[:64]
        _payout_audit(session, row, "payout.payout_failed", actor=actor, outcome="failure",
                      reason=f"Stripe refused the weekly payout: {str(error)[:200]}")
    session.commit()
    return row.status


def weekly_payout_moment(now: datetime, *, weekday: int, hour: int) -> datetime:
    """When the ISO week of ``now`` pays out: its ``weekday`` (0 = Monday) at ``hour`` UTC."""
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return monday + timedelta(days=weekday, hours=hour)


def weekly_due(session: Session, *, now: datetime) -> bool:
    """The week's payout moment has passed and an enabled account has no payout row for this week yet."""
    conf = settings()
    if now < weekly_payout_moment(now, weekday=conf.PAYOUT_WEEKDAY, hour=conf.PAYOUT_HOUR):
        return False
    done = select(ProviderPayout.provider_account_id).where(ProviderPayout.period == period_of(now))
    return session.scalar(select(func.count()).select_from(ProviderAccount).where(
        ProviderAccount.status == "enabled", ProviderAccount.id.not_in(done))) > 0


def weekly_payouts(session: Session, *, now: datetime, actor: Actor = JOB) -> dict:
    """Pay out every enabled account's available balance for the ISO week of ``now`` (commits per account;
    safe to run again: one payout per account and week)."""
    session.rollback()
    ids = list(session.scalars(select(ProviderAccount.id).where(ProviderAccount.status == "enabled")
                               .order_by(ProviderAccount.id)))
    session.rollback()
    counts: dict[str, int] = {}
    for account_id in ids:
        state = pay_out_account(session, account_id, now=now, actor=actor)
        counts[state] = counts.get(state, 0) + 1
    return counts


def apply_payout_event(session: Session, *, event_id: str, event_type: str, object_id: str, created: int,
                       account: str | None, actor: Actor) -> str:
    """A connected account's ``payout.*`` event: our payout re-read from Stripe (never the event's copy) and
    its status mirrored once and in order (an event older than the newest applied is not even read); a
    failed payout posts ``payout_failed``. Not ours: "ignored". Does not commit."""
    payout = session.scalar(select(ProviderPayout).where(ProviderPayout.stripe_payout_id == object_id)
                            .with_for_update())
    if payout is None:
        return "ignored"
    owner = session.get(ProviderAccount, payout.provider_account_id)
    if account and owner.stripe_account_id != account:
        log.error("payout event %s: account %s is not the payout's", event_id, account)
        return "ignored"
    if payout.last_event_created is not None and created < payout.last_event_created:
        return "stale"
    result = gateway().retrieve_payout(owner.stripe_account_id, object_id)
    payout.last_event_created = max(created, payout.last_event_created or 0)
    now = _now()
    if not ledger.posted(session, f"payout:{result.id}"):
        ledger_posting.post_payout(session, payout, result, now=now)
    return "applied" if _mirror_payout(session, payout, result, now=now, actor=actor) else "unchanged"
