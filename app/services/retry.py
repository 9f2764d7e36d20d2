"""Retry a unit of work that PostgreSQL refused for a transient reason.

A deadlock (SQLSTATE 40P01) or a serialization failure (40001) aborts the
whole transaction, and PostgreSQL expects the client to run it again: nothing
it did was kept. ``retry_transient`` does that at the unit-of-work edge — the
function it is given runs one whole transaction, up to and including its
commit; after a transient error the session is rolled back (which also drops
the audit rows and the after-commit work the failed run asked for) and the
function runs again after a short jittered pause, a bounded number of times.
Any other error, or the last transient one, is raised to the caller (the web
edge answers 503, ``app/blueprints/errors.py``; a job fails and RQ or the
sweep runs it again).

Only wrap a function that starts from a clean session and ends with its
commit: never a step inside someone else's transaction.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
T = TypeVar("T")

DEADLOCK = "40P01"
SERIALIZATION_FAILURE = "40001"
TRANSIENT_SQLSTATES = frozenset({DEADLOCK, SERIALIZATION_FAILURE})
ATTEMPTS = 3
PAUSE = 0.05          # seconds before the first retry; doubled each time, with +-50% jitter


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE behind a SQLAlchemy (``.orig``) or psycopg error, following the cause chain."""
    seen = 0
    while error is not None and seen < 5:
        for candidate in (error, getattr(error, "orig", None)):
            code = getattr(candidate, "sqlstate", None)
            if code:
                return code
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def is_transient(error: BaseException) -> bool:
    return sqlstate(error) in TRANSIENT_SQLSTATES


def retry_transient(session: Session, fn: Callable[[], T], attempts: int = ATTEMPTS, *,
                    pause: float = PAUSE) -> T:
    """Run ``fn`` (one transaction, ending with its commit); after a deadlock or a serialization
    failure roll back and run it again, at most ``attempts`` times in all."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as error:
            if not is_transient(error):
                raise
            session.rollback()
            if attempt == attempts:
                log.warning("transient database error %s: giving up after %d attempts",
                            sqlstate(error), attempts)
                raise
            log.info("transient database error %s: retrying (attempt %d of %d)",
                     sqlstate(error), attempt + 1, attempts)
            time.sleep(pause * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")
