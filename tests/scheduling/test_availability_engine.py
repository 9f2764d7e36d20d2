"""The availability engine (app/services/availability.py).

Three layers:

* property tests over generated schedules (random rules, exceptions, busy
  ranges, types, ``now`` near DST transitions, zones with and without DST);
* a brute-force oracle, written independently of the engine: it walks every
  UTC minute of the range and asks the zone what the wall clock says, and the
  engine must agree with it exactly;
* worked examples: America/New_York's 2026 DST changes, ``nearest`` and
  ``first_available``, and the edges of the rules (inclusive notice/horizon,
  half-open overlaps, buffers vs exceptions, duplicate rules).
"""
from __future__ import annotations

import dataclasses
from bisect import bisect_left
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.services.availability import (
    Interval,
    ProviderSchedule,
    Slot,
    SlotType,
    WeeklyRule,
    first_available,
    is_open,
    local_day,
    nearest,
    slots_for,
    slots_for_many,
)

UTC = timezone.utc
NY = "America/New_York"
MINUTE = timedelta(minutes=1)
TYPE_ID = 7
OTHER_TYPE_ID = 8

# CI runs a fixed sequence of examples (derandomize), so a green run is
# repeatable; a developer's run explores fresh examples each time.
_FIXED = os.environ.get("CI") == "true"
PROPERTY = settings(max_examples=150, deadline=None, database=None, derandomize=_FIXED,
                    suppress_health_check=[HealthCheck.too_slow])
ORACLE = settings(max_examples=100, deadline=None, database=None, derandomize=_FIXED,
                  suppress_health_check=[HealthCheck.too_slow])


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


def slot_type(*, duration=30, before=0, after=0, notice=timedelta(0),
              horizon=timedelta(days=60), interval=30, type_id=TYPE_ID) -> SlotType:
    return SlotType(id=type_id, duration=minutes(duration), buffer_before=minutes(before),
                    buffer_after=minutes(after), min_notice=notice, horizon=horizon,
                    interval=minutes(interval))


def every_day(start: time, end: time, type_id=None) -> tuple[WeeklyRule, ...]:
    return tuple(WeeklyRule(d, start, end, type_id) for d in range(7))


def weekdays(start: time = time(9), end: time = time(17)) -> tuple[WeeklyRule, ...]:
    return tuple(WeeklyRule(d, start, end) for d in range(5))


def schedule(rules, *, tz=NY, busy=(), exceptions=(), provider_id=1) -> ProviderSchedule:
    return ProviderSchedule(provider_id=provider_id, timezone=tz, rules=tuple(rules),
                            exceptions=tuple(exceptions), busy=tuple(busy))


def local_starts(slots, tz=NY) -> list[datetime]:
    """Naive local wall-clock starts (fold dropped)."""
    zi = ZoneInfo(tz)
    return [s.starts_at.astimezone(zi).replace(tzinfo=None, fold=0) for s in slots]


# -- the brute-force oracle ----------------------------------------------------------------

def oracle(sched: ProviderSchedule, stype: SlotType, now: datetime,
           start: datetime | None = None, end: datetime | None = None) -> list[Slot]:
    """Open slots by brute force, sharing no code with the engine.

    Every whole UTC minute in the range is a potential start. It is a
    candidate if the wall clock at that instant (its first reading, fold 0)
    sits on some serving rule's grid on that weekday, and the visit is over
    before the clock first reads the rule's end on that date. Then notice,
    horizon, busy ranges and exceptions are checked directly.
    (The zones used here have whole-minute offsets, so every grid point is a
    whole UTC minute.)
    """
    zi = ZoneInfo(sched.timezone)
    lo, hi = now + stype.min_notice, now + stype.horizon
    if start is not None:
        lo = max(lo, start)
    if end is not None:
        hi = min(hi, end)
    if lo > hi:
        return []
    step = stype.interval // MINUTE
    assert stype.interval == step * MINUTE

    # Every minute from a day before the range to a day past the last visit,
    # with the wall clock each one reads and the running maximum of those
    # readings: the first minute whose reading is >= W is then a bisection.
    scan_lo = lo.replace(second=0, microsecond=0) - timedelta(days=1)
    scan_hi = hi + stype.duration + timedelta(days=1)
    instants, readings, peak = [], [], []
    m = scan_lo
    while m <= scan_hi:
        wall = m.astimezone(zi)
        instants.append(m)
        readings.append(wall)
        naive = wall.replace(tzinfo=None, fold=0)
        peak.append(naive if not peak or naive > peak[-1] else peak[-1])
        m += MINUTE

    def clock_reaches(wall: datetime) -> datetime:
        i = bisect_left(peak, wall)
        return instants[i] if i < len(instants) else datetime.max.replace(tzinfo=UTC)

    def on_grid(i: int) -> bool:
        wall = readings[i]
        if wall.fold:                  # the second reading of a repeated hour
            return False
        assert wall.second == 0
        at = wall.hour * 60 + wall.minute
        for rule in sched.rules:
            if rule.weekday != wall.weekday() or rule.type_id not in (None, stype.id):
                continue
            r_start = rule.start.hour * 60 + rule.start.minute
            r_end = rule.end.hour * 60 + rule.end.minute
            if not (r_start <= at < r_end and (at - r_start) % step == 0):
                continue
            if instants[i] + stype.duration <= clock_reaches(
                    datetime.combine(wall.date(), rule.end)):
                return True
        return False

    found = []
    for i, m in enumerate(instants):
        if m < lo or m > hi or not on_grid(i):
            continue
        visit_end = m + stype.duration
        blocked_start, blocked_end = m - stype.buffer_before, visit_end + stype.buffer_after
        if any(b.start < blocked_end and blocked_start < b.end for b in sched.busy):
            continue
        if any(x.start < visit_end and m < x.end for x in sched.exceptions):
            continue
        found.append(Slot(m, visit_end, sched.provider_id, stype.id))
    return found


# -- strategies -------------------------------------------------------------------------

# Each zone with instants of its 2026 transitions: New York and London shift
# by an hour at night, Lord Howe by half an hour, Santiago at midnight;
# Kolkata has no DST.
TRANSITIONS = {
    NY: [utc(2026, 3, 8, 7), utc(2026, 11, 1, 6)],
    "Europe/London": [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)],
    "Australia/Lord_Howe": [utc(2026, 10, 3, 15, 30), utc(2026, 4, 4, 15)],
    "America/Santiago": [utc(2026, 9, 6, 4), utc(2026, 4, 5, 3)],
    "Asia/Kolkata": [],
}
ORDINARY_WEEK = utc(2026, 6, 15, 12)

times_of_day = st.one_of(
    st.integers(0, 24 * 60 - 2),
    st.integers(0, 4 * 60),        # crowd the small hours, where DST happens
    st.integers(22 * 60, 24 * 60 - 2),
)


@st.composite
def rules_st(draw) -> tuple[WeeklyRule, ...]:
    rules = []
    for _ in range(draw(st.integers(1, 4))):
        start = draw(times_of_day)
        length = draw(st.one_of(st.integers(1, 10 * 60), st.integers(2 * 60, 10 * 60)))
        end = min(start + length, 24 * 60 - 1)
        type_id = draw(st.sampled_from([None, None, TYPE_ID, OTHER_TYPE_ID]))
        t0, t1 = time(start // 60, start % 60), time(end // 60, end % 60)
        if draw(st.integers(0, 2)):   # mostly every day, so the DST day has rules
            rules.extend(WeeklyRule(d, t0, t1, type_id) for d in range(7))
        else:
            rules.append(WeeklyRule(draw(st.integers(0, 6)), t0, t1, type_id))
    return tuple(rules)


@st.composite
def intervals_st(draw, lo: datetime, window: timedelta, max_size: int,
                 max_minutes: int) -> tuple[Interval, ...]:
    """Up to max_size intervals in and around [lo, lo + window], mostly short,
    some long (so some nest)."""
    out = []
    span = int((window + timedelta(days=1)).total_seconds())
    for _ in range(draw(st.integers(0, max_size))):
        begin = lo + timedelta(seconds=draw(st.integers(-43_200, span)))
        if draw(st.booleans()):
            begin = begin.replace(second=0, microsecond=0)
        length = minutes(draw(st.one_of(st.integers(1, 90), st.integers(1, max_minutes))))
        length += timedelta(seconds=draw(st.sampled_from([0, 0, 1, 59])))
        out.append(Interval(begin, begin + length))
    return tuple(out)


@st.composite
def cases(draw, with_filter: bool = True, max_days: int = 3):
    """(schedule, slot_type, now, start, end); slot starts span <= max_days."""
    tz = draw(st.sampled_from(sorted(TRANSITIONS)))
    notice = minutes(draw(st.integers(0, 36 * 60)))
    window = minutes(draw(st.one_of(st.integers(-60, max_days * 24 * 60),
                                    st.integers(24 * 60, max_days * 24 * 60))))
    # usually put a DST transition inside the range of slot starts
    anchor = draw(st.sampled_from(TRANSITIONS[tz] + [ORDINARY_WEEK]))
    into = timedelta(seconds=draw(st.integers(0, max(int(window.total_seconds()), 0))))
    now = anchor - notice - into - timedelta(
        microseconds=draw(st.sampled_from([0, 0, 1, 999_999])))
    stype = SlotType(
        id=TYPE_ID,
        duration=minutes(draw(st.one_of(st.sampled_from([15, 30, 45, 60]),
                                        st.integers(5, 150)))),
        buffer_before=minutes(draw(st.integers(0, 45))),
        buffer_after=minutes(draw(st.integers(0, 45))),
        min_notice=notice,
        horizon=notice + window,
        interval=minutes(draw(st.sampled_from([10, 15, 20, 25, 30, 45, 60, 90]))),
    )
    lo = now + notice
    sched = ProviderSchedule(
        provider_id=draw(st.integers(1, 5)),
        timezone=tz,
        rules=draw(rules_st()),
        exceptions=draw(intervals_st(lo, window, 2, 8 * 60)),
        busy=draw(intervals_st(lo, window, 6, 4 * 60)),
    )
    start = end = None
    if with_filter and draw(st.booleans()):
        start = lo + minutes(draw(st.integers(-60, max_days * 24 * 60)))
    if with_filter and draw(st.booleans()):
        end = (start or lo) + minutes(draw(st.integers(-60, max_days * 24 * 60)))
    return sched, stype, now, start, end


# -- 1. properties ------------------------------------------------------------------------

@PROPERTY
@given(cases())
def test_generated_schedules_obey_every_rule(case):
    sched, stype, now, start, end = case
    zi = ZoneInfo(sched.timezone)
    slots = slots_for(sched, stype, now=now, start=start, end=end)

    starts = [s.starts_at for s in slots]
    assert starts == sorted(starts)
    assert len(set(starts)) == len(starts)
    for slot in slots:
        assert slot.starts_at.utcoffset() == timedelta(0)
        assert slot.ends_at - slot.starts_at == stype.duration
        assert (slot.provider_id, slot.type_id) == (sched.provider_id, stype.id)
        # notice, horizon and the filter
        assert slot.starts_at >= now + stype.min_notice
        assert slot.starts_at <= now + stype.horizon
        assert start is None or slot.starts_at >= start
        assert end is None or slot.starts_at <= end
        # busy ranges against the blocked range, exceptions against the visit
        blocked = slot.blocked(stype)
        assert blocked == Interval(slot.starts_at - stype.buffer_before,
                                   slot.ends_at + stype.buffer_after)
        for b in sched.busy:
            assert not (b.start < blocked.end and blocked.start < b.end), (slot, b)
        for x in sched.exceptions:
            assert not (x.start < slot.ends_at and slot.starts_at < x.end), (slot, x)
        # on some serving rule's wall-clock grid, first reading, ending in the rule
        wall = slot.starts_at.astimezone(zi)
        assert wall.fold == 0
        naive = wall.replace(tzinfo=None)
        fits = []
        for rule in sched.rules:
            if rule.weekday != wall.weekday() or rule.type_id not in (None, stype.id):
                continue
            rule_start = datetime.combine(wall.date(), rule.start)
            offset = naive - rule_start
            on_grid = offset >= timedelta(0) and offset % stype.interval == timedelta(0)
            rule_end = datetime.combine(wall.date(), rule.end, tzinfo=zi).astimezone(UTC)
            fits.append(on_grid and slot.ends_at <= rule_end)
        assert any(fits), slot


@PROPERTY
@given(cases(with_filter=False), st.lists(st.integers(-5 * 86_400, 5 * 86_400), max_size=5))
def test_is_open_agrees_with_slots_for(case, probe_offsets):
    sched, stype, now, _, _ = case
    slots = slots_for(sched, stype, now=now)
    offered = {s.starts_at for s in slots}
    # probes: every offered start, everything the bare grid would offer,
    # near misses, the notice and horizon edges, and arbitrary instants
    bare = dataclasses.replace(sched, busy=(), exceptions=())
    wide = dataclasses.replace(stype, min_notice=stype.min_notice - timedelta(days=1),
                               horizon=stype.horizon + timedelta(days=1))
    probes = set(offered)
    probes |= {s.starts_at for s in slots_for(bare, wide, now=now)}
    probes |= {t + d for t in offered for d in (MINUTE, -MINUTE, timedelta(microseconds=1))}
    probes |= {now + stype.min_notice, now + stype.horizon}
    probes |= {now + timedelta(seconds=o) for o in probe_offsets}
    probes |= {(now + timedelta(seconds=o)).replace(second=0, microsecond=0)
               for o in probe_offsets}
    for probe in probes:
        assert is_open(sched, stype, probe, now=now) == (probe in offered), probe
        # the zone the caller passes the instant in is irrelevant
        local = probe.astimezone(ZoneInfo(sched.timezone))
        assert is_open(sched, stype, local, now=now) == (probe in offered), probe


@PROPERTY
@given(cases(with_filter=True))
def test_the_filter_only_narrows(case):
    sched, stype, now, start, end = case
    full = slots_for(sched, stype, now=now)
    narrowed = slots_for(sched, stype, now=now, start=start, end=end)
    assert narrowed == [s for s in full
                        if (start is None or s.starts_at >= start)
                        and (end is None or s.starts_at <= end)]


@settings(PROPERTY, max_examples=75)
@given(st.lists(cases(with_filter=True, max_days=10), min_size=1, max_size=4),
       st.integers(0, 5))
def test_many_first_available_and_nearest_agree_with_slots_for(case_list, limit):
    _, stype, now, start, end = case_list[0]
    # all providers share the first case's type and clock; distinct ids
    schedules = [dataclasses.replace(c[0], provider_id=i) for i, c in enumerate(case_list)]
    many = slots_for_many(schedules, stype, now=now, start=start, end=end)
    assert many == {s.provider_id: slots_for(s, stype, now=now, start=start, end=end)
                    for s in schedules}
    assert slots_for_many(schedules, stype, now=now, start=start, end=end, limit=limit) == {
        provider_id: slots[:limit] for provider_id, slots in many.items()}

    full = {s.provider_id: slots_for(s, stype, now=now) for s in schedules}
    earliest = sorted(slots[0] for slots in full.values() if slots)
    assert first_available(schedules, stype, now=now, limit=limit) == earliest[:limit]

    around = start or now
    for sched in schedules:
        by_distance = sorted(full[sched.provider_id],
                             key=lambda s: (abs(s.starts_at - around), s.starts_at))
        expected = sorted(by_distance[:3])
        assert nearest(sched, stype, around, now=now, count=3) == expected


# -- 2. the oracle ------------------------------------------------------------------------

@ORACLE
@given(cases())
def test_engine_matches_brute_force_oracle(case):
    sched, stype, now, start, end = case
    assert slots_for(sched, stype, now=now, start=start, end=end) == oracle(
        sched, stype, now, start, end)


def _as_loaded(intervals, tz):
    """The same instants with another tzinfo (the loader hands out ZoneInfo("Etc/UTC"))."""
    return tuple(Interval(i.start.astimezone(tz), i.end.astimezone(tz)) for i in intervals)


@ORACLE
@given(cases(), st.sampled_from(["Etc/UTC", "UTC", NY, "Asia/Kolkata"]),
       st.lists(st.tuples(st.integers(0, 3 * 24 * 60), st.integers(-90, 0)), max_size=3),
       st.integers(0, 5))
def test_zones_and_degenerate_intervals_match_the_oracle(case, tz, odd, limit):
    """Busy ranges and exceptions in any zone, and empty or inverted ones
    (start >= end), are judged by the literal overlap rule, like the oracle."""
    sched, stype, now, start, end = case
    base = (now + stype.min_notice).replace(second=0, microsecond=0)
    degenerate = tuple(Interval(base + minutes(at), base + minutes(at + length))
                       for at, length in odd)
    zi = ZoneInfo(tz)
    sched = dataclasses.replace(sched, busy=_as_loaded(sched.busy + degenerate, zi),
                                exceptions=_as_loaded(sched.exceptions + degenerate[:1], zi))
    expected = oracle(sched, stype, now, start, end)
    assert slots_for(sched, stype, now=now, start=start, end=end) == expected
    assert slots_for_many([sched], stype, now=now, start=start, end=end,
                          limit=limit) == {sched.provider_id: expected[:limit]}


def test_slots_for_many_refuses_a_negative_limit():
    with pytest.raises(ValueError):
        slots_for_many([schedule(weekdays())], slot_type(), now=utc(2026, 3, 2, 12), limit=-1)


def test_oracle_is_not_vacuous():
    """The oracle finds slots on an ordinary schedule (and drops busy ones)."""
    now = utc(2026, 3, 2, 12)                      # Monday 07:00 in New York
    busy = (Interval(utc(2026, 3, 2, 15), utc(2026, 3, 2, 16)),)
    sched = schedule(weekdays(), busy=busy)
    stype = slot_type(horizon=timedelta(days=2))
    found = oracle(sched, stype, now)
    assert len(found) == 16 - 2 + 16             # Monday less the busy hour, Tuesday
    assert utc(2026, 3, 2, 15) not in {s.starts_at for s in found}
    assert found == slots_for(sched, stype, now=now)


# -- 3. daylight saving time in New York ---------------------------------------------------

def _by_local_day(slots, tz=NY) -> dict[date, list[Slot]]:
    days: dict[date, list[Slot]] = {}
    for s in slots:
        days.setdefault(local_day(s.starts_at, tz), []).append(s)
    return days


@pytest.mark.parametrize("change_day, offset_before, offset_after", [
    (date(2026, 3, 8), 14, 13),   # spring forward: EST (UTC-5) -> EDT (UTC-4)
    (date(2026, 11, 1), 13, 14),  # fall back: EDT -> EST
])
def test_nine_oclock_stays_nine_oclock_across_the_change(change_day, offset_before, offset_after):
    sched = schedule(every_day(time(9), time(12)))
    now = datetime.combine(change_day - timedelta(days=2), time(0), tzinfo=UTC)
    slots = slots_for(sched, slot_type(horizon=timedelta(days=5)), now=now)
    days = _by_local_day(slots)
    expected_wall = [time(9), time(9, 30), time(10), time(10, 30), time(11), time(11, 30)]
    for day, hour in [(change_day - timedelta(days=1), offset_before),
                      (change_day, offset_after),
                      (change_day + timedelta(days=1), offset_after)]:
        assert [w.time() for w in local_starts(days[day])] == expected_wall
        assert days[day][0].starts_at == datetime.combine(day, time(hour), tzinfo=UTC)
        assert days[day][-1].ends_at == datetime.combine(day, time(hour + 3), tzinfo=UTC)


def test_spring_forward_skips_the_missing_hour():
    sched = schedule([WeeklyRule(6, time(1), time(4))])     # Sundays 01:00-04:00
    slots = slots_for(sched, slot_type(), now=utc(2026, 3, 7))
    on_the_day = [s for s in slots if local_day(s.starts_at, NY) == date(2026, 3, 8)]
    assert [s.starts_at for s in on_the_day] == [
        utc(2026, 3, 8, 6), utc(2026, 3, 8, 6, 30),         # 01:00, 01:30 EST
        utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 30),         # 03:00, 03:30 EDT
    ]
    assert [w.time() for w in local_starts(on_the_day)] == [
        time(1), time(1, 30), time(3), time(3, 30)]
    # the 01:30 visit runs straight into 03:00 EDT: half an hour of real time
    assert on_the_day[1].ends_at == utc(2026, 3, 8, 7)
    assert is_open(sched, slot_type(), utc(2026, 3, 8, 7), now=utc(2026, 3, 7))
    assert not is_open(sched, slot_type(), utc(2026, 3, 8, 6, 45), now=utc(2026, 3, 7))


def test_spring_forward_off_hour_grid_skips_only_the_missing_start():
    # a 45-minute grid from 01:00: 02:30 does not exist and is not moved to 03:30
    sched = schedule([WeeklyRule(6, time(1), time(5))])
    stype = slot_type(interval=45, duration=45)
    slots = slots_for(sched, stype, now=utc(2026, 3, 7))
    on_the_day = [s for s in slots if local_day(s.starts_at, NY) == date(2026, 3, 8)]
    assert [w.time() for w in local_starts(on_the_day)] == [
        time(1), time(1, 45), time(3, 15), time(4)]
    assert [s.starts_at for s in on_the_day] == [
        utc(2026, 3, 8, 6), utc(2026, 3, 8, 6, 45), utc(2026, 3, 8, 7, 15), utc(2026, 3, 8, 8)]
    assert not is_open(sched, stype, utc(2026, 3, 8, 7, 30), now=utc(2026, 3, 7))


def test_a_rule_ending_inside_the_gap_ends_at_the_transition():
    # 00:00-02:30 on spring-forward Sunday: the clock never reads 02:30; the
    # rule ends when the clock jumps from 02:00 EST to 03:00 EDT (07:00Z).
    sched = schedule([WeeklyRule(6, time(0), time(2, 30))])
    slots = slots_for(sched, slot_type(), now=utc(2026, 3, 7))
    on_the_day = [s for s in slots if local_day(s.starts_at, NY) == date(2026, 3, 8)]
    assert [w.time() for w in local_starts(on_the_day)] == [
        time(0), time(0, 30), time(1), time(1, 30)]
    assert on_the_day[-1].ends_at == utc(2026, 3, 8, 7)
    # so an hour-long visit at 01:30 EST (06:30Z-07:30Z) runs past the rule
    hour_long = slots_for(sched, slot_type(duration=60), now=utc(2026, 3, 7))
    assert [s.starts_at for s in hour_long
            if local_day(s.starts_at, NY) == date(2026, 3, 8)] == [
        utc(2026, 3, 8, 5), utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 6)]


def test_fall_back_repeated_hour_gives_no_duplicates():
    now = utc(2026, 10, 31)
    sched = schedule([WeeklyRule(6, time(1), time(2))])     # Sundays 01:00-02:00
    slots = slots_for(sched, slot_type(interval=15, duration=15), now=now)
    on_the_day = [s for s in slots if local_day(s.starts_at, NY) == date(2026, 11, 1)]
    # 01:00-01:45 once each, in their first (EDT) occurrence
    assert [s.starts_at for s in on_the_day] == [
        utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 15),
        utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 5, 45)]
    assert all(s.starts_at.astimezone(ZoneInfo(NY)).fold == 0 for s in on_the_day)
    # the second 01:00 (EST, 06:00Z) is not a slot
    assert is_open(sched, slot_type(interval=15, duration=15), utc(2026, 11, 1, 5), now=now)
    assert not is_open(sched, slot_type(interval=15, duration=15), utc(2026, 11, 1, 6), now=now)


def test_fall_back_hourly_grid_skips_the_second_one_oclock():
    sched = schedule([WeeklyRule(6, time(0), time(3))])
    slots = slots_for(sched, slot_type(interval=60, duration=60), now=utc(2026, 10, 31))
    on_the_day = [s for s in slots if local_day(s.starts_at, NY) == date(2026, 11, 1)]
    assert [s.starts_at for s in on_the_day] == [
        utc(2026, 11, 1, 4),   # 00:00 EDT
        utc(2026, 11, 1, 5),   # 01:00 EDT
        utc(2026, 11, 1, 7),   # 02:00 EST; ends 03:00 EST, the rule's end
    ]


# -- 4. nearest and first_available --------------------------------------------------------

def test_nearest_offers_slots_on_both_sides_of_a_taken_one():
    now = utc(2026, 3, 2, 12)
    taken = utc(2026, 3, 4, 20)                   # Wednesday 15:00 EST
    stype = slot_type()
    sched = schedule(weekdays(), busy=(Interval(taken, taken + minutes(30)),))
    assert not is_open(sched, stype, taken, now=now)
    got = nearest(sched, stype, taken, now=now, count=3)
    # 14:30 and 15:30 are 30 minutes away; 14:00 and 16:00 tie, earlier wins
    assert [s.starts_at for s in got] == [utc(2026, 3, 4, 19), utc(2026, 3, 4, 19, 30),
                                         utc(2026, 3, 4, 20, 30)]
    assert [s.starts_at for s in nearest(sched, stype, taken, now=now, count=4)] == [
        utc(2026, 3, 4, 19), utc(2026, 3, 4, 19, 30),
        utc(2026, 3, 4, 20, 30), utc(2026, 3, 4, 21)]


def test_nearest_reaches_across_empty_days():
    now = utc(2026, 3, 2, 12)
    stype = slot_type()
    sched = schedule([WeeklyRule(0, time(9), time(10))])     # Mondays 09:00-10:00
    around = utc(2026, 3, 13, 1, 10)              # Thursday 12 March 21:10 EDT
    got = nearest(sched, stype, around, now=now, count=2)
    # Monday 9 March 09:30 EDT is 3d 11h40 back, Monday 16 March 09:00 3d 11h50 ahead,
    # Monday 9 March 09:00 3d 12h10 back
    assert [s.starts_at for s in got] == [utc(2026, 3, 9, 13, 30), utc(2026, 3, 16, 13)]
    assert nearest(sched, stype, around, now=now, count=0) == []


def test_nearest_stays_within_notice_and_horizon():
    now = utc(2026, 3, 2, 14)                     # Monday 09:00 EST
    stype = slot_type(notice=timedelta(hours=1), horizon=timedelta(hours=3))
    sched = schedule(weekdays())
    got = nearest(sched, stype, utc(2026, 3, 2, 12), now=now, count=10)
    assert [s.starts_at for s in got] == [utc(2026, 3, 2, 15), utc(2026, 3, 2, 15, 30),
                                         utc(2026, 3, 2, 16), utc(2026, 3, 2, 16, 30),
                                         utc(2026, 3, 2, 17)]


def test_first_available_picks_each_providers_earliest():
    now = utc(2026, 3, 2, 12)                     # Monday 07:00 EST
    stype = slot_type()
    mon = utc(2026, 3, 2, 14)                     # Monday 09:00 EST
    late_monday = schedule(weekdays(), provider_id=1,
                           busy=(Interval(mon, mon + timedelta(hours=2)),))
    tuesday = schedule([WeeklyRule(1, time(10), time(12))], provider_id=2)
    on_vacation = schedule(weekdays(), provider_id=3,
                           exceptions=(Interval(now, utc(2026, 3, 16, 13, 30)),))
    no_rules = schedule([], provider_id=4)
    chicago = schedule(weekdays(), tz="America/Chicago", provider_id=5,
                       busy=(Interval(now, utc(2026, 3, 2, 17)),))  # 09:00 CST is 15:00Z
    schedules = [late_monday, tuesday, on_vacation, no_rules, chicago]

    got = first_available(schedules, stype, now=now)
    assert [(s.provider_id, s.starts_at) for s in got] == [
        (1, utc(2026, 3, 2, 16)),                 # Monday 11:00 EST
        (5, utc(2026, 3, 2, 17)),                 # Monday 11:00 CST
        (2, utc(2026, 3, 3, 15)),                 # Tuesday 10:00 EST
        (3, utc(2026, 3, 16, 13, 30)),            # two weeks later, 09:30 EDT
    ]
    assert got == sorted(got)
    assert [s.provider_id for s in first_available(schedules, stype, now=now, limit=2)] == [1, 5]
    assert first_available(schedules, stype, now=now, limit=0) == []


def test_first_available_searches_past_the_first_week_without_gaps():
    # Mondays 09:00 IST (03:30Z) only; this Monday's slot is taken. With
    # now a microsecond before 03:30Z, next Monday's slot is the very first
    # instant after a whole week.
    rules = (WeeklyRule(0, time(9), time(9, 30)),)
    now = utc(2026, 3, 2, 3, 30) - timedelta(microseconds=1)
    taken = Interval(utc(2026, 3, 2, 3, 30), utc(2026, 3, 2, 4))
    sched = schedule(rules, tz="Asia/Kolkata", busy=(taken,))
    got = first_available([sched], slot_type(), now=now)
    assert [s.starts_at for s in got] == [utc(2026, 3, 9, 3, 30)]
    # and nothing past the horizon
    short = slot_type(horizon=timedelta(days=7))
    assert first_available([sched], short, now=now) == []


# -- the edges of the rules ----------------------------------------------------------------

def test_notice_and_horizon_are_inclusive():
    now = utc(2026, 3, 2, 14)                     # Monday 09:00 EST
    stype = slot_type(notice=timedelta(hours=1), horizon=timedelta(hours=2))
    slots = slots_for(schedule(weekdays()), stype, now=now)
    assert [s.starts_at for s in slots] == [utc(2026, 3, 2, 15), utc(2026, 3, 2, 15, 30),
                                           utc(2026, 3, 2, 16)]
    just_after = now + timedelta(microseconds=1)
    assert slots_for(schedule(weekdays()), stype, now=just_after)[0].starts_at == utc(
        2026, 3, 2, 15, 30)


def _starts_around(busy: Interval) -> set[datetime]:
    """Monday 2 March starts for a 30-minute visit with 10-minute buffers."""
    stype = slot_type(before=10, after=10, horizon=timedelta(days=1))
    sched = schedule(weekdays(), busy=(busy,))
    return {s.starts_at for s in slots_for(sched, stype, now=utc(2026, 3, 2, 12))}


def test_buffers_may_touch_busy_ranges_but_not_overlap_them():
    # busy 10:00-10:40 EST; each slot blocks [start - 10min, start + 40min)
    starts = _starts_around(Interval(utc(2026, 3, 2, 15), utc(2026, 3, 2, 15, 40)))
    assert utc(2026, 3, 2, 14) in starts              # 09:00 blocks to 09:40
    assert utc(2026, 3, 2, 14, 30) not in starts      # 09:30 blocks to 10:10
    assert utc(2026, 3, 2, 15, 30) not in starts      # 10:30 blocks from 10:20
    assert utc(2026, 3, 2, 16) in starts              # 11:00 blocks from 10:50
    # half-open: touching either end is fine, one minute more is not
    assert utc(2026, 3, 2, 16) in _starts_around(
        Interval(utc(2026, 3, 2, 15), utc(2026, 3, 2, 15, 50)))
    assert utc(2026, 3, 2, 16) not in _starts_around(
        Interval(utc(2026, 3, 2, 15), utc(2026, 3, 2, 15, 51)))
    assert utc(2026, 3, 2, 14) in _starts_around(
        Interval(utc(2026, 3, 2, 14, 40), utc(2026, 3, 2, 15)))
    assert utc(2026, 3, 2, 14) not in _starts_around(
        Interval(utc(2026, 3, 2, 14, 39), utc(2026, 3, 2, 15)))


def test_exceptions_block_the_visit_not_the_buffers():
    now = utc(2026, 3, 2, 12)
    stype = slot_type(before=15, after=15, horizon=timedelta(days=1))
    lunch = Interval(utc(2026, 3, 2, 17), utc(2026, 3, 2, 18))     # 12:00-13:00 EST
    starts = {s.starts_at for s in slots_for(schedule(weekdays(), exceptions=(lunch,)),
                                             stype, now=now)}
    assert utc(2026, 3, 2, 16, 30) in starts      # 11:30-12:00, after-buffer in lunch: fine
    assert utc(2026, 3, 2, 18) in starts          # 13:00, before-buffer in lunch: fine
    assert utc(2026, 3, 2, 17) not in starts and utc(2026, 3, 2, 17, 30) not in starts
    sched = schedule(weekdays(), exceptions=(lunch,))
    assert is_open(sched, stype, utc(2026, 3, 2, 16, 30), now=now)
    assert not is_open(sched, stype, utc(2026, 3, 2, 17, 30), now=now)
    assert not is_open(sched, stype, utc(2026, 3, 2, 16, 45), now=now)   # off the grid


def test_overlapping_rules_do_not_duplicate_and_type_rules_apply_to_their_type_only():
    now = utc(2026, 3, 2, 12)
    rules = (WeeklyRule(0, time(9), time(11)), WeeklyRule(0, time(10), time(12)),
             WeeklyRule(0, time(9), time(11)), WeeklyRule(0, time(14), time(15), OTHER_TYPE_ID),
             WeeklyRule(0, time(16), time(17), TYPE_ID))
    stype = slot_type(horizon=timedelta(days=1))
    walls = [w.time() for w in local_starts(slots_for(schedule(rules), stype, now=now))]
    assert walls == [time(9), time(9, 30), time(10), time(10, 30), time(11), time(11, 30),
                     time(16), time(16, 30)]
    other = slot_type(horizon=timedelta(days=1), type_id=OTHER_TYPE_ID)
    walls = [w.time() for w in local_starts(slots_for(schedule(rules), other, now=now))]
    assert walls == [time(9), time(9, 30), time(10), time(10, 30), time(11), time(11, 30),
                     time(14), time(14, 30)]


def test_grid_runs_from_each_rules_start_and_visits_must_fit():
    now = utc(2026, 3, 2, 12)
    rules = (WeeklyRule(0, time(9, 10), time(10, 30)),)
    stype = slot_type(duration=45, interval=20, horizon=timedelta(days=1))
    walls = [w.time() for w in local_starts(slots_for(schedule(rules), stype, now=now))]
    assert walls == [time(9, 10), time(9, 30)]    # 09:50 would end 10:35


def test_slots_for_many_keys_by_provider_and_matches_slots_for():
    now = utc(2026, 3, 2, 12)
    stype = slot_type(horizon=timedelta(days=7))
    a = schedule(weekdays(), provider_id=10)
    b = schedule(weekdays(), provider_id=11, busy=(Interval(now, now + timedelta(days=2)),))
    c = schedule(weekdays(time(8), time(12)), tz="Asia/Kolkata", provider_id=12)
    got = slots_for_many([a, b, c], stype, now=now, end=now + timedelta(days=3))
    assert set(got) == {10, 11, 12}
    for sched in (a, b, c):
        assert got[sched.provider_id] == slots_for(sched, stype, now=now,
                                                   end=now + timedelta(days=3))
    assert got[10] != got[11] and got[10] and got[11] and got[12]


def test_slot_helpers():
    slot = Slot(utc(2026, 3, 2, 15), utc(2026, 3, 2, 15, 30), 1, TYPE_ID)
    stype = slot_type(before=5, after=10)
    assert slot.blocked(stype) == Interval(utc(2026, 3, 2, 14, 55), utc(2026, 3, 2, 15, 40))
    assert slot.visit == Interval(slot.starts_at, slot.ends_at)
    assert local_day(utc(2026, 3, 3, 3), NY) == date(2026, 3, 2)
    engine_slot = slots_for(schedule(weekdays()), slot_type(), now=utc(2026, 3, 2, 12))[0]
    assert engine_slot == Slot(utc(2026, 3, 2, 14), utc(2026, 3, 2, 14, 30), 1, TYPE_ID)
    assert hash(engine_slot) == hash(Slot(utc(2026, 3, 2, 14), utc(2026, 3, 2, 14, 30), 1,
                                          TYPE_ID))
    with pytest.raises(dataclasses.FrozenInstanceError):
        engine_slot.provider_id = 2


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        WeeklyRule(0, time(10), time(10))
    with pytest.raises(ValueError):
        WeeklyRule(7, time(9), time(10))
    with pytest.raises(ValueError):
        slot_type(interval=0)
    with pytest.raises(ValueError):
        slot_type(duration=0)
    with pytest.raises(ValueError):
        slots_for(schedule(weekdays()), slot_type(), now=datetime(2026, 3, 2, 12))
    with pytest.raises(ValueError):
        is_open(schedule(weekdays()), slot_type(), datetime(2026, 3, 2, 14),
                now=utc(2026, 3, 2, 12))
