"""Time as a dependency: services take a clock (or ``now``), never call
``datetime.now()`` themselves, so tests can freeze and advance it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, at: datetime):
        self._now = at.astimezone(timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, at: datetime) -> None:
        self._now = at.astimezone(timezone.utc)
