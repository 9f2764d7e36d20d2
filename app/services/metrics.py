"""The Prometheus exposition behind ``GET /admin/metrics`` (prometheus_client).

Two kinds of metric, chosen so that several gunicorn workers answer the same numbers:

- State, computed at scrape time from PostgreSQL and Redis (``app/services/ops.py``): queue
  depth and the age of each queue's oldest job, scheduled/running/failed jobs, payment attempts
  by status and outcome, captures and refunds, the Stripe webhook backlog, the audit chain's
  lag, the last sweep. Whichever worker answers the scrape reads the same database and Redis,
  so these need no sharing between processes.
- Request latency, observed in each web process (``observe_request``, called by the hook in
  ``app/blueprints/ops``): a histogram by endpoint and status class. With
  ``PROMETHEUS_MULTIPROC_DIR`` set (an empty, writable directory, emptied before gunicorn
  starts), prometheus_client's multiprocess mode keeps every worker's histogram in files there
  and the scrape sums them, whichever worker answers. Without it each process keeps its own
  histogram and a scrape sees only the process that answered (fine for one process: the dev
  server, the tests).

A source that cannot be read (Redis or PostgreSQL away) drops its metrics from the scrape and
says so in ``clinic_metrics_source_up{source=...}``; the rest still answer. No metric carries PHI:
labels are endpoints, queue purposes, statuses and outcomes.
"""
from __future__ import annotations

import logging
import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis import Redis
from sqlalchemy.orm import Session

from app.services import audit, ops

log = logging.getLogger("app.metrics")
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Registered in no registry: each scrape builds its own (below), so several apps in one
# process (the tests) never register a name twice.
REQUEST_LATENCY = Histogram(
    "clinic_http_request_duration_seconds",
    "Time to build the response (streamed bodies excluded), by endpoint and status class",
    ["endpoint", "status_class"], registry=None,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def observe_request(endpoint: str | None, status: int, seconds: float) -> None:
    REQUEST_LATENCY.labels(endpoint=endpoint or "unmatched", status_class=f"{status // 100}xx").observe(seconds)


def process_registry() -> CollectorRegistry:
    """The request histogram: every worker's (multiprocess mode), or this process's own."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUEST_LATENCY)
    return registry


class StateCollector:
    """The scrape-time state of the deployment, read once per scrape."""

    def __init__(self, session: Session, conn: Redis, namespace: str, known_queues: tuple[str, ...]):
        self.session, self.conn, self.namespace, self.known = session, conn, namespace, known_queues

    def collect(self):
        up = GaugeMetricFamily("clinic_metrics_source_up", "1 when the source could be read for this scrape",
                               labels=["source"])
        families = []
        for source, read in (("redis", self._redis), ("database", self._database)):
            try:
                families.extend(read())
            except Exception as error:     # the text of a driver error may carry parameters: type only
                log.warning("metrics: %s unreadable (%s)", source, type(error).__name__)
                if source == "database":
                    self.session.rollback()
                up.add_metric([source], 0)
            else:
                up.add_metric([source], 1)
        yield up
        yield from families

    def _redis(self):
        depth = GaugeMetricFamily("clinic_queue_depth", "Jobs waiting in the queue", labels=["queue"])
        age = GaugeMetricFamily("clinic_queue_oldest_job_age_seconds",
                                "Seconds the job at the head of the queue has waited (0 when empty)",
                                labels=["queue"])
        scheduled = GaugeMetricFamily("clinic_queue_scheduled_jobs",
                                      "Jobs waiting for their time (scheduled, or a retry's delay)", labels=["queue"])
        started = GaugeMetricFamily("clinic_queue_started_jobs", "Jobs running now", labels=["queue"])
        failed = GaugeMetricFamily("clinic_queue_failed_jobs", "Jobs in the failed registry (retries used up)",
                                   labels=["queue"])
        for stats in ops.queue_stats(self.conn, self.namespace, self.known):
            depth.add_metric([stats.name], stats.depth)
            age.add_metric([stats.name], stats.oldest_age or 0.0)
            scheduled.add_metric([stats.name], stats.scheduled)
            started.add_metric([stats.name], stats.started)
            failed.add_metric([stats.name], stats.failed)
        sweep = GaugeMetricFamily("clinic_sweep_last_finished_timestamp_seconds",
                                  "Unix time the last periodic sweep finished (absent: none yet)")
        stamp = ops.last_sweep(self.conn, self.namespace)
        if stamp is not None:
            sweep.add_metric([], stamp.at.timestamp())
        return [depth, age, scheduled, started, failed, sweep]

    def _database(self):
        money = ops.payment_outcomes(self.session)
        attempts = GaugeMetricFamily("clinic_payment_attempts", "Payment attempts by status", labels=["status"])
        for status, count in sorted(money.attempts.items()):
            attempts.add_metric([status], count)
        outcomes = GaugeMetricFamily("clinic_payment_attempt_outcomes",
                                     "Payment attempts by outcome, where one was recorded", labels=["outcome"])
        for outcome, count in sorted(money.outcomes.items()):
            outcomes.add_metric([outcome], count)
        captures = CounterMetricFamily("clinic_payment_captures", "Payment attempts captured",
                                       value=money.captures)
        captured = CounterMetricFamily("clinic_payment_captured_cents", "Money captured, in cents",
                                       value=money.captured_cents)
        refunds = GaugeMetricFamily("clinic_refunds", "Refunds by status", labels=["status"])
        for status, count in sorted(money.refunds.items()):
            refunds.add_metric([status], count)
        refunded = GaugeMetricFamily("clinic_refunded_cents", "Money refunded (refunds succeeded), in cents",
                                     value=money.refunded_cents)

        backlog = ops.webhook_backlog(self.session)
        webhooks = GaugeMetricFamily("clinic_stripe_events_unprocessed", "Stored Stripe events not yet processed",
                                     value=backlog.unprocessed)
        webhook_age = GaugeMetricFamily("clinic_stripe_event_oldest_unprocessed_age_seconds",
                                        "Seconds since the oldest unprocessed Stripe event was received (0: none)",
                                        value=backlog.oldest_age or 0.0)
        webhook_failing = GaugeMetricFamily("clinic_stripe_events_failing",
                                            "Unprocessed Stripe events that failed at least once",
                                            value=backlog.failing)

        lag = audit.lag(self.session)
        unlinked = GaugeMetricFamily("clinic_audit_unlinked_rows", "Committed audit rows not yet linked into the chain",
                                     value=lag.unlinked)
        lag_age = GaugeMetricFamily("clinic_audit_oldest_unlinked_age_seconds",
                                    "Seconds since the oldest unlinked audit row occurred (0: none)",
                                    value=lag.oldest_age or 0.0)
        self.session.rollback()          # read-only: end the transaction the reads began
        return [attempts, outcomes, captures, captured, refunds, refunded, webhooks, webhook_age, webhook_failing,
                unlinked, lag_age]


def exposition(session: Session, conn: Redis, namespace: str, known_queues: tuple[str, ...] = ("default",)) -> bytes:
    """The text exposition: this deployment's state plus the request histogram."""
    registry = process_registry()
    registry.register(StateCollector(session, conn, namespace, known_queues))
    return generate_latest(registry)
