"""The domain. Services take a session, an actor and a clock; they never
import Flask's request globals and never commit: the view or job that called
them commits once, at the edge."""


class DomainError(Exception):
    """A rule of the domain said no; the caller shows ``str(error)`` to the user."""
