"""The availability engine: which appointment slots a provider can offer.

Pure functions over plain data. Nothing here touches the database, Flask or
the clock: callers load a :class:`ProviderSchedule` and a :class:`SlotType`,
pass the current instant as ``now`` and get back :class:`Slot` values.

How a slot comes to be
======================

1. **Candidates.** For every local calendar date (in the provider's IANA
   zone) and every :class:`WeeklyRule` on that weekday that serves the
   appointment type, candidate starts are laid on a *wall-clock* grid:
   ``rule.start``, ``rule.start + interval``, ``rule.start + 2*interval`` ...
   so a 09:00 slot is 09:00 local on both sides of a DST change.

   * A wall time that does not exist (the spring-forward gap) is skipped.
   * A wall time that occurs twice (the fall-back hour) means its first
     occurrence (``fold=0``); the second occurrence is never offered, so a
     rule never yields the same wall-clock start twice.
   * ``ends_at = starts_at + duration`` in absolute time, and the visit must
     end no later than the rule's end instant that day. That instant is the
     rule's end wall time localized the same way (first occurrence if
     ambiguous); if the end wall time falls in a spring-forward gap, it is the
     moment of the transition, i.e. the first instant at which the local
     clock reads ``rule.end`` or later.
   * Overlapping rules yield each start once.

2. **Filters.** A candidate is *open* iff

   * ``now + min_notice <= starts_at <= now + horizon`` (both inclusive),
   * it lies within the optional ``[start, end]`` filter (both inclusive),
   * its blocked range ``[starts_at - buffer_before, ends_at + buffer_after)``
     overlaps no ``busy`` interval (busy intervals already include the
     buffers of the appointments that block them), and
   * its visit ``[starts_at, ends_at)`` overlaps no ``exception``.

   Intervals are half-open and "overlap" means exactly
   ``a.start < b.end and b.start < a.end``.

Performance
===========

Instants are handled internally as integer microseconds since the Unix
epoch. Per call, the candidate grid is built once per distinct
``(timezone, rules)`` pair and shared by every provider with that pair;
the zone is consulted twice per rule per day (and per candidate only on the
rare days where the rule straddles an offset change). Filtering works per
interval, not per candidate: each busy range or exception removes a
contiguous run of the sorted grid (two binary searches), the runs are
merged, and slots are made only for what lies between them, so a schedule
costs O(intervals * log(candidates) + open slots).

Allocation is kept to one object per open slot: ``Slot`` and ``Interval``
have ``__slots__`` (no per-instance dict), slots are built without the
frozen dataclass ``__init__``, and the start/end datetimes of a candidate
are made once per grid and shared by every provider's slot at that time.
Every open slot is still a tracked object the cyclic garbage collector
counts, so a call returning tens of thousands of slots makes full
collections happen; what one costs depends on how much of the heap the
collector must walk, which is why the production server freezes the
preloaded app (``gc.freeze()`` in ``gunicorn.conf.py``).

The only assumption about time zones is that a zone's UTC offset does not
change and then change back within the span of a single rule on one day
(true of every zone in the tz database).
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "Interval",
    "ProviderSchedule",
    "Slot",
    "SlotType",
    "WeeklyRule",
    "first_available",
    "is_open",
    "local_day",
    "nearest",
    "slots_for",
    "slots_for_many",
    "zone",
]


# -- the data -----------------------------------------------------------------------------

@dataclass(frozen=True)
class WeeklyRule:
    """A recurring weekly window in which a provider sees patients.

    ``start`` and ``end`` are naive local wall-clock times in the provider's
    zone, ``end > start`` (no overnight rules). ``type_id`` restricts the
    rule to one appointment type; ``None`` serves every type.
    """

    weekday: int              # 0 = Monday ... 6 = Sunday (date.weekday())
    start: time
    end: time
    type_id: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise ValueError(f"weekday must be 0..6, got {self.weekday!r}")
        if not _time_us(self.end) > _time_us(self.start):
            raise ValueError(f"rule must end after it starts: {self.start}-{self.end}")

    def serves(self, type_id: int) -> bool:
        """Whether this rule offers appointments of type ``type_id``."""
        return self.type_id is None or self.type_id == type_id


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open range ``[start, end)`` of aware datetimes (UTC by convention)."""

    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        """``self.start < other.end and other.start < self.end``."""
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class SlotType:
    """The bookable shape of an appointment type.

    ``interval`` spaces candidate starts in local wall-clock time from each
    rule's start; ``min_notice`` and ``horizon`` bound how soon and how far
    ahead of ``now`` a slot may start (both bounds inclusive).
    """

    id: int
    duration: timedelta
    buffer_before: timedelta
    buffer_after: timedelta
    min_notice: timedelta
    horizon: timedelta
    interval: timedelta

    def __post_init__(self) -> None:
        if self.duration <= timedelta(0):
            raise ValueError("duration must be positive")
        if self.interval <= timedelta(0):
            raise ValueError("interval must be positive")
        if self.buffer_before < timedelta(0) or self.buffer_after < timedelta(0):
            raise ValueError("buffers cannot be negative")


@dataclass(frozen=True)
class ProviderSchedule:
    """Everything the engine needs to know about one provider.

    ``exceptions`` (vacations, training days ...) must not overlap a slot's
    *visit*; ``busy`` holds the blocked ranges of existing blocking
    appointments (their visit plus their buffers) and must not overlap a
    slot's *blocked range*. Neither needs to be sorted.
    """

    provider_id: int
    timezone: str             # IANA name, e.g. "America/New_York"
    rules: tuple[WeeklyRule, ...]
    exceptions: tuple[Interval, ...] = ()
    busy: tuple[Interval, ...] = ()


@dataclass(frozen=True, order=True, slots=True)
class Slot:
    """One bookable slot. Ordered by ``starts_at``, then the other fields."""

    starts_at: datetime       # UTC
    ends_at: datetime         # UTC, starts_at + duration
    provider_id: int
    type_id: int

    def blocked(self, slot_type: SlotType) -> Interval:
        """The time this slot takes from the provider once booked: the visit
        widened by the type's buffers. This is what a booking adds to
        ``ProviderSchedule.busy``."""
        return Interval(self.starts_at - slot_type.buffer_before,
                        self.ends_at + slot_type.buffer_after)

    @property
    def visit(self) -> Interval:
        """The visit itself, ``[starts_at, ends_at)``."""
        return Interval(self.starts_at, self.ends_at)


# Slot(...) and Interval(...) without a frozen dataclass's __init__, which goes
# through object.__setattr__ once per field: the slot descriptors' setters are
# called directly (the engine's hottest line: one call per open slot). Both
# classes have __slots__, so a slot is one small object, no per-instance dict.
_new_object = object.__new__
_set_starts_at = Slot.__dict__["starts_at"].__set__
_set_ends_at = Slot.__dict__["ends_at"].__set__
_set_provider_id = Slot.__dict__["provider_id"].__set__
_set_type_id = Slot.__dict__["type_id"].__set__
_set_start = Interval.__dict__["start"].__set__
_set_end = Interval.__dict__["end"].__set__


def _make_slot(starts_at: datetime, ends_at: datetime, provider_id: int, type_id: int) -> Slot:
    slot = _new_object(Slot)
    _set_starts_at(slot, starts_at)
    _set_ends_at(slot, ends_at)
    _set_provider_id(slot, provider_id)
    _set_type_id(slot, type_id)
    return slot


def _make_interval(start: datetime, end: datetime) -> Interval:
    """``Interval(start, end)`` for trusted values (the schedule loader's rows)."""
    interval = _new_object(Interval)
    _set_start(interval, start)
    _set_end(interval, end)
    return interval


# -- time helpers -------------------------------------------------------------------------

_US = 1_000_000
_DAY_US = 86_400 * _US
_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@lru_cache(maxsize=None)
def zone(name: str) -> ZoneInfo:
    """The (cached) ``ZoneInfo`` for an IANA name."""
    return ZoneInfo(name)


def local_day(dt: datetime, tz: str) -> date:
    """The calendar date an aware datetime falls on in zone ``tz``."""
    _require_aware(dt, "dt")
    return dt.astimezone(zone(tz)).date()


def _require_aware(dt: datetime, name: str) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {dt!r}")


def _td_us(td: timedelta) -> int:
    return (td.days * 86_400 + td.seconds) * _US + td.microseconds


_ONE_US = timedelta(microseconds=1)
# The epoch in each zone that is UTC at every instant (psycopg hands out
# timestamptz values in ZoneInfo("Etc/UTC") when the server's TimeZone is
# UTC). Subtracting two datetimes that share one tzinfo object skips both
# utcoffset() calls, which is exact when the offset is always zero.
_UTC_EPOCHS = {tz: datetime(1970, 1, 1, tzinfo=tz)
               for tz in (_UTC, ZoneInfo("UTC"), ZoneInfo("Etc/UTC"))}


def _dt_us(dt: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact: timedelta // timedelta)."""
    try:
        epoch = _UTC_EPOCHS.get(dt.tzinfo, _EPOCH)
    except TypeError:        # an unhashable tzinfo class: the general path
        epoch = _EPOCH
    return (dt - epoch) // _ONE_US


def _us_dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _time_us(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * _US + t.microsecond


def _offsets(zi: ZoneInfo, wall_us: int) -> tuple[int, int]:
    """UTC offsets (µs) of a local wall time read with fold=0 and fold=1.

    Equal: the wall time is unambiguous. fold=0 greater: it occurs twice
    (fall-back). fold=0 smaller: it does not exist (spring-forward gap).
    """
    naive = _NAIVE_EPOCH + timedelta(microseconds=wall_us)
    return _td_us(zi.utcoffset(naive)), _td_us(zi.utcoffset(naive.replace(fold=1)))


def _offset_at(zi: ZoneInfo, us: int) -> int:
    return _td_us(_us_dt(us).astimezone(zi).utcoffset())


def _end_instant(zi: ZoneInfo, wall_us: int, off0: int, off1: int) -> int:
    """The instant (µs) at which a rule ending at local ``wall_us`` ends."""
    if off0 >= off1:                 # unique, or ambiguous: first occurrence
        return wall_us - off0
    # In a spring-forward gap: the transition itself, the first instant whose
    # wall clock reads wall_us or later. It lies in (wall - off1, wall - off0].
    lo, hi = wall_us - off1, wall_us - off0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(zi, mid) == off1:
            hi = mid
        else:
            lo = mid
    return hi


# -- candidates ---------------------------------------------------------------------------

class _Grid:
    """Candidate slots, sorted by start and unique: three parallel lists.

    ``starts`` are the starts in µs since the epoch (what the filters
    compare); ``starts_at`` and ``ends_at`` the same instants as UTC
    datetimes, built once per grid and shared by every slot made from it
    (each candidate's visit is ``[start, start + duration)``).
    """

    __slots__ = ("starts", "starts_at", "ends_at", "duration")

    def __init__(self, starts: list[int], duration: int) -> None:
        epoch, delta = _EPOCH, timedelta
        self.starts = starts
        self.duration = duration
        self.starts_at = [epoch + delta(microseconds=s) for s in starts]
        self.ends_at = [epoch + delta(microseconds=s + duration) for s in starts]


_NO_GRID = _Grid([], 1)


def _candidates(tz: str, rules: Iterable[WeeklyRule], slot_type: SlotType,
                lo: int, hi: int, pad_days: int = 1) -> _Grid:
    """Every grid start in ``[lo, hi]`` (µs) whose visit fits its rule, sorted,
    unique. Depends only on the zone, the rules and the type, so it is shared
    by every provider with the same zone and rules."""
    if lo > hi:
        return _NO_GRID
    zi = zone(tz)
    type_id = slot_type.id
    by_weekday: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for rule in rules:
        if rule.type_id is None or rule.type_id == type_id:
            by_weekday[rule.weekday].append((_time_us(rule.start), _time_us(rule.end)))
    if not any(by_weekday):
        return _NO_GRID
    dur = _td_us(slot_type.duration)
    step = _td_us(slot_type.interval)

    # A day of padding each side by default: cheap insurance that stays
    # correct even in a zone whose local date steps backwards at a fall-back
    # across midnight. (is_open passes 0: a grid start reads back as its own date.)
    first = _us_dt(lo).astimezone(zi).toordinal() - pad_days
    last = _us_dt(hi).astimezone(zi).toordinal() + pad_days
    starts: set[int] = set()
    add = starts.add
    for ordinal in range(first, last + 1):
        day_rules = by_weekday[(ordinal - 1) % 7]   # date.fromordinal(1) is a Monday
        if not day_rules:
            continue
        base = (ordinal - _EPOCH_ORDINAL) * _DAY_US
        for start_us, end_us in day_rules:
            ws, we = base + start_us, base + end_us
            s0, s1 = _offsets(zi, ws)
            e0, e1 = _offsets(zi, we)
            if s0 == s1 == e0 == e1:
                # The usual day: one offset for the whole rule.
                last_start = we - s0 - dur
                stop = min(last_start, hi)
                s = ws - s0
                if s < lo:  # jump straight to the first grid point >= lo
                    s += -((s - lo) // step) * step
                while s <= stop:
                    add(s)
                    s += step
            else:
                # The rule straddles an offset change: read every grid point.
                end_instant = _end_instant(zi, we, e0, e1)
                w = ws
                while w < we:
                    o0, o1 = _offsets(zi, w)
                    if o0 >= o1:               # exists; first occurrence
                        s = w - o0
                        if lo <= s <= hi and s + dur <= end_instant:
                            add(s)
                    w += step
    return _Grid(sorted(starts), dur)


# -- per-schedule filtering -----------------------------------------------------------------

def _us_pairs(intervals: Iterable[Interval]) -> list[tuple[int, int]]:
    """Intervals as (start µs, end µs), in any order."""
    dt_us = _dt_us
    return [(dt_us(i.start), dt_us(i.end)) for i in intervals]


class _Indexed:
    """One schedule's busy ranges and exceptions, converted to µs once per call."""

    __slots__ = ("schedule", "busy", "exceptions")

    def __init__(self, schedule: ProviderSchedule) -> None:
        self.schedule = schedule
        self.busy = _us_pairs(schedule.busy)
        self.exceptions = _us_pairs(schedule.exceptions)

    def open(self, slot_type: SlotType, grid: _Grid, limit: int | None = None) -> list[Slot]:
        """The candidates that survive the busy ranges and exceptions, as slots
        (only the first ``limit`` of them, if given).

        Works per interval, not per candidate: the candidates an interval
        removes are a contiguous run of the sorted grid, found with two
        binary searches; the runs are merged in one pass and slots are made
        only for what lies between them. A candidate starting at ``s`` has
        the visit ``[s, s + d)`` and the blocked range ``[s - before,
        s + d + after)``, so (half-open overlap)

        * busy ``[bs, be)`` removes exactly ``bs - d - after < s < be + before``,
        * an exception ``[xs, xe)`` removes exactly ``xs - d < s < xe``.

        Cost: O(intervals * log(candidates) + open slots).
        """
        starts = grid.starts
        n = len(starts)
        if not n:
            return []
        d = grid.duration
        before, after = _td_us(slot_type.buffer_before), _td_us(slot_type.buffer_after)
        lead, lo, hi = d + after, starts[0], starts[-1]
        removed: list[tuple[int, int]] = []
        for bs, be in self.busy:
            if be + before > lo and bs - lead < hi:
                i = bisect_right(starts, bs - lead)
                j = bisect_left(starts, be + before, i)
                if i < j:
                    removed.append((i, j))
        for xs, xe in self.exceptions:
            if xe > lo and xs - d < hi:
                i = bisect_right(starts, xs - d)
                j = bisect_left(starts, xe, i)
                if i < j:
                    removed.append((i, j))
        pid, tid, make = self.schedule.provider_id, slot_type.id, _make_slot
        starts_at, ends_at = grid.starts_at, grid.ends_at
        if not removed and limit is None:
            return [make(a, b, pid, tid) for a, b in zip(starts_at, ends_at)]
        runs: list[tuple[int, int]] = []     # index runs of open candidates
        pos = 0
        removed.sort()
        for i, j in removed:
            if i > pos:
                runs.append((pos, i))
            if j > pos:
                pos = j
        if pos < n:
            runs.append((pos, n))
        out: list[Slot] = []
        left = n if limit is None else max(limit, 0)
        for i, j in runs:
            if left <= 0:
                break
            j = min(j, i + left)
            left -= j - i
            out += [make(a, b, pid, tid) for a, b in zip(starts_at[i:j], ends_at[i:j])]
        return out


def _bounds(slot_type: SlotType, now: datetime, start: datetime | None,
            end: datetime | None) -> tuple[int, int]:
    """The inclusive range (µs) slot starts must lie in."""
    _require_aware(now, "now")
    now_us = _dt_us(now)
    lo = now_us + _td_us(slot_type.min_notice)
    hi = now_us + _td_us(slot_type.horizon)
    if start is not None:
        _require_aware(start, "start")
        lo = max(lo, _dt_us(start))
    if end is not None:
        _require_aware(end, "end")
        hi = min(hi, _dt_us(end))
    return lo, hi


class _CandidateCache:
    """Candidates per (zone, rules, range), shared by providers for one call."""

    __slots__ = ("slot_type", "memo")

    def __init__(self, slot_type: SlotType) -> None:
        self.slot_type = slot_type
        self.memo: dict[tuple, _Grid] = {}

    def get(self, schedule: ProviderSchedule, lo: int, hi: int) -> _Grid:
        key = (schedule.timezone, schedule.rules, lo, hi)
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = _candidates(
                schedule.timezone, schedule.rules, self.slot_type, lo, hi)
        return found


# -- the public functions -----------------------------------------------------------------

def slots_for(schedule: ProviderSchedule, slot_type: SlotType, *, now: datetime,
              start: datetime | None = None, end: datetime | None = None) -> list[Slot]:
    """Every open slot of ``schedule`` for ``slot_type``, sorted by start.

    Slot starts lie in ``[max(now + min_notice, start), min(now + horizon,
    end)]``, both ends inclusive; ``start`` and ``end`` are optional filters.
    All datetimes must be aware; returned ones are in UTC.
    """
    lo, hi = _bounds(slot_type, now, start, end)
    candidates = _candidates(schedule.timezone, schedule.rules, slot_type, lo, hi)
    return _Indexed(schedule).open(slot_type, candidates)


def slots_for_many(schedules: Iterable[ProviderSchedule], slot_type: SlotType, *,
                   now: datetime, start: datetime | None = None,
                   end: datetime | None = None,
                   limit: int | None = None) -> dict[int, list[Slot]]:
    """:func:`slots_for` for each schedule, keyed by ``provider_id``; with
    ``limit``, only each provider's first ``limit`` slots (``slots_for(...)[:limit]``),
    and no slot object is made for the rest.

    Providers sharing a zone and an equal rules tuple share one candidate
    grid, so each further provider costs only its own filtering.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit cannot be negative, got {limit!r}")
    lo, hi = _bounds(slot_type, now, start, end)
    cache = _CandidateCache(slot_type)
    return {s.provider_id: _Indexed(s).open(slot_type, cache.get(s, lo, hi), limit)
            for s in schedules}


def first_available(schedules: Iterable[ProviderSchedule], slot_type: SlotType, *,
                    now: datetime, limit: int = 10) -> list[Slot]:
    """The earliest open slot of each provider, sorted by start, at most ``limit``.

    Providers with no open slot before the horizon are left out; ties on the
    start are broken by provider id. Each provider is searched in growing
    windows (a week, then two, four ...), so a provider with an opening in
    its first week costs only that week.
    """
    lo, hi = _bounds(slot_type, now, None, None)
    cache = _CandidateCache(slot_type)
    found: list[Slot] = []
    for schedule in schedules:
        indexed = _Indexed(schedule)
        w_lo, size = lo, 7 * _DAY_US
        while w_lo <= hi:
            w_hi = min(hi, w_lo + size)
            open_slots = indexed.open(slot_type, cache.get(schedule, w_lo, w_hi), 1)
            if open_slots:
                found.append(open_slots[0])
                break
            w_lo, size = w_hi + 1, size * 2
    found.sort()
    return found[:max(limit, 0)]


def is_open(schedule: ProviderSchedule, slot_type: SlotType, starts_at: datetime, *,
            now: datetime) -> bool:
    """True iff ``starts_at`` is exactly the start of a slot that
    ``slots_for(schedule, slot_type, now=now)`` would offer.

    Cheap, for validating a requested hold: it lays out the grid of the one
    local day ``starts_at`` falls on and scans the busy ranges and exceptions
    once, without sorting them.
    """
    _require_aware(starts_at, "starts_at")
    lo, hi = _bounds(slot_type, now, None, None)
    s = _dt_us(starts_at)
    if not lo <= s <= hi:
        return False
    # A grid start laid out on local date d reads back as date d, so only that
    # day's grid can contain it.
    if s not in _candidates(schedule.timezone, schedule.rules, slot_type, s, s,
                            pad_days=0).starts:
        return False
    e = s + _td_us(slot_type.duration)
    a, b = s - _td_us(slot_type.buffer_before), e + _td_us(slot_type.buffer_after)
    if any(_dt_us(x.start) < b and a < _dt_us(x.end) for x in schedule.busy):
        return False
    return not any(_dt_us(x.start) < e and s < _dt_us(x.end) for x in schedule.exceptions)


def nearest(schedule: ProviderSchedule, slot_type: SlotType, around: datetime, *,
            now: datetime, count: int = 3) -> list[Slot]:
    """The ``count`` open slots closest in time to ``around``, either side,
    sorted by start: the alternatives offered when a slot was just taken.

    Distance is ``|starts_at - around|``; on equal distance the earlier slot
    wins. Fewer than ``count`` come back only if the whole notice-to-horizon
    range has fewer open slots. The search window starts at a day either side
    of ``around`` and doubles until it holds ``count`` open slots: every slot
    outside the window is farther away than every slot inside it.
    """
    _require_aware(around, "around")
    lo, hi = _bounds(slot_type, now, None, None)
    if count <= 0 or lo > hi:
        return []
    center = _dt_us(around)
    indexed = _Indexed(schedule)

    def distance(slot: Slot) -> tuple[int, datetime]:
        return abs(_dt_us(slot.starts_at) - center), slot.starts_at

    radius = _DAY_US
    while True:
        w_lo, w_hi = max(lo, center - radius), min(hi, center + radius)
        candidates = _candidates(schedule.timezone, schedule.rules, slot_type, w_lo, w_hi)
        found = indexed.open(slot_type, candidates)
        if len(found) >= count or (w_lo == lo and w_hi == hi):
            return sorted(sorted(found, key=distance)[:count])
        radius *= 2
