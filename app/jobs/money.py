"""The money step of the periodic sweep (issue 16): what the database says is due, each safe to run twice.

- the payout tick (app/jobs/payouts.py ``tick``): the ledger's catch-up, splits of money that became
  final, transfers and reversals due, and anything a crash left ``creating``;
- the weekly payouts once the week's moment (PAYOUT_WEEKDAY, PAYOUT_HOUR UTC) has passed and an enabled
  account has no payout row for the week (one payout per account and ISO week);
- the dispute poll every DISPUTE_POLL_INTERVAL (a lost ``charge.dispute.*`` webhook), timed by a Redis key
  (Redis lost: the poll simply runs again);
- the ledger's daily reconciliation (app/jobs/ledger.py): the day before, once, and any recent day
  whose run failed.

A step that fails is logged and left to the next sweep; the others still run.
"""
from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app

from app.jobs import job_session, now as _now, redis_connection

log = logging.getLogger(__name__)


def sweep_money() -> dict:
    from app.jobs import disputes as dispute_jobs, ledger as ledger_jobs, payouts as payout_jobs
    from app.services import payouts

    out: dict = {}
    steps = [("payouts", payout_jobs.tick)]
    with job_session() as session:
        weekly = payouts.weekly_due(session, now=_now())
        session.rollback()
    if weekly:
        steps.append(("weekly_payouts", payout_jobs.weekly_payouts))
    if _poll_due("dispute-poll", current_app.config["SETTINGS"].DISPUTE_POLL_INTERVAL.total_seconds()):
        steps.append(("disputes", dispute_jobs.poll))
    steps.append(("ledger", ledger_jobs.reconcile_yesterday))
    for name, step in steps:
        try:
            result = step()
        except Exception:
            log.exception("money sweep: %s failed; the next sweep tries again", name)
            continue
        for key, value in (result or {}).items():
            if value and isinstance(value, int) and not isinstance(value, bool):
                out[key if key.startswith(f"{name}_") else f"{name}_{key}"] = value
    return out


def _poll_due(name: str, interval: float) -> bool:
    """True at most once per ``interval`` across workers (a Redis key with that expiry); True when Redis
    is away (polling twice is harmless)."""
    settings = current_app.config["SETTINGS"]
    try:
        return bool(redis_connection().set(f"{settings.REDIS_NAMESPACE}:{name}", datetime.now().isoformat(),
                                           nx=True, ex=max(1, int(interval))))
    except Exception as error:
        log.warning("money sweep: Redis unavailable for %s (%s)", name, type(error).__name__)
        return True
