"""The ledger's reports (issue 16): per day and per provider, in cents, computed from the ledger alone.

A day is the clinic's (ClinicSettings.timezone) calendar day of a ledger transaction's
``occurred_at``; a provider is the entry's ``provider_id`` or, for entries that carry none (the
platform's balance, fees, patients' money), the transaction's. Read-only; calls no Stripe.

The figures (positive numbers, what a reader expects to see; see ``FIGURES``):

- gross: what patients paid (``charge`` postings: the credit to patient_payments);
- stripe_fees: Stripe's processing fees (stripe_fees debits, except the split's, which only moves
  the fee onto the provider's share);
- platform_fees: the platform's fee revenue (platform_fees credits less what refunds gave back);
- provider_share: the providers' shares of the money made final (``split``: provider_payable);
- refunds: refunded to patients (the platform balance's ``refund`` debits less ``refund_failed``);
- disputes: withdrawn (disputes_open debited by ``dispute_withdrawal``), reinstated (a won dispute),
  lost (a lost one), dispute_fees (Stripe's dispute fees);
- net: what patients' money left in the platform's Stripe balance: gross − Stripe fees − refunds −
  withdrawn + reinstated − dispute fees (the platform balance's entries of those postings);
- transfers: sent to providers' connected balances; reversals: taken back from them;
- payouts: from the connected balances to providers' banks (less payouts that failed).

No patient, no type name, nothing clinical: days, provider ids and names (staff), and cents.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import Date, and_, case, cast, func, select
from sqlalchemy.orm import Session

from app.models import Provider, User
from app.models.ledger import LedgerEntry, LedgerTransaction
from app.services import clinic as clinic_service
from app.services import ledger

MAX_DAYS = 366

_PATIENT_MONEY = ("charge", "refund", "refund_failed", "dispute_withdrawal", "dispute_reinstatement")
# figure -> (account, kinds or None for any, excluded kinds, sign)
_RULES = {
    "gross": (ledger.PATIENT_PAYMENTS, ("charge",), (), -1),
    "stripe_fees": (ledger.STRIPE_FEES, None, ("split",), 1),
    "platform_fees": (ledger.PLATFORM_FEES, None, (), -1),
    "provider_share": (ledger.PROVIDER_PAYABLE, ("split",), (), -1),
    "refunds": (ledger.STRIPE_BALANCE, ("refund", "refund_failed"), (), -1),
    "disputes_withdrawn": (ledger.DISPUTES_OPEN, ("dispute_withdrawal",), (), 1),
    "disputes_reinstated": (ledger.DISPUTES_OPEN, ("dispute_reinstatement",), (), -1),
    "disputes_lost": (ledger.DISPUTES_OPEN, ("dispute_lost",), (), -1),
    "dispute_fees": (ledger.DISPUTE_FEES, None, (), 1),
    "net": (ledger.STRIPE_BALANCE, _PATIENT_MONEY, (), 1),
    "transfers": (ledger.PROVIDER_STRIPE, ("transfer",), (), 1),
    "reversals": (ledger.PROVIDER_STRIPE, ("reversal",), (), -1),
    "payouts": (ledger.PROVIDER_STRIPE, ("payout", "payout_failed"), (), -1),
}
FIGURES = tuple(_RULES)
FIGURE_WORDS = {
    "gross": "Gross", "stripe_fees": "Stripe fees", "platform_fees": "Platform fees",
    "provider_share": "Providers' share", "refunds": "Refunds", "disputes_withdrawn": "Disputed (withdrawn)",
    "disputes_reinstated": "Disputes won (reinstated)", "disputes_lost": "Disputes lost",
    "dispute_fees": "Dispute fees", "net": "Net", "transfers": "Transfers", "reversals": "Transfer reversals",
    "payouts": "Payouts",
}


class ReportError(ValueError):
    """A range the report cannot show (the caller answers 400 with the message)."""


@dataclass
class Figures:
    gross: int = 0
    stripe_fees: int = 0
    platform_fees: int = 0
    provider_share: int = 0
    refunds: int = 0
    disputes_withdrawn: int = 0
    disputes_reinstated: int = 0
    disputes_lost: int = 0
    dispute_fees: int = 0
    net: int = 0
    transfers: int = 0
    reversals: int = 0
    payouts: int = 0

    def add(self, other: "Figures") -> "Figures":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def values(self) -> list[int]:
        return [getattr(self, name) for name in FIGURES]

    @property
    def empty(self) -> bool:
        return not any(self.values())


@dataclass(frozen=True)
class Row:
    day: date
    provider_id: int | None
    provider_name: str
    figures: Figures


@dataclass(frozen=True)
class ProviderTotal:
    provider_id: int | None
    provider_name: str
    figures: Figures


@dataclass
class Report:
    first: date
    last: date
    timezone: str
    rows: list[Row] = field(default_factory=list)                  # per day and provider, with activity
    days: list[tuple[date, Figures]] = field(default_factory=list)   # every day of the range
    providers: list[ProviderTotal] = field(default_factory=list)
    total: Figures = field(default_factory=Figures)


NO_PROVIDER = "Platform (no provider)"


def check_range(first: date, last: date) -> None:
    if last < first:
        raise ReportError("The end date is before the start date.")
    if (last - first).days + 1 > MAX_DAYS:
        raise ReportError(f"Choose at most {MAX_DAYS} days.")


def _figure_column(name: str):
    account, kinds, excluded, sign = _RULES[name]
    conditions = [LedgerEntry.account == account]
    if kinds is not None:
        conditions.append(LedgerTransaction.kind.in_(kinds))
    if excluded:
        conditions.append(LedgerTransaction.kind.not_in(excluded))
    return func.coalesce(func.sum(case((and_(*conditions), LedgerEntry.amount_cents * sign), else_=0)), 0)


def window(first: date, last: date, tz: str) -> tuple[datetime, datetime]:
    """The clinic's days ``first``..``last`` as UTC instants ``[start, end)``."""
    zone = ZoneInfo(tz)
    return (datetime.combine(first, time(0), tzinfo=zone).astimezone(timezone.utc),
            datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone).astimezone(timezone.utc))


def report(session: Session, *, first: date, last: date, tz: str | None = None) -> Report:
    """The figures of the clinic's days ``first``..``last`` (inclusive), per day and provider."""
    check_range(first, last)
    tz = tz or clinic_service.current_clinic(session).timezone or "UTC"
    start, end = window(first, last, tz)
    day_col = cast(func.timezone(tz, LedgerTransaction.occurred_at), Date)
    provider_col = func.coalesce(LedgerEntry.provider_id, LedgerTransaction.provider_id)
    rows = session.execute(
        select(day_col, provider_col, *[_figure_column(name) for name in FIGURES])
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.occurred_at >= start, LedgerTransaction.occurred_at < end)
        .group_by(day_col, provider_col)).all()
    ids = {row[1] for row in rows if row[1] is not None}
    names = dict(session.execute(select(Provider.id, User.full_name).join(User, User.id == Provider.user_id)
                                 .where(Provider.id.in_(ids))).all()) if ids else {}
    out = Report(first=first, last=last, timezone=tz)
    by_day: dict[date, Figures] = {}
    by_provider: dict[int | None, Figures] = {}
    for day, provider_id, *values in rows:
        figures = Figures(**{name: int(v) for name, v in zip(FIGURES, values)})
        if figures.empty:
            continue
        name = names.get(provider_id, f"Provider {provider_id}") if provider_id is not None else NO_PROVIDER
        out.rows.append(Row(day, provider_id, name, figures))
        by_day.setdefault(day, Figures()).add(figures)
        by_provider.setdefault(provider_id, Figures()).add(figures)
        out.total.add(figures)
    out.rows.sort(key=lambda r: (r.day, r.provider_id is not None, r.provider_name, r.provider_id or 0))
    day = first
    while day <= last:
        out.days.append((day, by_day.get(day, Figures())))
        day += timedelta(days=1)
    out.providers = sorted(
        (ProviderTotal(pid, names.get(pid, f"Provider {pid}") if pid is not None else NO_PROVIDER, figures)
         for pid, figures in by_provider.items()),
        key=lambda p: (p.provider_id is not None, p.provider_name, p.provider_id or 0))
    return out


def _cell(text: str) -> str:
    """A spreadsheet must not read a name as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(rep: Report) -> str:
    """One line per day and provider, then one per provider and the total; cents."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("day", "provider_id", "provider", *[f"{name}_cents" for name in FIGURES]))
    for row in rep.rows:
        writer.writerow((row.day.isoformat(), row.provider_id or "", _cell(row.provider_name), *row.figures.values()))
    span = f"{rep.first.isoformat()}..{rep.last.isoformat()}"
    for p in rep.providers:
        writer.writerow((span, p.provider_id or "", _cell(p.provider_name), *p.figures.values()))
    writer.writerow((span, "", "Total", *rep.total.values()))
    return out.getvalue()
