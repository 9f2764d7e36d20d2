"""The daily reconciliation against the Stripe sandbox (issue 16): real charges made at the sandbox and
posted with ``ledger.post`` from their balance transactions match to the cent; a ledger entry removed
by the database owner, or a balance transaction the ledger never saw, is named. Each test windows the
shared sandbox by its clock (tests/ledger/sandbox_window.py), so other tests' objects and delayed work
stay out."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select

from app.models import Notification
from app.models.ledger import LedgerReconciliation
from app.models.payouts import ProviderAccount
from app.services import ledger, ledger_reconcile
from app.services.gateway import gateway
from app.services.ledger import Entry
from tests.ledger.conftest import at, captured_charge, post_charge
from tests.ledger.sandbox_window import close_window, open_window

UTC = timezone.utc
DAY = date(2026, 12, 7)


def reconcile(db, start, end, **kwargs):
    run = ledger_reconcile.reconcile(db, gateway(), start=start, end=end, day=DAY, **kwargs)
    db.commit()
    return run


def named(run, kind=None):
    return {m["balance_transaction"] for m in run.mismatches if kind is None or m["kind"] == kind}


def test_a_real_charge_posted_from_its_balance_transaction_matches(db, sandbox, stripe_direct):
    start = open_window(sandbox)
    charge = captured_charge(stripe_direct, 12500)
    post_charge(db, charge)
    db.commit()
    run = reconcile(db, start, close_window(sandbox), connected_accounts=[])
    assert run.status == "matched", run.mismatches
    assert run.matched == 1 and run.mismatches == [] and run.finished_at is not None
    stored = db.get(LedgerReconciliation, run.id)
    assert stored.status == "matched" and stored.day == DAY


def test_an_entry_removed_by_the_owner_is_named(db, raw_conn, sandbox, stripe_direct):
    start = open_window(sandbox)
    kept, cut = captured_charge(stripe_direct, 12500), captured_charge(stripe_direct, 8000)
    post_charge(db, kept)
    post_charge(db, cut)
    db.commit()
    end = close_window(sandbox)
    assert reconcile(db, start, end, connected_accounts=[]).status == "matched"
    # As the database owner: lift the append-only triggers, delete the platform balance's entry.
    raw_conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
    try:
        raw_conn.execute("DELETE FROM ledger_entries WHERE account = 'stripe_balance' AND balance_transaction_id = %s",
                         (cut.balance_transaction.id,))
    finally:
        raw_conn.execute("ALTER TABLE ledger_entries ENABLE TRIGGER USER")
    run = reconcile(db, start, end, connected_accounts=[])
    assert run.status == "mismatched" and run.matched == 1
    differs = [m for m in run.mismatches if m["kind"] == "amount_differs"]
    assert differs == [{"kind": "amount_differs", "balance_transaction": cut.balance_transaction.id, "source": cut.id,
                        "type": "charge", "account": "stripe_balance", "stripe_cents": cut.balance_transaction.net,
                        "ledger_cents": 0}]
    unbalanced = [m for m in run.mismatches if m["kind"] == "unbalanced"]
    assert len(unbalanced) == 1 and unbalanced[0]["source"] == cut.id
    assert unbalanced[0]["ledger_cents"] == -cut.balance_transaction.net
    assert kept.balance_transaction.id not in named(run)


def test_a_balance_transaction_the_ledger_never_saw_is_missing_in_ledger(db, sandbox, stripe_direct):
    start = open_window(sandbox)
    ours = captured_charge(stripe_direct, 12500)
    post_charge(db, ours)
    db.commit()
    behind_our_back = captured_charge(stripe_direct, 4200)        # straight through the SDK, never posted
    run = reconcile(db, start, close_window(sandbox), connected_accounts=[])
    assert run.status == "mismatched" and run.matched == 1
    bt = behind_our_back.balance_transaction
    assert run.mismatches == [{"kind": "missing_in_ledger", "balance_transaction": bt.id, "source": behind_our_back.id,
                               "type": "charge", "account": "stripe_balance", "stripe_cents": bt.net,
                               "ledger_cents": 0}]


def test_delayed_work_of_earlier_objects_does_not_land_in_the_window(db, sandbox, stripe_direct):
    """What another test left behind (a 5126 refund that fails later, a 0259 charge whose dispute opens
    later) fires before the window opens, not in it."""
    before = sandbox.admin("GET", "later")["later_seconds"]
    sandbox.set_later(600)                        # as a test that wants things to stay pending would
    try:
        refunded = _charge_with(stripe_direct, "pm_card_refundFail", 2000)
        refund = stripe_direct.v1.refunds.create(params={"charge": refunded.id, "amount": 2000})
        disputed = _charge_with(stripe_direct, "pm_card_createDispute", 3000)
    finally:
        sandbox.set_later(before)
    start = open_window(sandbox)
    failure = stripe_direct.v1.refunds.retrieve(refund.id).failure_balance_transaction
    dispute = stripe_direct.v1.charges.retrieve(disputed.id).dispute
    assert failure and dispute                    # both fired, before the window
    assert stripe_direct.v1.balance_transactions.retrieve(failure).created < start
    ours = captured_charge(stripe_direct, 12500)
    post_charge(db, ours)
    db.commit()
    run = reconcile(db, start, close_window(sandbox), connected_accounts=[])
    assert run.status == "matched" and run.matched == 1, run.mismatches


def _charge_with(client, payment_method, amount):
    intent = client.v1.payment_intents.create(params={
        "amount": amount, "currency": "usd", "payment_method": payment_method, "confirm": True,
        "payment_method_types": ["card"]})
    return client.v1.charges.retrieve(intent.latest_charge)


def test_wrong_amounts_and_fees_are_named_with_both_figures(db, sandbox, stripe_direct):
    start = open_window(sandbox)
    charge = captured_charge(stripe_direct, 10000)
    bt = charge.balance_transaction
    ledger.post(db, kind="charge", dedupe_key=f"charge:{charge.id}", occurred_at=at(bt.created),
                stripe_object_id=charge.id,
                entries=[Entry(ledger.STRIPE_BALANCE, bt.net + 1, balance_transaction_id=bt.id),
                         Entry(ledger.STRIPE_FEES, bt.fee - 1, balance_transaction_id=bt.id),
                         Entry(ledger.PATIENT_PAYMENTS, -bt.amount)])
    db.commit()
    run = reconcile(db, start, close_window(sandbox), connected_accounts=[])
    by_kind = {m["kind"]: m for m in run.mismatches}
    assert set(by_kind) == {"amount_differs", "fee_differs"} and run.matched == 0
    differs = by_kind["amount_differs"]
    assert (differs["stripe_cents"], differs["ledger_cents"]) == (bt.net, bt.net + 1)
    assert (by_kind["fee_differs"]["stripe_cents"], by_kind["fee_differs"]["ledger_cents"]) == (bt.fee, bt.fee - 1)
    assert by_kind["fee_differs"]["balance_transaction"] == bt.id


def test_a_late_posting_is_checked_where_it_belongs_and_an_unknown_one_is_missing_at_stripe(db, sandbox, stripe_direct):
    earlier = captured_charge(stripe_direct, 6000)              # before the window
    start = open_window(sandbox)
    # Posted late: its occurred_at is in this window, its balance transaction in an earlier one.
    post_charge(db, earlier, occurred_at=at(start))
    ledger.post(db, kind="refund", dedupe_key="refund:re_invented", occurred_at=at(start),
                stripe_object_id="re_invented",
                entries=[Entry(ledger.STRIPE_BALANCE, -500, balance_transaction_id="txn_NotAtStripe000000000000"),
                         Entry(ledger.PATIENT_PAYMENTS, 500)])
    db.commit()
    run = reconcile(db, start, close_window(sandbox), connected_accounts=[])
    assert run.mismatches == [{"kind": "missing_at_stripe", "balance_transaction": "txn_NotAtStripe000000000000",
                               "source": None, "type": None, "account": "stripe_balance", "stripe_cents": None,
                               "ledger_cents": -500}]
    assert run.matched == 0           # the late one is counted by its own day


def test_a_providers_connected_account_is_reconciled_too(db, factories, sandbox, stripe_direct):
    provider = factories.provider(full_name="Dr. Lee Ledger")
    account = stripe_direct.v1.accounts.create(params={"type": "express", "metadata": {"test": "ledger"}})
    sandbox.onboard_account(account.id)
    db.add(ProviderAccount(provider_id=provider.id, stripe_account_id=account.id, status="enabled",
                           details_submitted=True, charges_enabled=True, payouts_enabled=True,
                           transfers_active=True, requirements_due=[]))
    db.commit()
    start = open_window(sandbox)
    charge = captured_charge(stripe_direct, 10000)
    post_charge(db, charge, provider_id=provider.id)
    transfer = stripe_direct.v1.transfers.create(params={
        "amount": 8000, "currency": "usd", "destination": account.id, "source_transaction": charge.id})
    platform_bt = stripe_direct.v1.balance_transactions.retrieve(transfer.balance_transaction)
    [payment_bt] = list(stripe_direct.v1.balance_transactions.list(
        params={"source": transfer.destination_payment}, options={"stripe_account": account.id}).auto_paging_iter())
    ledger.post(db, kind="transfer", dedupe_key=f"transfer:{transfer.id}", occurred_at=at(transfer.created),
                stripe_object_id=transfer.id, provider_id=provider.id,
                entries=[Entry(ledger.STRIPE_BALANCE, platform_bt.net, balance_transaction_id=platform_bt.id),
                         Entry(ledger.PROVIDER_STRIPE, payment_bt.net, provider_id=provider.id,
                               balance_transaction_id=payment_bt.id, stripe_account_id=account.id)])
    db.commit()
    end = close_window(sandbox)
    run = reconcile(db, start, end)                 # the accounts come from the ProviderAccount rows
    assert run.status == "matched", run.mismatches
    assert run.matched == 3                          # the charge, the platform's transfer, the provider's payment
    # A payout the ledger never saw, on the provider's account, is named with that account.
    sandbox.advance_clock(3 * 86400)                 # the payment's funds become available
    start = open_window(sandbox)
    payout = stripe_direct.v1.payouts.create(params={"amount": 8000, "currency": "usd"},
                                             options={"stripe_account": account.id})
    run = reconcile(db, start, close_window(sandbox))
    assert [(m["kind"], m["source"], m["type"], m["account"], m["stripe_cents"]) for m in run.mismatches] == [
        ("missing_in_ledger", payout.id, "payout", f"provider_stripe:{account.id}", -8000)]


def test_a_mismatched_run_alerts_each_admin_once(app, db, factories, sandbox, stripe_direct, queue):
    admins = [factories.user("admin"), factories.user("admin")]
    factories.user("billing")
    start = open_window(sandbox)
    unseen = captured_charge(stripe_direct, 3100)
    run = reconcile(db, start, close_window(sandbox), connected_accounts=[])
    assert run.status == "mismatched" and run.alerted_at is not None
    alerts = db.scalars(select(Notification).where(Notification.template == "ledger_mismatch")).all()
    assert sorted(n.user_id for n in alerts) == sorted(a.id for a in admins)
    link = f"/admin/ledger/reconciliations/{run.id}"
    assert all(n.channel == "email" and n.context == {"link": alerts[0].context["link"]} for n in alerts)
    assert alerts[0].context["link"].endswith(link)
    # Once per run: telling again tells nobody.
    assert ledger_reconcile.alert_admins(db, run, now=datetime.now(UTC)) == 0
    db.commit()
    assert len(db.scalars(select(Notification).where(Notification.template == "ledger_mismatch")).all()) == 2
    # What the admins read: the link, no amount, no id of Stripe's, nothing about a patient.
    from app.jobs.notifications import render

    message = render(db, alerts[0])
    assert link in message.text and "Stripe" in message.subject
    assert unseen.id not in message.text and unseen.balance_transaction.id not in message.text
    # A matched run alerts nobody.
    quiet = open_window(sandbox)
    matched = reconcile(db, quiet, close_window(sandbox), connected_accounts=[])
    assert matched.status == "matched" and matched.alerted_at is None
    assert len(db.scalars(select(Notification).where(Notification.template == "ledger_mismatch")).all()) == 2


def test_stripe_unreachable_fails_the_run_and_the_next_run_tries_the_day_again(app, db, clock, sandbox, queue):
    from app.jobs import set_app
    from app.jobs.ledger import reconcile_yesterday

    set_app(app)
    day = date(2001, 1, 1)                           # no balance transaction of the sandbox is that old
    clock.set(datetime(2001, 1, 2, 2, 0, tzinfo=UTC))
    sandbox.inject_faults("error_before", count=50, path="/v1/balance_transactions", method="GET")
    assert reconcile_yesterday() == {"ledger_reconciled": 1, "ledger_failed": 1}
    failed = db.scalars(select(LedgerReconciliation)).one()
    assert (failed.day, failed.status, failed.matched, failed.mismatches) == (day, "failed", 0, [])
    assert failed.error.startswith("Stripe could not be reached")
    sandbox.reset_faults()
    # The next run (later the same night, or the next day's) tries the failed day again.
    clock.advance(timedelta(minutes=15))
    assert reconcile_yesterday() == {"ledger_reconciled": 1, "ledger_matched": 1}
    db.expire_all()
    runs = db.scalars(select(LedgerReconciliation).order_by(LedgerReconciliation.id)).all()
    assert [(r.day, r.status) for r in runs] == [(day, "failed"), (day, "matched")]
    assert runs[1].window_start == datetime(2001, 1, 1, tzinfo=UTC)
    assert runs[1].window_end == datetime(2001, 1, 2, tzinfo=UTC)
    # A finished day is not run again.
    assert reconcile_yesterday() == {"ledger_reconciled": 0}


def test_the_daily_job_waits_for_the_grace_after_midnight(app, db, clock, sandbox):
    from app.jobs import set_app
    from app.jobs.ledger import reconcile_yesterday

    set_app(app)
    clock.set(datetime(2001, 1, 2, 0, 10, tzinfo=UTC))
    assert ledger_reconcile.due_days(db, now=clock.now()) == []
    assert reconcile_yesterday() == {"ledger_reconciled": 0}
    clock.set(datetime(2001, 1, 2, 0, 0, tzinfo=UTC) + ledger_reconcile.RECONCILE_GRACE)
    assert ledger_reconcile.due_days(db, now=clock.now()) == [date(2001, 1, 1)]


def test_an_interrupted_run_is_closed_and_run_again(db, clock, sandbox):
    clock.set(datetime(2001, 1, 2, 3, 0, tzinfo=UTC))
    stuck = LedgerReconciliation(day=date(2001, 1, 1), window_start=datetime(2001, 1, 1, tzinfo=UTC),
                                 window_end=datetime(2001, 1, 2, tzinfo=UTC), status="running",
                                 started_at=clock.now() - timedelta(minutes=5))
    db.add(stuck)
    db.commit()
    try:
        ledger_reconcile.reconcile_day(db, day=date(2001, 1, 1), now=clock.now())
    except ledger_reconcile.AlreadyRunning as running:
        assert running.run.id == stuck.id
    else:
        raise AssertionError("a run started 5 minutes ago is still running")
    clock.advance(ledger_reconcile.STALE_RUNNING)
    run = ledger_reconcile.reconcile_day(db, day=date(2001, 1, 1), now=clock.now())
    assert run.status == "matched"
    db.refresh(stuck)
    assert (stuck.status, stuck.error) == ("failed", "interrupted")
