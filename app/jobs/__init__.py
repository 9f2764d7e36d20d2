"""Background work on RQ. Jobs are thin: load rows by id, call one service,
commit, let errors raise (RQ's retry and failed-job registry see them). Every
job enqueued here carries a Retry policy (JOB_RETRY_DELAYS), so a job failed by
a PostgreSQL outage runs again; jobs are safe to run twice.

worker.py runs jobs in its own process (RQ's SimpleWorker, no fork per job),
or in each process of a worker pool. A process that did not open the app's
SQLAlchemy pool itself (a pool child, forked from the process that built the
app) disposes the inherited pool, without closing the parent's connections,
the first time it runs a job, so no connection is ever shared across processes.
Queues are named by purpose under the deployment's Redis namespace.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from datetime import datetime, timedelta

from flask import Flask, current_app, has_app_context
from rq import Queue, Retry

from app.queues import QUEUES, queue_name, redis_connection  # noqa: F401 (the queues live there)
_app: Flask | None = None
_engine_pid: int | None = None


def set_app(app: Flask) -> None:
    """worker.py hands its app over, so jobs (and pool children) reuse it."""
    global _app, _engine_pid
    _app, _engine_pid = app, os.getpid()


def _job_app() -> Flask:
    global _engine_pid
    if _app is None:
        from app import create_app

        set_app(create_app())
    if _engine_pid != os.getpid():
        from app.extensions import db

        with _app.app_context():
            db.engine.dispose(close=False)
        _engine_pid = os.getpid()
    return _app


@contextmanager
def job_context():
    """The app context one job runs in: worker.py runs every job inside one, so a job (or what
    it calls) may use ``current_app``; this process's own connection pool, as in job_session."""
    app = _job_app()
    with app.app_context():
        yield app


@contextmanager
def job_session():
    """An app context and its session for one job; the job commits itself."""
    from app.extensions import db

    with job_context():
        try:
            yield db.session
        finally:
            db.session.remove()


def now() -> datetime:
    """The app's clock (a FrozenClock in tests), for jobs."""
    return current_app.extensions["clock"].now()


def get_queue(name: str = "default", app: Flask | None = None) -> Queue:
    app = app or current_app
    return Queue(queue_name(name, app), connection=redis_connection(app))


def default_retry(app: Flask | None = None) -> Retry | None:
    """The Retry every job gets unless it names its own: JOB_RETRY_DELAYS (seconds), one try each."""
    delays = list((app or current_app).config["SETTINGS"].JOB_RETRY_DELAYS)
    return Retry(max=len(delays), interval=delays) if delays else None


def _with_retry(kwargs: dict) -> dict:
    if "retry" not in kwargs:
        kwargs["retry"] = default_retry()
    return kwargs


def enqueue(fn, *args, queue: str = "default", **kwargs):
    """Enqueue now. Call it after the commit (``unit_of_work.after_commit``)."""
    return get_queue(queue).enqueue(fn, *args, **_with_retry(kwargs))


def enqueue_at(when: datetime, fn, *args, queue: str = "default", **kwargs):
    return get_queue(queue).enqueue_at(when, fn, *args, **_with_retry(kwargs))


def enqueue_in(delay: timedelta, fn, *args, queue: str = "default", **kwargs):
    return get_queue(queue).enqueue_in(delay, fn, *args, **_with_retry(kwargs))


def probe(key: str, seconds: float = 0, db: bool = False) -> int:
    """A job for health checks and the worker tests: appends ``start:<pid>`` to the Redis list
    ``key``, waits ``seconds`` (in PostgreSQL, ``pg_sleep``, when ``db``), appends ``done:<pid>``
    and returns the pid of the process that ran it. Safe to run twice; touches no row."""
    from rq import get_current_job
    from sqlalchemy import text

    conn = get_current_job().connection
    pid = os.getpid()
    conn.rpush(key, f"start:{pid}")
    if db:
        with job_session() as session:
            session.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
    elif seconds:
        time.sleep(seconds)
    conn.rpush(key, f"done:{pid}")
    return pid


def in_app_context() -> bool:
    return has_app_context()
