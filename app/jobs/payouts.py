"""Provider payout jobs (issue 16): thin callers of ``app.services.payouts``.

- ``tick`` from every sweep (app/jobs/money.py): the ledger's catch-up, splits of money that
  became final, the transfers and reversals due (stored, then sent), anything a crash or an outage left
  ``creating`` (found at Stripe by its UUID, or sent again with its key);
- ``weekly_payouts`` weekly (from the sweep once PAYOUT_WEEKDAY, PAYOUT_HOUR UTC has passed): each enabled account's available
  balance paid out, once per account and ISO week;
- ``send_pending`` after a commit that stored transfers or reversals (a dispute opened or won).

The services commit between "stored" and "sent" (like settlement.py); a job only loads, calls and returns
the counts. Each is safe to run twice.
"""
from __future__ import annotations

from app.jobs import job_session
from app.jobs import now as _now
from app.services import payouts
from app.services.audit import Actor

JOB = Actor.system("job")


def tick() -> dict:
    with job_session() as session:
        return payouts.tick(session, now=_now(), actor=JOB)


def weekly_payouts() -> dict:
    with job_session() as session:
        return payouts.weekly_payouts(session, now=_now(), actor=JOB)


def send_pending() -> dict:
    with job_session() as session:
        return payouts.send_pending(session, now=_now(), actor=JOB)
