"""The ledger's report per day (the clinic's day) and per provider (issue 16): a known set of postings
gives known figures, in cents."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from app.models import ClinicSettings
from app.services import ledger, ledger_reports
from app.services.ledger import Entry

UTC = timezone.utc


def post(db, key, kind, when, entries, provider=None):
    txn, posted = ledger.post(db, kind=kind, dedupe_key=key, occurred_at=when, entries=entries,
                              provider_id=provider.id if provider else None)
    assert posted


@pytest.fixture
def books(db, factories):
    """Two providers' postings over three New York days (12-07 to 12-09)."""
    db.add(ClinicSettings(id=1, name="Ledger Clinic", timezone="America/New_York"))
    a = factories.provider(full_name="Dr. Ada Books")
    b = factories.provider(full_name="Dr. Ben Books")
    mon = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)          # 10:00 in New York
    tue, wed = datetime(2026, 12, 8, 15, 0, tzinfo=UTC), datetime(2026, 12, 9, 15, 0, tzinfo=UTC)
    S, B, D, P = ledger.STRIPE_BALANCE, ledger.PROVIDER_STRIPE, ledger.DISPUTES_OPEN, ledger.PROVIDER_PAYABLE
    # Provider A: $100 charge (fee $3.20), split (platform $10, share $86.80), $25 refund after the split,
    # a transfer and a payout of what is left, and the refund failing on Wednesday.
    post(db, "charge:ch_a", "charge", mon, [Entry(S, 9680, balance_transaction_id="txn_a"),
                                             Entry(ledger.STRIPE_FEES, 320, balance_transaction_id="txn_a"),
                                             Entry(ledger.PATIENT_PAYMENTS, -10000)], a)
    post(db, "split:ch_a", "split", mon, [Entry(ledger.PATIENT_PAYMENTS, 10000), Entry(ledger.STRIPE_FEES, -320),
                                           Entry(ledger.PLATFORM_FEES, -1000), Entry(P, -8680, provider_id=a.id)], a)
    refund = [Entry(S, -2500, balance_transaction_id="txn_re"), Entry(P, 2170, provider_id=a.id),
              Entry(ledger.PLATFORM_FEES, 250), Entry(ledger.REFUND_LOSSES, 80)]
    post(db, "refund:re_a", "refund", mon, refund, a)
    post(db, "transfer:tr_a", "transfer", tue, [Entry(S, -6510, balance_transaction_id="txn_tr"),
                                                 Entry(B, 6510, provider_id=a.id, balance_transaction_id="txn_py",
                                                       stripe_account_id="acct_a")], a)
    post(db, "payout:po_a", "payout", tue, [Entry(B, -6510, provider_id=a.id, balance_transaction_id="txn_po",
                                                  stripe_account_id="acct_a"), Entry(P, 6510, provider_id=a.id)], a)
    post(db, "refund_failed:re_a", "refund_failed", wed,
         [Entry(e.account, -e.amount_cents, provider_id=e.provider_id,
                balance_transaction_id="txn_ref" if e.balance_transaction_id else None) for e in refund], a)
    # Provider B: $50 charge on Tuesday 03:00 UTC, which is still Monday in New York; disputed on
    # Tuesday (fee $15), won on Wednesday; and a $30 dispute lost on Wednesday.
    post(db, "charge:ch_b", "charge", datetime(2026, 12, 8, 3, 0, tzinfo=UTC),
         [Entry(S, 4825, balance_transaction_id="txn_b"),
          Entry(ledger.STRIPE_FEES, 175, balance_transaction_id="txn_b"), Entry(ledger.PATIENT_PAYMENTS, -5000)], b)
    post(db, "dispute_withdrawal:du_b", "dispute_withdrawal", tue,
         [Entry(S, -6500, balance_transaction_id="txn_du"),
          Entry(ledger.DISPUTE_FEES, 1500, balance_transaction_id="txn_du"), Entry(D, 5000)], b)
    post(db, "dispute_reinstatement:du_b", "dispute_reinstatement", wed,
         [Entry(S, 5000, balance_transaction_id="txn_dr"), Entry(D, -5000)], b)
    post(db, "dispute_lost:du_c", "dispute_lost", wed,
         [Entry(D, -3000), Entry(P, 2000, provider_id=b.id), Entry(ledger.DISPUTE_LOSSES, 1000)], b)
    db.commit()
    return a, b


def figures(**values) -> ledger_reports.Figures:
    return ledger_reports.Figures(**values)


def test_the_figures_per_day_and_provider(db, books):
    a, b = books
    report = ledger_reports.report(db, first=date(2026, 12, 7), last=date(2026, 12, 9))
    assert report.timezone == "America/New_York"
    rows = {(r.day, r.provider_id): r.figures for r in report.rows}
    mon, tue, wed = date(2026, 12, 7), date(2026, 12, 8), date(2026, 12, 9)
    assert rows == {
        (mon, a.id): figures(gross=10000, stripe_fees=320, platform_fees=750, provider_share=8680, refunds=2500,
                             net=7180),
        (mon, b.id): figures(gross=5000, stripe_fees=175, net=4825),        # 22:00 in New York
        (tue, a.id): figures(transfers=6510, payouts=6510),
        (tue, b.id): figures(disputes_withdrawn=5000, dispute_fees=1500, net=-6500),
        (wed, a.id): figures(platform_fees=250, refunds=-2500, net=2500),
        (wed, b.id): figures(disputes_reinstated=5000, disputes_lost=3000, net=5000),
    }
    days = dict(report.days)
    assert days[mon] == figures(gross=15000, stripe_fees=495, platform_fees=750, provider_share=8680, refunds=2500,
                                net=12005)
    providers = {p.provider_id: (p.provider_name, p.figures) for p in report.providers}
    assert providers[a.id] == ("Dr. Ada Books", figures(gross=10000, stripe_fees=320, platform_fees=1000,
                                                         provider_share=8680, refunds=0, net=9680, transfers=6510,
                                                         payouts=6510))
    assert providers[b.id] == ("Dr. Ben Books", figures(gross=5000, stripe_fees=175, disputes_withdrawn=5000,
                                                         disputes_reinstated=5000, disputes_lost=3000,
                                                         dispute_fees=1500, net=3325))
    assert report.total == figures(gross=15000, stripe_fees=495, platform_fees=1000, provider_share=8680,
                                   disputes_withdrawn=5000, disputes_reinstated=5000, disputes_lost=3000,
                                   dispute_fees=1500, net=13005, transfers=6510, payouts=6510)
    # The net is what patients' money left in the platform's Stripe balance.
    t = report.total
    assert t.net == (t.gross - t.stripe_fees - t.refunds - t.disputes_withdrawn + t.disputes_reinstated
                     - t.dispute_fees)


def test_a_range_picks_the_clinics_days(db, books):
    a, b = books
    only_monday = ledger_reports.report(db, first=date(2026, 12, 7), last=date(2026, 12, 7))
    assert only_monday.total.gross == 15000 and only_monday.total.transfers == 0
    assert [d for d, _ in only_monday.days] == [date(2026, 12, 7)]
    in_utc = ledger_reports.report(db, first=date(2026, 12, 7), last=date(2026, 12, 7), tz="UTC")
    assert in_utc.total.gross == 10000                                   # B's charge is Tuesday in UTC
    empty = ledger_reports.report(db, first=date(2026, 12, 1), last=date(2026, 12, 3))
    assert empty.rows == [] and empty.total.empty and len(empty.days) == 3


def test_the_csv_has_a_line_per_day_and_provider_and_the_totals(db, books):
    a, b = books
    text = ledger_reports.to_csv(ledger_reports.report(db, first=date(2026, 12, 7), last=date(2026, 12, 9)))
    lines = text.splitlines()
    assert lines[0].startswith("day,provider_id,provider,gross_cents,stripe_fees_cents")
    assert f"2026-12-07,{a.id},Dr. Ada Books,10000,320,750,8680,2500,0,0,0,0,7180,0,0,0" in lines
    assert lines[-1] == "2026-12-07..2026-12-09,,Total,15000,495,1000,8680,0,5000,5000,3000,1500,13005,6510,0,6510"
    assert len(lines) == 1 + 6 + 2 + 1


@pytest.mark.parametrize("first,last", [(date(2026, 12, 9), date(2026, 12, 7)), (date(2025, 1, 1), date(2026, 12, 31))])
def test_a_bad_range_is_refused(db, first, last):
    with pytest.raises(ledger_reports.ReportError):
        ledger_reports.report(db, first=first, last=last)
