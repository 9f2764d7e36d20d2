"""The domain. Services take a session, an actor and a clock; they never
import Flask's request globals and never commit: the view or job that called
them commits once, at the edge."""
from sqlalchemy.exc import IntegrityError


class DomainError(Exception):
    """A rule of the domain said no; the caller shows ``str(error)`` to the user."""


def insert_or_existing(session, row, find):
    """Insert ``row`` in a savepoint; when a unique constraint says a concurrent request (another tab)
    inserted its twin a moment ago, return that one (``find()``) instead. Returns ``(row, inserted)``."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        found = find()
        if found is None:
            raise
        return found, False
    return row, True
