"""The daily reconciliation of the ledger with Stripe (issue 16).

Stripe's balance transactions are the truth of what moved at Stripe; the ledger's entries on the
accounts held at Stripe name them (app/services/ledger.py). ``reconcile`` compares the two over a
window of Stripe's clock (``created`` in ``[start, end)``, Unix seconds):

- **Stripe's side.** Every balance transaction created in the window, of the platform and of each
  connected account (providers' ProviderAccount rows with a ``stripe_account_id``, or the list
  given), all pages. For each one:
  - the entries on ``stripe_balance`` (a platform transaction) or on ``provider_stripe`` with that
    connected account (a connected one) naming it must sum to its ``net``; entries on any *other*
    at-Stripe account naming it must sum to 0 (``amount_differs``, named with that account);
  - the entries on the fee accounts (``stripe_fees``, ``dispute_fees``) naming it must sum to its
    ``fee`` (``fee_differs``);
  - no entry at all names it (and it moved money): ``missing_in_ledger`` (one mismatch, not two).
  A transaction without a mismatch counts as matched.
- **The ledger's side.** The balance transaction ids named by the entries of the ledger
  transactions whose ``occurred_at`` falls in the window (as UTC instants). An id Stripe did not
  list in the window is looked up by id (on the connected account its ``provider_stripe`` entry
  names, else the platform): a posting made late, or one whose ``occurred_at`` is not Stripe's
  ``created``, names a transaction of another day: it is compared like the others (its differences
  reported) but it is that day's to count. Only when Stripe has no such transaction is it
  ``missing_at_stripe``.
- **Balance.** Every ledger transaction whose entries do not sum to zero (the database refuses
  them at commit; an owner's hand edit can leave one): ``unbalanced``. This is not windowed: such
  a transaction is reported by every run until it is corrected.

Each mismatch is a dict ``{kind, balance_transaction, source, type, account, stripe_cents,
ledger_cents}`` (``unbalanced`` adds ``transaction_id`` and names the posting's kind as its type;
a connected account Stripe refuses to show is ``unreadable`` with the ``reason``): ids and cents
only, never a name or anything clinical.

The run is a LedgerReconciliation row: ``running`` -> ``matched`` | ``mismatched`` (the matched
count and the mismatches), or ``failed`` (Stripe unreachable: the reason, nothing else), written in
one go after everything was read, so no half result is ever stored. A mismatched run alerts the
clinic's admins once (an email each: a notification with only a link to the run's page) and is
audited (``ledger.reconciled``, ``ledger.reconciliation_failed``: ids and counts).

Entry points that commit (``reconcile_day``, ``reconcile_due``), like app/services/payout_accounts.py's
callers: the run is stored and committed before Stripe is asked, then the result is recorded and
committed; a failure rolls back what was read and records ``failed``. ``reconcile_due`` is the
daily job's: yesterday (UTC) once RECONCILE_GRACE has passed after its end, and again every day
of the last LOOKBACK_DAYS whose run failed or was interrupted.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.integrations.stripe_common import GatewayError, GatewayUnavailable
from app.models import User
from app.models.ledger import LedgerEntry, LedgerReconciliation, LedgerTransaction
from app.models.payouts import ProviderAccount
from app.services import audit, ledger, notifications
from app.services.audit import Actor

log = logging.getLogger(__name__)
UTC = timezone.utc

RECONCILE_GRACE = timedelta(hours=1)      # a UTC day is reconciled once this long after its end
LOOKBACK_DAYS = 7                         # failed / interrupted runs of these last days are run again
STALE_RUNNING = timedelta(minutes=30)     # a run still "running" after this was interrupted
ALERT_TEMPLATE = "ledger_mismatch"
KINDS = ("missing_in_ledger", "missing_at_stripe", "amount_differs", "fee_differs", "unbalanced", "unreadable")
KIND_WORDS = {
    "missing_in_ledger": "Stripe has it, the ledger does not",
    "missing_at_stripe": "The ledger names it, Stripe does not have it",
    "amount_differs": "Amount differs",
    "fee_differs": "Fee differs",
    "unbalanced": "Ledger transaction does not balance",
    "unreadable": "Stripe refused to show this account",
}
PLATFORM = ledger.STRIPE_BALANCE
_CHUNK = 2000


def kind_words(kind: str) -> str:
    return KIND_WORDS.get(kind, kind)


def _account_label(account: str | None) -> str:
    """Where a balance transaction lives, as the ledger names it: the platform's balance, or a
    provider's connected balance ``provider_stripe:<acct>``."""
    return f"{ledger.PROVIDER_STRIPE}:{account}" if account else PLATFORM


def _mismatch(kind: str, *, bt=None, bt_id: str | None = None, account: str | None = None,
              stripe_cents: int | None = None, ledger_cents: int | None = None, **extra) -> dict:
    found = {"kind": kind, "balance_transaction": bt.id if bt is not None else bt_id,
             "source": bt.source if bt is not None else None, "type": bt.type if bt is not None else None,
             "account": account, "stripe_cents": stripe_cents, "ledger_cents": ledger_cents}
    found.update(extra)
    return found


@dataclass
class _Named:
    """What the ledger says about one balance transaction: sums per at-Stripe account and on the fee
    accounts, and whether any entry names it."""
    at_stripe: dict
    fees: int = 0
    named: bool = False


def connected_accounts_of(session: Session) -> list[str]:
    """The providers' connected accounts (every ProviderAccount Stripe knows, whatever its status:
    a disabled account's past movements still count)."""
    return list(session.scalars(select(ProviderAccount.stripe_account_id)
                                .where(ProviderAccount.stripe_account_id.is_not(None))
                                .order_by(ProviderAccount.id)))


def _named(session: Session, bt_ids) -> dict[str, _Named]:
    """The ledger's sums per balance transaction id (entries on at-Stripe and fee accounts)."""
    out: dict[str, _Named] = defaultdict(lambda: _Named(at_stripe=defaultdict(int)))
    ids = sorted(set(bt_ids))
    for i in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(LedgerEntry.balance_transaction_id, LedgerEntry.account, LedgerEntry.stripe_account_id,
                   func.sum(LedgerEntry.amount_cents))
            .where(LedgerEntry.balance_transaction_id.in_(ids[i:i + _CHUNK]),
                   LedgerEntry.account.in_(ledger.AT_STRIPE + ledger.FEE_ACCOUNTS))
            .group_by(LedgerEntry.balance_transaction_id, LedgerEntry.account, LedgerEntry.stripe_account_id))
        for bt_id, account, stripe_account, total in rows:
            found = out[bt_id]
            found.named = True
            if account in ledger.FEE_ACCOUNTS:
                found.fees += int(total)
            elif account == ledger.PROVIDER_STRIPE:
                found.at_stripe[_account_label(stripe_account or "?")] += int(total)
            else:
                found.at_stripe[PLATFORM] += int(total)
    return out


def _compare(bt, named: _Named | None) -> list[dict]:
    """The mismatches of one Stripe balance transaction against what the ledger says of it."""
    own = _account_label(bt.account)
    if named is None or not named.named:
        if bt.net == 0 and bt.fee == 0:
            return []                     # nothing moved: nothing to post (ledger.post leaves 0 out)
        return [_mismatch("missing_in_ledger", bt=bt, account=own, stripe_cents=bt.net, ledger_cents=0)]
    found = []
    sums = dict(named.at_stripe)
    if sums.get(own, 0) != bt.net:
        found.append(_mismatch("amount_differs", bt=bt, account=own, stripe_cents=bt.net,
                               ledger_cents=sums.get(own, 0)))
    for label, total in sorted(sums.items()):
        if label != own and total != 0:
            found.append(_mismatch("amount_differs", bt=bt, account=label, stripe_cents=0, ledger_cents=total))
    if named.fees != bt.fee:
        found.append(_mismatch("fee_differs", bt=bt, account="fees", stripe_cents=bt.fee, ledger_cents=named.fees))
    return found


def _ledger_side(session: Session, start_at: datetime, end_at: datetime) -> dict[str, str | None]:
    """The balance transaction ids named by the ledger transactions that occurred in the window, each
    with the connected account its ``provider_stripe`` entry names (None: the platform's)."""
    rows = session.execute(
        select(LedgerEntry.balance_transaction_id, LedgerEntry.account, LedgerEntry.stripe_account_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.occurred_at >= start_at, LedgerTransaction.occurred_at < end_at,
               LedgerEntry.balance_transaction_id.is_not(None),
               LedgerEntry.account.in_(ledger.AT_STRIPE + ledger.FEE_ACCOUNTS))
        .distinct())
    out: dict[str, str | None] = {}
    for bt_id, account, stripe_account in rows:
        if account == ledger.PROVIDER_STRIPE and stripe_account:
            out[bt_id] = stripe_account
        else:
            out.setdefault(bt_id, None)
    return out


def _unbalanced(session: Session) -> list[dict]:
    ids = ledger.unbalanced_transactions(session)
    if not ids:
        return []
    rows = session.execute(
        select(LedgerTransaction.id, LedgerTransaction.kind, LedgerTransaction.stripe_object_id,
               func.coalesce(func.sum(LedgerEntry.amount_cents), 0))
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.id.in_(ids)).group_by(LedgerTransaction.id).order_by(LedgerTransaction.id))
    found = []
    for txn_id, kind, object_id, total in rows:
        bts = sorted(set(session.scalars(select(LedgerEntry.balance_transaction_id).where(
            LedgerEntry.transaction_id == txn_id, LedgerEntry.balance_transaction_id.is_not(None)))))
        found.append({"kind": "unbalanced", "balance_transaction": ", ".join(bts) or None, "source": object_id,
                      "type": kind, "account": None, "stripe_cents": None, "ledger_cents": int(total),
                      "transaction_id": txn_id})
    return found


def compare_window(session: Session, gw, *, start: int, end: int, connected_accounts=None) -> tuple[int, list[dict]]:
    """Read Stripe's and the ledger's side of ``[start, end)`` and compare them (nothing written).
    Returns ``(matched, mismatches)``. Raises the gateway's GatewayUnavailable when Stripe cannot be
    reached."""
    accounts = connected_accounts_of(session) if connected_accounts is None else list(connected_accounts)
    stripe_side = list(gw.balance_transactions(created=(start, end)))
    mismatches: list[dict] = []
    for account in dict.fromkeys(accounts):
        try:
            stripe_side.extend(gw.balance_transactions(account=account, created=(start, end)))
        except GatewayError as error:
            if isinstance(error, GatewayUnavailable):      # unreachable: the run fails
                raise
            mismatches.append(_mismatch("unreadable", account=_account_label(account), reason=str(error)[:200]))
    by_id = {bt.id: bt for bt in stripe_side}
    named = _named(session, by_id)
    matched = 0
    for bt in stripe_side:
        found = _compare(bt, named.get(bt.id))
        mismatches.extend(found)
        matched += not found
    start_at, end_at = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    elsewhere = {bt_id: account for bt_id, account in _ledger_side(session, start_at, end_at).items()
                 if bt_id not in by_id}
    if elsewhere:
        named_elsewhere = _named(session, elsewhere)
        for bt_id, account in sorted(elsewhere.items()):
            bt = gw.find_balance_transaction(bt_id, account=account)
            what = named_elsewhere.get(bt_id)
            if bt is None:
                label = _account_label(account)
                cents = (what.at_stripe.get(label, 0) or what.fees) if what is not None else 0
                mismatches.append(_mismatch("missing_at_stripe", bt_id=bt_id, account=label, stripe_cents=None,
                                            ledger_cents=cents))
            else:
                mismatches.extend(_compare(bt, what))
    mismatches.extend(_unbalanced(session))
    return matched, mismatches


def reconcile(session: Session, gw, *, start: int, end: int, day: date, connected_accounts=None,
              run: LedgerReconciliation | None = None, now: datetime | None = None,
              actor: Actor | None = None) -> LedgerReconciliation:
    """Compare the window and record the run (a new LedgerReconciliation, or ``run`` filled in):
    ``matched`` or ``mismatched`` with the mismatches; a mismatched run alerts the admins once.
    Does not commit. Stripe unreachable: the gateway's exception propagates and nothing is written
    (``reconcile_day`` records the failure)."""
    now = now or datetime.now(UTC)
    actor = actor or Actor.system("ledger")
    matched, mismatches = compare_window(session, gw, start=start, end=end, connected_accounts=connected_accounts)
    if run is None:
        run = LedgerReconciliation(day=day, window_start=datetime.fromtimestamp(start, UTC),
                                   window_end=datetime.fromtimestamp(end, UTC), started_at=now)
        session.add(run)
    run.status = "mismatched" if mismatches else "matched"
    run.matched = matched
    run.mismatches = mismatches
    run.error = None
    run.finished_at = now
    session.flush()
    counts: dict[str, int] = defaultdict(int)
    for m in mismatches:
        counts[m["kind"]] += 1
    audit.record(session, actor=actor, action="ledger.reconciled",
                 outcome="success" if not mismatches else "failure",
                 details={"reconciliation_id": run.id, "day": day.isoformat(), "status": run.status,
                          "matched": matched, "mismatches": dict(counts)})
    if mismatches:
        log.warning("ledger reconciliation %s of %s: %d mismatches (%s)", run.id, day.isoformat(),
                    len(mismatches), ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
        alert_admins(session, run, now=now)
    return run


def run_link(run: LedgerReconciliation) -> str:
    from app.services.gateway import settings

    return f"{settings().PUBLIC_BASE_URL.rstrip('/')}/admin/ledger/reconciliations/{run.id}"


def alert_admins(session: Session, run: LedgerReconciliation, *, now: datetime) -> int:
    """Tell every active admin, once per run, that the run found mismatches: an email with a link to
    the run's page (no PHI: the link's id only). Returns how many were told."""
    if run.alerted_at is not None:
        return 0
    admins = list(session.scalars(select(User).where(User.role == "admin", User.is_active_account.is_(True))
                                  .order_by(User.id)))
    if not admins:
        log.error("ledger reconciliation %s found mismatches and the clinic has no active admin to tell", run.id)
        return 0
    link = run_link(run)
    for user in admins:
        notifications.queue(session, dedupe_key=f"{ALERT_TEMPLATE}:{run.id}:{user.id}", template=ALERT_TEMPLATE,
                            user=user, scheduled_for=now, context={"link": link}, prefer="email")
    run.alerted_at = now
    return len(admins)


# -- the entry points (they commit) -----------------------------------------------------------------

def day_window(day: date) -> tuple[int, int]:
    """The UTC day as Unix seconds ``[00:00, 24:00)`` (Stripe's ``created``)."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return int(start.timestamp()), int((start + timedelta(days=1)).timestamp())


class AlreadyRunning(Exception):
    """A run of that day started moments ago and has not finished."""

    def __init__(self, run: LedgerReconciliation):
        super().__init__(f"reconciliation {run.id} of {run.day} is running")
        self.run = run


def _close_interrupted(session: Session, day: date, now: datetime) -> None:
    """Runs of the day left ``running`` longer than STALE_RUNNING (a crash) become ``failed``."""
    stale = session.scalars(select(LedgerReconciliation).where(
        LedgerReconciliation.day == day, LedgerReconciliation.status == "running",
        LedgerReconciliation.started_at < now - STALE_RUNNING).with_for_update(skip_locked=True)).all()
    for run in stale:
        run.status, run.error, run.finished_at = "failed", "interrupted", now


def reconcile_day(session: Session, *, day: date, now: datetime, actor: Actor | None = None,
                  connected_accounts=None) -> LedgerReconciliation:
    """Reconcile the UTC day ``day`` (Stripe's ``created`` in ``[00:00, 24:00)``). Commits: the run
    is stored ``running`` first, then Stripe is read, then the result (or ``failed`` with the reason)
    is recorded. Raises AlreadyRunning when a run of the day started less than STALE_RUNNING ago."""
    actor = actor or Actor.system("ledger")
    _close_interrupted(session, day, now)
    running = session.scalar(select(LedgerReconciliation).where(
        LedgerReconciliation.day == day, LedgerReconciliation.status == "running").limit(1))
    if running is not None:
        session.commit()
        raise AlreadyRunning(running)
    start, end = day_window(day)
    run = LedgerReconciliation(day=day, window_start=datetime.fromtimestamp(start, UTC),
                               window_end=datetime.fromtimestamp(end, UTC), status="running", matched=0,
                               mismatches=[], started_at=now)
    session.add(run)
    session.commit()                          # stored before Stripe is asked
    run_id = run.id
    from app.services.gateway import gateway

    try:
        reconcile(session, gateway(), start=start, end=end, day=day, connected_accounts=connected_accounts,
                  run=run, now=now, actor=actor)
    except GatewayError as error:
        session.rollback()                     # nothing of the half-read comparison is kept
        run = session.get(LedgerReconciliation, run_id)
        run.status, run.error, run.finished_at = "failed", str(error)[:255] or error.__class__.__name__, now
        run.matched, run.mismatches = 0, []
        audit.record(session, actor=actor, action="ledger.reconciliation_failed", outcome="failure",
                     details={"reconciliation_id": run_id, "day": day.isoformat(), "reason": run.error})
        log.warning("ledger reconciliation %s of %s failed: %s", run_id, day.isoformat(), run.error)
        session.commit()
        return run
    session.commit()
    return run


def latest_runs(session: Session, days=None) -> dict[date, LedgerReconciliation]:
    """The newest run of each day (of ``days``, or of every day)."""
    query = select(LedgerReconciliation).order_by(LedgerReconciliation.day, LedgerReconciliation.id)
    if days is not None:
        days = list(days)
        if not days:
            return {}
        query = query.where(LedgerReconciliation.day.in_(days))
    latest: dict[date, LedgerReconciliation] = {}
    for run in session.scalars(query):
        latest[run.day] = run
    return latest


def due_days(session: Session, *, now: datetime) -> list[date]:
    """The days the daily job reconciles now: yesterday (UTC) once RECONCILE_GRACE has passed since
    its end, unless it already has a finished run; and every day of the last LOOKBACK_DAYS whose
    newest run failed or was interrupted, or which was never run although an earlier day was (the
    worker was down)."""
    today = now.astimezone(UTC).date()
    days = [today - timedelta(days=n) for n in range(LOOKBACK_DAYS, 0, -1)]
    latest = latest_runs(session, days)
    first = session.scalar(select(func.min(LedgerReconciliation.day)))
    due = []
    for day in days:
        if now < datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC) + RECONCILE_GRACE:
            continue
        run = latest.get(day)
        if run is None:
            if day == today - timedelta(days=1) or (first is not None and day > first):
                due.append(day)
        elif run.status == "failed" or (run.status == "running" and run.started_at < now - STALE_RUNNING):
            due.append(day)
    return due


def reconcile_due(session: Session, *, now: datetime, actor: Actor | None = None) -> list[LedgerReconciliation]:
    """The daily job's work (``due_days``), oldest day first. Commits (``reconcile_day``)."""
    runs = []
    for day in due_days(session, now=now):
        try:
            runs.append(reconcile_day(session, day=day, now=now, actor=actor))
        except AlreadyRunning:
            continue
    return runs
