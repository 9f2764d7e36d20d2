"""The periodic sweep: the database, not Redis, says what is due.

worker.py enqueues ``sweep`` every SWEEP_INTERVAL. Each capability adds its
own step; every step is safe to run twice:

- release expired holds (their jobs may have been lost);
- process stored but unprocessed Stripe events; capture confirmed bookings'
  authorizations still uncaptured;
- re-enqueue due, unsent notifications;
- send refunds stored but never confirmed by Stripe (same idempotency key);
- claims (issue 15): send drafts due, poll remittances when REMITTANCE_POLL_INTERVAL has passed,
  reconcile answered claims a lost job left (app/jobs/claims.py sweep_claims);
- enqueue the day-before eligibility recheck of hybrid visits starting within
  ELIGIBILITY_RECHECK_BEFORE (app/jobs/eligibility.py);
- money (issue 16, app/jobs/money.py): the payout tick (ledger catch-up, splits, transfers and
  reversals), the weekly payouts when due, the dispute poll every DISPUTE_POLL_INTERVAL, the ledger's
  daily reconciliation;
- raise T-window alerts a lost job never raised, settle ones left open;
- the waitlist (issue 17, app/jobs/waitlist.py): expire offers not taken in time and offer their
  slot to the next patients, end entries whose last day passed;
- link committed audit rows into the chain (the sequencer; app.jobs.audit.link
  also runs it every AUDIT_LINK_INTERVAL), log the lag, and, when due
  (AUDIT_ANCHOR_INTERVAL / AUDIT_ANCHOR_ROWS), anchor the chain's head (the last
  link) outside the database: a line in the append-only AUDIT_ANCHOR_PATH and the log;
- stamp its end and counts in Redis (``<REDIS_NAMESPACE>:ops:last_sweep``) for the
  admin ops page and /admin/metrics.
"""
import logging

from flask import current_app

from app.jobs import job_session
from app.services import audit

log = logging.getLogger("app.audit")


def sweep() -> dict:
    from app.jobs.booking import sweep_expired_holds
    from app.jobs.card_setups import sweep_card_setups
    from app.jobs.notifications import sweep_notifications
    from app.jobs.payments import sweep_payments
    from app.jobs.refunds import resume_unsent
    from app.jobs.twindow import sweep_alerts
    from app.jobs.visit_charges import sweep_visit_charges

    released = sweep_expired_holds()
    paid = sweep_payments()
    paid.update(sweep_card_setups())        # post-visit card setups (counts only when something happened)
    paid.update(sweep_visit_charges())      # post-visit charges: retries, escalations, instalments due
    messages = sweep_notifications()
    alerts = sweep_alerts()
    refunds = resume_unsent()
    from app.jobs.waitlist import sweep_waitlist

    paid.update(sweep_waitlist())              # the waitlist: expired offers go to the next patient
    from app.jobs.claims import sweep_claims

    paid.update(sweep_claims())                # hybrid claims: drafts to send, the poll, reconciliations
    from app.jobs.eligibility import sweep_eligibility_rechecks

    rechecks = sweep_eligibility_rechecks()     # day-before eligibility checks, one job each
    if rechecks:
        paid["eligibility_rechecks"] = rechecks
    from app.jobs.money import sweep_money

    paid.update(sweep_money())                  # payouts, weekly payouts, the dispute poll, the ledger's day
    from app.jobs.fhir import sweep_exports

    paid.update(sweep_exports())                # FHIR bulk exports whose job was lost (issue 17)
    with job_session() as session:
        _link_and_report(session)
        head = audit.head(session)
        anchor_due(session)
        session.commit()
        result = {"audit_head": head[0] if head else None, "holds_released": released, "messages": messages,
                  "alerts": alerts, "refunds": refunds, **paid}
        _stamp(result)
    return result


def _stamp(result: dict) -> None:
    """The last sweep's time and counts, for the ops page and /admin/metrics (app.services.ops)."""
    from app.jobs import redis_connection
    from app.services import ops

    try:
        ops.record_sweep(redis_connection(), current_app.config["SETTINGS"].REDIS_NAMESPACE, result)
    except Exception as error:      # Redis away: the sweep's work is done; only the stamp is missed
        log.warning("could not stamp the sweep's end (%s)", type(error).__name__)


def anchor_due(session):
    """After linking: append the chain head to the anchor file (and the log) when due. A failure to
    write it (disk full, a file that is not append-only-writable) is logged, never fatal to the
    job: the links are already committed, and the next run anchors again."""
    settings = current_app.config["SETTINGS"]
    try:
        return audit.anchor_if_due(session, settings.audit_anchor_path, interval=settings.AUDIT_ANCHOR_INTERVAL,
                                   rows=settings.AUDIT_ANCHOR_ROWS)
    except OSError as error:
        log.error("could not write the audit anchor to %s (%s)", settings.audit_anchor_path, type(error).__name__)
        return None


def _link_and_report(session) -> None:
    """Link what is committed; warn when the chain was further behind than its bound."""
    settings = current_app.config["SETTINGS"]
    before = audit.lag(session)
    linked = audit.link_all(session)
    after = audit.lag(session)
    log.info("audit linked %s rows; before: %s; after: %s", linked, before, after)
    bound = (settings.SWEEP_INTERVAL + settings.AUDIT_LINK_INTERVAL).total_seconds()
    if before.oldest_age is not None and before.oldest_age > bound:
        log.warning("audit chain lag %.1fs exceeded its bound of %.0fs (%s)", before.oldest_age, bound, before)
    if after.oldest_age is not None and after.oldest_age > settings.AUDIT_LINK_INTERVAL.total_seconds():
        log.warning("audit rows left unlinked (%s): run `flask audit verify`", after)
