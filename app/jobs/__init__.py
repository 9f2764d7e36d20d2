"""Background work on RQ. Jobs are thin: load rows by id, call one service,
commit, let errors raise (RQ's retry and failed-job registry see them).

Jobs run in a forked work-horse: the SQLAlchemy pool inherited from the
parent is disposed (without closing the parent's connections) the first time
a job runs in a new process, so no connection is ever shared across processes.
Queues are named by purpose under the deployment's Redis namespace.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import datetime, timedelta

from flask import Flask, current_app, has_app_context
from redis import Redis
from rq import Queue

QUEUES = ("default",)
_app: Flask | None = None
_engine_pid: int | None = None


def set_app(app: Flask) -> None:
    """worker.py hands its app over, so forked jobs reuse it."""
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
def job_session():
    """An app context and its session for one job; the job commits itself."""
    from app.extensions import db

    app = _job_app()
    with app.app_context():
        try:
            yield db.session
        finally:
            db.session.remove()


def now() -> datetime:
    """The app's clock (a FrozenClock in tests), for jobs."""
    return current_app.extensions["clock"].now()


def redis_connection(app: Flask | None = None) -> Redis:
    app = app or current_app
    conn = app.extensions.get("redis")
    if conn is None:
        conn = app.extensions["redis"] = Redis.from_url(app.config["REDIS_URL"])
    return conn


def queue_name(name: str, app: Flask | None = None) -> str:
    app = app or current_app
    return f"{app.config['SETTINGS'].REDIS_NAMESPACE}:{name}"


def get_queue(name: str = "default", app: Flask | None = None) -> Queue:
    app = app or current_app
    return Queue(queue_name(name, app), connection=redis_connection(app))


def enqueue(fn, *args, queue: str = "default", **kwargs):
    """Enqueue now. Call it after the commit (``unit_of_work.after_commit``)."""
    return get_queue(queue).enqueue(fn, *args, **kwargs)


def enqueue_at(when: datetime, fn, *args, queue: str = "default", **kwargs):
    return get_queue(queue).enqueue_at(when, fn, *args, **kwargs)


def enqueue_in(delay: timedelta, fn, *args, queue: str = "default", **kwargs):
    return get_queue(queue).enqueue_in(delay, fn, *args, **kwargs)


def in_app_context() -> bool:
    return has_app_context()
