"""When a Good Faith Estimate is due (45 CFR 149.610(b)(1)(vi)): scheduled at least 3 business days
ahead, within 1 business day of scheduling; at least 10 business days ahead, within 3 business days;
otherwise at scheduling. Business days are Monday to Friday (US federal holidays are not skipped: a
documented simplification that can only make the due date earlier)."""
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from app.services.estimates import add_business_days, business_days_between, gfe_due_by

NY = ZoneInfo("America/New_York")
BOOKED = datetime(2026, 12, 7, 8, 0, tzinfo=NY)           # Monday


def visit(day: int, month: int = 12) -> datetime:
    return datetime(2026, month, day, 10, 0, tzinfo=NY)


def end_of(day: int, month: int = 12) -> datetime:
    return datetime(2026, month, day, 23, 59, 59, tzinfo=NY).astimezone(timezone.utc)


@pytest.mark.parametrize("visit_day, due", [
    (9, None),          # Wednesday: 2 business days away -> at scheduling
    (10, end_of(8)),    # Thursday: 3 business days -> 1 business day (Tuesday)
    (18, end_of(8)),    # 9 business days -> 1 business day
    (21, end_of(10)),   # Monday Dec 21: 10 business days -> 3 business days (Thursday)
    (31, end_of(10)),
])
def test_due_by_from_monday(visit_day, due):
    got = gfe_due_by(BOOKED, visit(visit_day), "America/New_York")
    assert got == (due or BOOKED)


def test_weekends_are_not_business_days():
    friday = datetime(2026, 12, 11, 16, 0, tzinfo=NY)
    assert business_days_between(friday.date(), visit(14).date()) == 1        # Sat, Sun do not count
    assert gfe_due_by(friday, visit(16), "America/New_York") == end_of(14)   # Wed is 3 days away: due Monday
    assert gfe_due_by(friday, visit(28), "America/New_York") == end_of(16)   # 11 days away: due Wednesday


def test_the_clinic_time_zone_decides_the_day():
    # 03:00 UTC Tuesday is still Monday evening in New York.
    booked = datetime(2026, 12, 8, 3, 0, tzinfo=timezone.utc)
    assert gfe_due_by(booked, visit(11), "America/New_York") == end_of(8)


def test_federal_holidays_are_not_skipped():
    wednesday = datetime(2026, 11, 25, 9, 0, tzinfo=NY)          # Thanksgiving is Thursday Nov 26
    assert add_business_days(wednesday.date(), 1).day == 26
    assert gfe_due_by(wednesday, visit(1), "America/New_York") == end_of(26, 11)
