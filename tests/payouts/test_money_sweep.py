"""The money step of the periodic sweep (app/jobs/money.py): the weekly payout is due once the week's moment
has passed and an enabled account has no payout for the week; the dispute poll runs at most once per
DISPUTE_POLL_INTERVAL however many sweeps run; a sweep with nothing to do moves nothing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from app.jobs import money
from app.models import ProviderAccount, ProviderPayout
from app.services import payouts

UTC = timezone.utc


def test_the_weeks_payout_moment_is_its_weekday_at_its_hour():
    wednesday = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)
    assert payouts.weekly_payout_moment(wednesday, weekday=0, hour=6) == datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert payouts.weekly_payout_moment(wednesday, weekday=4, hour=18) == datetime(2026, 12, 4, 18, tzinfo=UTC)
    sunday_night = datetime(2026, 12, 6, 23, 59, tzinfo=UTC)          # still the same ISO week
    assert payouts.weekly_payout_moment(sunday_night, weekday=0, hour=6) == datetime(2026, 11, 30, 6, tzinfo=UTC)


def test_the_weekly_payout_is_due_after_the_moment_until_every_enabled_account_has_its_row(db, app, provider):
    settings = app.config["SETTINGS"]
    account = ProviderAccount(provider_id=provider.id, stripe_account_id="acct_sweep_test", status="enabled")
    db.add(account)
    db.commit()
    moment = payouts.weekly_payout_moment(datetime(2026, 12, 9, tzinfo=UTC), weekday=settings.PAYOUT_WEEKDAY,
                                          hour=settings.PAYOUT_HOUR)
    assert not payouts.weekly_due(db, now=moment - timedelta(minutes=1))
    assert payouts.weekly_due(db, now=moment)
    db.add(ProviderPayout(provider_account_id=account.id, period=payouts.period_of(moment), status="nothing"))
    db.commit()
    assert not payouts.weekly_due(db, now=moment + timedelta(hours=1))
    assert payouts.weekly_due(db, now=moment + timedelta(days=7))          # next week: a new row is due
    account.status = "restricted"
    db.commit()
    assert not payouts.weekly_due(db, now=moment + timedelta(days=7))      # only enabled accounts are paid


def test_the_dispute_poll_runs_once_per_interval_whatever_the_number_of_sweeps(app, db):
    from app.jobs import redis_connection

    settings = app.config["SETTINGS"]
    key = f"{settings.REDIS_NAMESPACE}:dispute-poll"
    redis_connection().delete(key)
    with app.app_context():
        assert money._poll_due("dispute-poll", 60)
        assert not money._poll_due("dispute-poll", 60)
    assert 0 < redis_connection().ttl(key) <= 60
    redis_connection().delete(key)


def test_a_sweep_with_nothing_to_do_moves_nothing(app, db, sandbox):
    from app.jobs import set_app

    set_app(app)
    with app.app_context():
        result = money.sweep_money()
    assert not any(key.startswith(("payouts_", "weekly_payouts_")) for key in result)
    assert db.scalars(select(ProviderPayout)).all() == []
