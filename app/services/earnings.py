"""A provider's earnings (issue 16): what each paid visit earned them and where that money is.

Read-only: this module queries PayoutSplit / ProviderTransfer / TransferReversal / ProviderPayout
(written by app/services/payouts.py) and changes nothing, calls no Stripe.

``for_provider(session, provider_id, now=..., start=..., end=...)`` answers:

- ``visits``: one row per PayoutSplit (one per Stripe charge: a hybrid visit has a deposit and a
  balance row), in visit order: the visit's date and time in the clinic's timezone, an opaque visit
  reference (the appointment id), the charge's purpose, gross, Stripe fee, platform fee, the
  provider's share, the status (held / transferred / paid out / reversed / forfeited) and, in words,
  why a share is held (the refund window's end, an open dispute, no payout account yet) and what was
  reversed (refund / dispute amounts, partial ones too);
- ``payouts``: each ProviderPayout of the provider's account made in the range: date, amount,
  status and the visits whose transfers it swept;
- ``totals`` over the visits listed: held (shares waiting to move, less refunds' shares taken before
  they moved), transferred (sent to the provider's connected account), reversed (pulled back by
  refunds and disputes), paid out (what of the transferred money a payout swept to the bank),
  forfeited (shares that will never move: refunded in full, a lost dispute) and earned = held +
  transferred - reversed (what is the provider's so far).

No patient's name, no type name (which can reveal a condition), no diagnosis: visits are dates, times
and appointment ids, because the CSV export (``to_csv``) travels by email and spreadsheets.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app.models import (Appointment, Charge, Dispute, LedgerEntry, LedgerTransaction, PayoutSplit, ProviderAccount,
                        ProviderPayout, ProviderTransfer, TransferReversal)
from app.models.disputes import OPEN as DISPUTE_OPEN
from app.services import clinic as clinic_service
from app.services import ledger

PURPOSE_WORDS = {"deposit": "Deposit", "visit": "Visit", "balance": "Balance", "no_show_fee": "No-show fee"}
STATUS_WORDS = {"held": "Held", "transferred": "Transferred", "paid_out": "Paid out", "reversed": "Reversed",
                "forfeited": "Forfeited"}
PAYOUT_WORDS = {"creating": "Being sent", "pending": "Pending", "in_transit": "On its way", "paid": "Paid",
                "failed": "Failed", "canceled": "Canceled"}

CSV_COLUMNS = ("visit_reference", "visit_date", "visit_time", "charge", "gross", "stripe_fee", "platform_fee",
               "share", "status", "status_detail", "transferred", "reversed", "payout_date", "payout_status")


@dataclass(frozen=True)
class PayoutRef:
    id: int
    created_at: datetime                # in the clinic's timezone
    status: str

    @property
    def status_words(self) -> str:
        return PAYOUT_WORDS.get(self.status, self.status)


@dataclass(frozen=True)
class VisitRow:
    split_id: int
    appointment_id: int                 # the opaque visit reference
    visit_at: datetime                  # in the clinic's timezone
    purpose: str
    gross_cents: int
    stripe_fee_cents: int
    platform_fee_cents: int
    share_cents: int
    status: str
    detail: str                         # why held, what was reversed, ... in words
    transferred_cents: int
    reversed_cents: int
    held_cents: int                     # what waits to move (a held share less refunds taken first)
    hold_until: datetime                # in the clinic's timezone
    payouts: tuple["PayoutRef", ...] = ()   # the payouts that swept this row's transfers

    @property
    def purpose_words(self) -> str:
        return PURPOSE_WORDS.get(self.purpose, self.purpose)

    @property
    def status_words(self) -> str:
        return STATUS_WORDS.get(self.status, self.status)

    @property
    def visit_date(self) -> str:
        return self.visit_at.strftime("%Y-%m-%d")

    @property
    def visit_time(self) -> str:
        return self.visit_at.strftime("%H:%M")


@dataclass(frozen=True)
class SweptVisit:
    appointment_id: int
    visit_at: datetime
    purpose: str
    amount_cents: int                   # what of the transfer the payout swept (net of reversals)

    @property
    def purpose_words(self) -> str:
        return PURPOSE_WORDS.get(self.purpose, self.purpose)


@dataclass(frozen=True)
class PayoutRow:
    id: int
    period: str
    created_at: datetime                # in the clinic's timezone
    arrival_date: date | None           # Stripe's expected arrival (a date, as Stripe gives it)
    amount_cents: int
    status: str
    failure_code: str | None
    visits: tuple[SweptVisit, ...]

    @property
    def status_words(self) -> str:
        return PAYOUT_WORDS.get(self.status, self.status)


@dataclass(frozen=True)
class Totals:
    visits: int = 0
    gross_cents: int = 0
    stripe_fee_cents: int = 0
    platform_fee_cents: int = 0
    shares_cents: int = 0               # the provider's shares as computed (forfeited ones included)
    held_cents: int = 0                 # shares not moved yet
    transferred_cents: int = 0          # sent to the provider's account (before reversals)
    reversed_cents: int = 0             # pulled back (refunds, disputes)
    paid_out_cents: int = 0             # of what stayed, swept to the provider's bank
    forfeited_cents: int = 0            # shares that will never move (refunded in full, dispute lost)

    @property
    def net_transferred_cents(self) -> int:
        return self.transferred_cents - self.reversed_cents

    @property
    def earned_cents(self) -> int:
        """What is the provider's so far: held, plus transferred less reversed."""
        return self.held_cents + self.net_transferred_cents


@dataclass(frozen=True)
class Earnings:
    provider_id: int
    timezone: str
    start: date | None
    end: date | None
    account_status: str | None          # the provider's payout account (None: not connected)
    visits: list[VisitRow] = field(default_factory=list)
    payouts: list[PayoutRow] = field(default_factory=list)
    totals: Totals = Totals()


class BadRange(ValueError):
    """The date range cannot be used; the message is for the user."""


def check_range(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and start > end:
        raise BadRange("The start date must be on or before the end date.")


def _bounds(start: date | None, end: date | None, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """[start 00:00, the day after end 00:00) in the clinic's timezone, as instants."""
    low = datetime.combine(start, time(0), tzinfo=zone) if start else None
    high = datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone) if end else None
    return low, high


def _day(at: datetime, zone: ZoneInfo) -> str:
    local = at.astimezone(zone)
    return f"{local:%b} {local.day}, {local.year}"


def _money(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def for_provider(session: Session, provider_id: int, *, now: datetime, start: date | None = None,
                 end: date | None = None) -> Earnings:
    """The provider's earnings for visits from ``start`` to ``end`` (inclusive, the clinic's days;
    either may be None: open). Raises BadRange for a start after the end."""
    check_range(start, end)
    tz_name = clinic_service.current_clinic(session).timezone or "UTC"
    try:
        zone = ZoneInfo(tz_name)
    except (KeyError, ValueError):              # pragma: no cover - the settings form checks the name
        tz_name, zone = "UTC", ZoneInfo("UTC")
    low, high = _bounds(start, end, zone)
    account = session.scalar(select(ProviderAccount).where(ProviderAccount.provider_id == provider_id))

    query = (select(PayoutSplit, Appointment.starts_at, Charge.purpose)
             .join(Appointment, Appointment.id == PayoutSplit.appointment_id)
             .join(Charge, Charge.id == PayoutSplit.charge_id)
             .where(PayoutSplit.provider_id == provider_id)
             .options(selectinload(PayoutSplit.transfers))
             .order_by(Appointment.starts_at, PayoutSplit.appointment_id, PayoutSplit.id))
    if low is not None:
        query = query.where(Appointment.starts_at >= low)
    if high is not None:
        query = query.where(Appointment.starts_at < high)
    found = session.execute(query).all()

    transfer_ids = [t.id for split, _, _ in found for t in split.transfers]
    reversals: dict[int, list[TransferReversal]] = {}
    if transfer_ids:
        for reversal in session.scalars(select(TransferReversal)
                                        .where(TransferReversal.transfer_id.in_(transfer_ids),
                                               TransferReversal.status != "failed")
                                        .order_by(TransferReversal.id)):
            reversals.setdefault(reversal.transfer_id, []).append(reversal)
    charge_ids = [split.charge_id for split, _, _ in found]
    lost, open_disputes = set(), set()
    refunded: dict[int, int] = {}
    if charge_ids:
        for charge_id, status in session.execute(select(Dispute.charge_id, Dispute.status)
                                                 .where(Dispute.charge_id.in_(charge_ids))):
            if status == "lost":
                lost.add(charge_id)
            elif status in DISPUTE_OPEN:
                open_disputes.add(charge_id)
        refunded = _refunded_shares(session, charge_ids)

    payouts_by_id = {}
    swept_ids = {t.payout_id for split, _, _ in found for t in split.transfers if t.payout_id}
    if swept_ids:
        payouts_by_id = {p.id: p for p in session.scalars(select(ProviderPayout)
                                                          .where(ProviderPayout.id.in_(swept_ids)))}

    visits = []
    for split, starts_at, purpose in found:
        split_reversals = [r for t in split.transfers for r in reversals.get(t.id, [])]
        payout_ids = sorted({t.payout_id for t in split.transfers if t.payout_id})
        swept = [payouts_by_id[i] for i in payout_ids if i in payouts_by_id]
        refs = tuple(PayoutRef(id=p.id, created_at=p.created_at.astimezone(zone), status=p.status) for p in swept)
        # A refund's share that no reversal took back was taken before anything moved.
        reversed_for_refunds = sum(r.amount_cents for r in split_reversals if r.reason == "refund")
        refunded_first = max(0, refunded.get(split.charge_id, 0) - reversed_for_refunds)
        held = max(0, split.provider_share_cents - refunded_first) if split.status == "held" else 0
        visits.append(VisitRow(
            split_id=split.id, appointment_id=split.appointment_id, visit_at=starts_at.astimezone(zone),
            purpose=purpose, gross_cents=split.gross_cents, stripe_fee_cents=split.stripe_fee_cents,
            platform_fee_cents=split.platform_fee_cents, share_cents=split.provider_share_cents,
            status=split.status,
            detail=_detail(split, split_reversals, account=account, now=now, zone=zone,
                           lost=split.charge_id in lost, disputed=split.charge_id in open_disputes,
                           refunded_first=refunded_first, payouts=swept),
            transferred_cents=split.transferred_cents, reversed_cents=split.reversed_cents, held_cents=held,
            hold_until=split.hold_until.astimezone(zone), payouts=refs))

    payouts = _payouts(session, account, low=low, high=high, zone=zone) if account is not None else []
    return Earnings(provider_id=provider_id, timezone=tz_name, start=start, end=end,
                    account_status=account.status if account else None, visits=visits, payouts=payouts,
                    totals=_totals(visits))


def _refunded_shares(session: Session, charge_ids: list[int]) -> dict[int, int]:
    """Per charge: the provider's share that refunds after the split took back (net of failed refunds),
    as the ledger posted it (``refund:<re>``: provider_payable debited)."""
    rows = session.execute(
        select(LedgerTransaction.charge_id, func.coalesce(func.sum(LedgerEntry.amount_cents), 0))
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.charge_id.in_(charge_ids),
               LedgerTransaction.kind.in_(("refund", "refund_failed")),
               LedgerEntry.account == ledger.PROVIDER_PAYABLE)
        .group_by(LedgerTransaction.charge_id))
    return {charge_id: int(amount) for charge_id, amount in rows if amount and amount > 0}


def _detail(split: PayoutSplit, split_reversals: list[TransferReversal], *, account: ProviderAccount | None,
            now: datetime, zone: ZoneInfo, lost: bool, disputed: bool, refunded_first: int,
            payouts: list[ProviderPayout]) -> str:
    """The status's reasons in words (no ids of Stripe's, no names)."""
    words: list[str] = []
    sending = sum(t.amount_cents for t in split.transfers if t.status == "creating")
    if split.status == "held":
        if split.dispute_hold or disputed:
            words.append("dispute open")
        if now < split.hold_until:
            words.append(f"hold until {_day(split.hold_until, zone)}")
        if account is None:
            words.append("no payout account yet")
        elif account.status != "enabled":
            words.append("payout account not ready yet")
        if not words and not sending:
            if any(t.status == "failed" for t in split.transfers):
                words.append("transfer failed: the clinic is looking into it")
            else:
                words.append("transfer due")
    elif split.status == "forfeited":
        words.append("dispute lost" if lost else
                     "nothing left after fees" if split.provider_share_cents == 0 else "refunded before it moved")
    elif split.dispute_hold or disputed:
        words.append("dispute open")
    if sending:
        words.append(f"transfer of {_money(sending)} being sent")
    if refunded_first and split.status != "forfeited":
        words.append(f"refund took {_money(refunded_first)} before it moved")
    for reason in ("refund", "dispute"):
        done = sum(r.amount_cents for r in split_reversals if r.reason == reason and r.status == "created")
        pending = sum(r.amount_cents for r in split_reversals if r.reason == reason and r.status == "creating")
        if done:
            words.append(f"{reason} reversed {_money(done)}")
        if pending:
            words.append(f"{reason} reversal of {_money(pending)} being sent")
    if split.status == "paid_out" and payouts:
        def when(p: ProviderPayout) -> str:
            state = "" if p.status == "paid" else f" ({PAYOUT_WORDS.get(p.status, p.status).lower()})"
            return _day(p.created_at, zone) + state

        words.append("in payout of " + ", ".join(when(p) for p in payouts))
    text = "; ".join(words)
    return text[:1].upper() + text[1:]


def _payouts(session: Session, account: ProviderAccount, *, low, high, zone: ZoneInfo) -> list[PayoutRow]:
    query = (select(ProviderPayout).where(ProviderPayout.provider_account_id == account.id,
                                          ProviderPayout.status != "nothing")
             .order_by(ProviderPayout.created_at.desc(), ProviderPayout.id.desc()))
    if low is not None:
        query = query.where(ProviderPayout.created_at >= low)
    if high is not None:
        query = query.where(ProviderPayout.created_at < high)
    payouts = list(session.scalars(query))
    if not payouts:
        return []
    swept: dict[int, list[SweptVisit]] = {}
    rows = session.execute(
        select(ProviderTransfer.payout_id, ProviderTransfer.amount_cents, ProviderTransfer.amount_reversed_cents,
               PayoutSplit.appointment_id, Appointment.starts_at, Charge.purpose)
        .join(PayoutSplit, PayoutSplit.id == ProviderTransfer.split_id)
        .join(Appointment, Appointment.id == PayoutSplit.appointment_id)
        .join(Charge, Charge.id == PayoutSplit.charge_id)
        .where(ProviderTransfer.payout_id.in_([p.id for p in payouts]))
        .order_by(Appointment.starts_at, ProviderTransfer.id))
    for payout_id, amount, reversed_, appointment_id, starts_at, purpose in rows:
        swept.setdefault(payout_id, []).append(SweptVisit(
            appointment_id=appointment_id, visit_at=starts_at.astimezone(zone), purpose=purpose,
            amount_cents=amount - reversed_))
    return [PayoutRow(id=p.id, period=p.period, created_at=p.created_at.astimezone(zone),
                      arrival_date=p.arrival_date.astimezone(timezone.utc).date() if p.arrival_date else None,
                      amount_cents=p.amount_cents, status=p.status, failure_code=p.failure_code,
                      visits=tuple(swept.get(p.id, ())))
            for p in payouts]


def _totals(visits: list[VisitRow]) -> Totals:
    def total(pick, when=lambda v: True) -> int:
        return sum(pick(v) for v in visits if when(v))

    return Totals(
        visits=len({v.appointment_id for v in visits}),
        gross_cents=total(lambda v: v.gross_cents),
        stripe_fee_cents=total(lambda v: v.stripe_fee_cents),
        platform_fee_cents=total(lambda v: v.platform_fee_cents),
        shares_cents=total(lambda v: v.share_cents),
        held_cents=total(lambda v: v.held_cents),
        transferred_cents=total(lambda v: v.transferred_cents),
        reversed_cents=total(lambda v: v.reversed_cents),
        paid_out_cents=total(lambda v: v.transferred_cents - v.reversed_cents, lambda v: v.status == "paid_out"),
        forfeited_cents=total(lambda v: v.share_cents - (v.transferred_cents - v.reversed_cents),
                              lambda v: v.status == "forfeited"),
    )


def _dollars(cents: int) -> str:
    """Plain dollars for a spreadsheet: 1234.50 (no $ or thousands separator)."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def to_csv(earnings: Earnings) -> str:
    """One line per visit row, the page's columns; amounts in dollars. No names: visit references
    are appointment ids."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for v in earnings.visits:
        writer.writerow([v.appointment_id, v.visit_date, v.visit_time, v.purpose_words, _dollars(v.gross_cents),
                         _dollars(v.stripe_fee_cents), _dollars(v.platform_fee_cents), _dollars(v.share_cents),
                         v.status_words, v.detail, _dollars(v.transferred_cents), _dollars(v.reversed_cents),
                         " ".join(p.created_at.strftime("%Y-%m-%d") for p in v.payouts),
                         " ".join(p.status_words for p in v.payouts)])
    return out.getvalue()
