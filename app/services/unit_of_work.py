"""After-commit hooks: side effects that leave the process run only once the
transaction that caused them has committed (and never if it rolled back)."""
from __future__ import annotations

import logging

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
_KEY = "after_commit"


def after_commit(session: Session, fn, *args, **kwargs) -> None:
    session.info.setdefault(_KEY, []).append((fn, args, kwargs))


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    hooks = session.info.pop(_KEY, [])
    for fn, args, kwargs in hooks:
        try:
            fn(*args, **kwargs)
        except Exception:  # a failed side effect must not undo a committed change
            log.exception("after-commit hook %s failed", getattr(fn, "__qualname__", fn))


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(_KEY, None)
