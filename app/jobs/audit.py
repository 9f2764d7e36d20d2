"""The audit chain's sequencer as a job: append links for committed audit rows.

``link`` is enqueued every AUDIT_LINK_INTERVAL by ``ticker`` (a thread the worker
starts beside its sweep ticker); the periodic sweep links too, so the chain never
falls more than SWEEP_INTERVAL behind even without the ticker. Running it twice,
or from two workers at once, is safe: the sequencer's advisory lock serializes
them and the second finds nothing left to link.
"""
from __future__ import annotations

import logging
import threading

from flask import Flask

from app.jobs import get_queue, job_session
from app.services import audit

log = logging.getLogger("app.audit")


def link() -> int:
    """Link every committed, unlinked audit row (in batches); return how many were linked. Then
    anchor the head outside the database when due (AUDIT_ANCHOR_INTERVAL / AUDIT_ANCHOR_ROWS)."""
    from app.jobs.periodic import anchor_due

    with job_session() as session:
        linked = audit.link_all(session)
        anchor_due(session)
        session.commit()
        return linked


def ticker(app: Flask, stop: threading.Event) -> None:
    """Enqueue ``link`` every AUDIT_LINK_INTERVAL until ``stop`` is set (a daemon thread of worker.py)."""
    interval = app.config["SETTINGS"].AUDIT_LINK_INTERVAL.total_seconds()
    while not stop.wait(interval):
        try:
            with app.app_context():
                get_queue("default", app).enqueue(link, result_ttl=0, ttl=max(interval * 2, 30))
        except Exception:   # Redis briefly away: the next tick, or the sweep, links
            log.exception("could not enqueue the audit link job")
