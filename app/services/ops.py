"""What the operators look at: the worker's queues, its failed jobs, the last sweep, the audit
chain's lag and the Stripe webhook backlog. Read by the admin ops page (``/admin/ops``) and, at
scrape time, by the Prometheus exposition (``app/services/metrics.py``).

No PHI leaves this module: a failed job is described by its id, queue, function name, failure
time and the *type* of its exception. A job's arguments, its description (which repeats them),
the exception's message and the traceback may carry PHI and are never read out.

Queues are the deployment's own (``<REDIS_NAMESPACE>:<purpose>``, ``app.jobs``); a job id given
to ``retry_failed`` / ``delete_failed`` must be in the failed registry of one of them.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import PaymentAttempt, Refund, StripeEvent

SWEEP_KEY = "ops:last_sweep"          # under the namespace: <REDIS_NAMESPACE>:ops:last_sweep
_EXC_TYPE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


# -- queues and failed jobs ----------------------------------------------------------------------

@dataclass(frozen=True)
class QueueStats:
    name: str                      # the purpose, without the namespace ("default")
    depth: int                     # jobs waiting to run
    oldest_age: float | None       # seconds the job at the head has been queued; None when empty
    scheduled: int                 # jobs waiting for their time (enqueue_at/in, retries' delays)
    started: int                   # jobs running now
    failed: int                    # jobs in the failed registry (retries used up)


@dataclass(frozen=True)
class FailedJob:
    id: str
    queue: str
    function: str
    failed_at: datetime | None
    exception: str                 # the exception's type only ("ValueError"); never its message


def queues(conn: Redis, namespace: str, known: tuple[str, ...] = ("default",)) -> list[Queue]:
    """This deployment's queues: the ones it declares plus any other RQ knows under its namespace."""
    prefix = f"{namespace}:"
    names = {f"{prefix}{name}" for name in known}
    names.update(q.name for q in Queue.all(connection=conn) if q.name.startswith(prefix))
    return [Queue(name, connection=conn) for name in sorted(names)]


def _purpose(queue: Queue, namespace: str) -> str:
    return queue.name[len(namespace) + 1:]


def _oldest_age(queue: Queue, now: float) -> float | None:
    for job_id in queue.get_job_ids(0, 5):          # the head; a deleted job's id may linger
        try:
            job = Job.fetch(job_id, connection=queue.connection)
        except NoSuchJobError:
            continue
        if job.enqueued_at is not None:
            return max(0.0, now - job.enqueued_at.timestamp())
    return None


def queue_stats(conn: Redis, namespace: str, known: tuple[str, ...] = ("default",)) -> list[QueueStats]:
    now = time.time()
    return [QueueStats(name=_purpose(q, namespace), depth=q.count, oldest_age=_oldest_age(q, now),
                       scheduled=q.scheduled_job_registry.count, started=q.started_job_registry.count,
                       failed=q.failed_job_registry.count)
            for q in queues(conn, namespace, known)]


def exception_type(exc_string: str | None) -> str:
    """The exception's type from a traceback's last line; never the message after it."""
    lines = [line for line in (exc_string or "").strip().splitlines() if line.strip()]
    match = _EXC_TYPE.match(lines[-1].strip()) if lines else None
    return match.group(1) if match else "unknown"


def _describe(job: Job, purpose: str) -> FailedJob:
    result = job.latest_result()
    return FailedJob(id=job.id, queue=purpose, function=job.func_name or "?",
                     failed_at=job.ended_at.astimezone(timezone.utc) if job.ended_at else None,
                     exception=exception_type(result.exc_string if result else None))


def failed_jobs(conn: Redis, namespace: str, *, limit: int = 50,
                known: tuple[str, ...] = ("default",)) -> list[FailedJob]:
    """The most recently failed jobs of every queue, newest first (at most ``limit``)."""
    found = []
    for queue in queues(conn, namespace, known):
        purpose = _purpose(queue, namespace)
        for job_id in queue.failed_job_registry.get_job_ids(0, limit - 1, desc=True):
            try:
                found.append(_describe(Job.fetch(job_id, connection=conn), purpose))
            except NoSuchJobError:
                continue
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    found.sort(key=lambda job: job.failed_at or epoch, reverse=True)
    return found[:limit]


class JobNotFound(LookupError):
    """No failed job by that id in this deployment's queues (already retried or deleted)."""


def find_failed(conn: Redis, namespace: str, job_id: str,
                known: tuple[str, ...] = ("default",)) -> tuple[Queue, Job, FailedJob]:
    for queue in queues(conn, namespace, known):
        if job_id in queue.failed_job_registry:
            try:
                job = Job.fetch(job_id, connection=conn)
            except NoSuchJobError:
                break
            return queue, job, _describe(job, _purpose(queue, namespace))
    raise JobNotFound(job_id)


def retry_failed(queue: Queue, job: Job) -> None:
    """Put a failed job back at the end of its queue (RQ's requeue: status queued, same id)."""
    queue.failed_job_registry.requeue(job)


def delete_failed(queue: Queue, job: Job) -> None:
    """Remove a failed job: from the registry, and its hash and results from Redis."""
    job.delete()


# -- the periodic sweep ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepStamp:
    at: datetime
    result: dict = field(default_factory=dict)     # the sweep's counts (no PHI: numbers only)

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.at.timestamp())


def record_sweep(conn: Redis, namespace: str, result: dict, at: float | None = None) -> None:
    """Stamp the end of a sweep (called by app.jobs.periodic.sweep). Kept without expiry."""
    conn.set(f"{namespace}:{SWEEP_KEY}", json.dumps({"at": at if at is not None else time.time(),
                                                     "result": result}, default=str))


def last_sweep(conn: Redis, namespace: str) -> SweepStamp | None:
    raw = conn.get(f"{namespace}:{SWEEP_KEY}")
    if not raw:
        return None
    data = json.loads(raw)
    return SweepStamp(at=datetime.fromtimestamp(float(data["at"]), timezone.utc), result=data.get("result") or {})


# -- the database's side --------------------------------------------------------------------------

@dataclass(frozen=True)
class WebhookBacklog:
    unprocessed: int               # stored Stripe events not yet processed
    oldest_age: float | None       # seconds since the oldest of them was received
    failing: int                   # of those, how many have failed at least once


def webhook_backlog(session: Session) -> WebhookBacklog:
    pending = StripeEvent.processed_at.is_(None)
    count, oldest, failing = session.execute(
        select(func.count(), func.min(StripeEvent.received_at),
               func.count().filter(StripeEvent.attempts > 0)).where(pending)).one()
    age = None
    if count and oldest is not None:
        age = max(0.0, time.time() - oldest.timestamp())
    return WebhookBacklog(count, age, failing)


@dataclass(frozen=True)
class PaymentOutcomes:
    attempts: dict[str, int]       # payment attempts by status (the mirror of the PaymentIntent)
    outcomes: dict[str, int]       # attempts by outcome (slot_lost, ...), where one is set
    captures: int                  # attempts captured
    captured_cents: int
    refunds: dict[str, int]        # refunds by status
    refunded_cents: int            # refunds succeeded


def payment_outcomes(session: Session) -> PaymentOutcomes:
    attempts = dict(session.execute(select(PaymentAttempt.status, func.count())
                                    .group_by(PaymentAttempt.status)).all())
    outcomes = dict(session.execute(select(PaymentAttempt.outcome, func.count())
                                    .where(PaymentAttempt.outcome.is_not(None))
                                    .group_by(PaymentAttempt.outcome)).all())
    captures, captured = session.execute(
        select(func.count(), func.coalesce(func.sum(PaymentAttempt.amount_captured_cents), 0))
        .where(PaymentAttempt.captured_at.is_not(None))).one()
    refunds = dict(session.execute(select(Refund.status, func.count()).group_by(Refund.status)).all())
    refunded = session.scalar(select(func.coalesce(func.sum(Refund.amount_cents), 0))
                              .where(Refund.status == "succeeded"))
    return PaymentOutcomes(attempts, outcomes, int(captures), int(captured), refunds, int(refunded))
