"""The fee schedule: the price in force at a date (per modifier), and the admin page that sets it."""
from __future__ import annotations

import re
from datetime import date

import pytest
from sqlalchemy import select

from app.models import AuditEvent, BillingCode, FeeScheduleEntry
from app.services import codes, fees
from app.services.audit import Actor
from tests.helpers.web import csrf_from

ADMIN = Actor.system("test")


@pytest.fixture
def shipped(db):
    codes.seed_shipped(db, ADMIN)
    db.commit()
    return {c.code: c for c in db.scalars(select(BillingCode))}


def _set(db, code, cents, on, modifier=""):
    fees.set_price(db, code_id=code.id, modifier=modifier, price_cents=cents, effective_from=on, actor=ADMIN)
    db.commit()


def test_price_in_force_follows_the_effective_date(db, shipped):
    visit = shipped["LOC-CONSULT"]
    assert fees.price_for(db, visit.id, "", date(2026, 6, 1)) is None         # no price yet
    _set(db, visit, 15000, date(2026, 1, 1))
    _set(db, visit, 17500, date(2027, 1, 1))                                   # a change to come
    assert fees.price_for(db, visit.id, "", date(2025, 12, 31)) is None
    assert fees.price_for(db, visit.id, "", date(2026, 1, 1)) == 15000
    assert fees.price_for(db, visit.id, "", date(2026, 12, 31)) == 15000
    assert fees.price_for(db, visit.id, "", date(2027, 1, 1)) == 17500
    _set(db, visit, 16000, date(2026, 1, 1))                                   # the same date: replaced
    assert fees.price_for(db, visit.id, "", date(2026, 6, 1)) == 16000
    assert db.query(FeeScheduleEntry).count() == 2
    details = [e.details for e in db.scalars(select(AuditEvent).where(AuditEvent.action == "fee.price_set")
                                             .order_by(AuditEvent.seq))]
    assert [(d["price_cents"], d["previous_cents"]) for d in details] == [(15000, None), (17500, None),
                                                                         (16000, 15000)]


def test_a_modifier_price_wins_over_the_plain_price(db, shipped):
    visit = shipped["LOC-TELE"]
    _set(db, visit, 9500, date(2026, 1, 1))
    _set(db, visit, 8000, date(2026, 3, 1), modifier="95")
    _set(db, visit, 9900, date(2026, 6, 1))                                    # a later plain price
    assert fees.price_for(db, visit.id, "95", date(2026, 2, 1)) == 9500        # before the 95 price
    assert fees.price_for(db, visit.id, "95", date(2026, 7, 1)) == 8000        # the 95 price still wins
    assert fees.price_for(db, visit.id, "", date(2026, 7, 1)) == 9900
    assert fees.price_for(db, visit.id, "gt", date(2026, 7, 1)) == 9900        # no GT price: the plain one


def test_schedule_shows_current_and_upcoming_prices(db, shipped):
    visit = shipped["LOC-FOLLOWUP"]
    _set(db, visit, 7000, date(2026, 1, 1))
    _set(db, visit, 7500, date(2026, 5, 1))
    _set(db, visit, 6500, date(2026, 5, 1), modifier="95")
    _set(db, visit, 8000, date(2027, 1, 1))
    row = next(r for r in fees.schedule(db, date(2026, 12, 8)) if r.code.id == visit.id)
    assert [(p.modifier, p.price_cents) for p in row.current] == [("", 7500), ("95", 6500)]
    assert [(p.price_cents, p.effective_from) for p in row.upcoming] == [(8000, date(2027, 1, 1))]


def test_bad_prices_are_refused_by_the_service(db, shipped):
    visit = shipped["LOC-CONSULT"]
    for cents, modifier in ((0, ""), (-5, ""), (10**12, ""), (100, "ABC"), (100, "9 ")):
        with pytest.raises(fees.PriceError):
            fees.set_price(db, code_id=visit.id, modifier=modifier, price_cents=cents,
                           effective_from=date(2026, 1, 1), actor=ADMIN)
    with pytest.raises(fees.PriceError):
        fees.set_price(db, code_id=999999, modifier="", price_cents=100, effective_from=date(2026, 1, 1), actor=ADMIN)
    db.rollback()
    assert db.query(FeeScheduleEntry).count() == 0


# -- the admin page --------------------------------------------------------------------------------

def _post(client, url, data):
    token = csrf_from(client.get("/admin/fees").get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token})


def test_admin_sets_a_price_and_sees_it(client, login_as, db, shipped, clock):
    login_as("admin")
    page = client.get("/admin/fees")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "G0438" in html and "HCPCS" in html and "LOCAL" in html and "No price" in html
    done = _post(client, "/admin/fees/prices", {"code": "g0438", "modifier": "", "amount": "175.50",
                                               "effective_from": "2026-12-01"})
    assert done.status_code == 303, done.get_data(as_text=True)
    later = _post(client, "/admin/fees/prices", {"code": "G0438", "modifier": "95", "amount": "$1,200",
                                                "effective_from": "2027-01-01"})
    assert later.status_code == 303
    html = client.get("/admin/fees").get_data(as_text=True)
    row = re.search(r'<tr id="code-%d".*?</tr>' % shipped["G0438"].id, html, re.S).group(0)
    assert "$175.50" in row and "since 2026-12-01" in row
    assert "$1,200.00 with 95 from 2027-01-01" in row
    assert fees.price_for(db, shipped["G0438"].id, "", date(2026, 12, 7)) == 17550


def test_admin_adds_a_local_code(client, login_as, db, shipped):
    login_as("admin")
    done = _post(client, "/admin/fees/codes", {"code": "loc-visit", "descriptor": "Walk-in visit (local code)"})
    assert done.status_code == 303
    assert "Walk-in visit (local code)" in client.get("/admin/fees").get_data(as_text=True)
    again = _post(client, "/admin/fees/codes", {"code": "LOC-VISIT", "descriptor": "Again"})
    assert again.status_code == 422 and "already exists" in again.get_data(as_text=True)


@pytest.mark.parametrize("data, message", [
    ({"code": "G0438", "amount": "0", "effective_from": "2026-12-01"}, "more than $0.00"),
    ({"code": "G0438", "amount": "12.345", "effective_from": "2026-12-01"}, "Enter an amount in dollars"),
    ({"code": "G0438", "amount": "99999999", "effective_from": "2026-12-01"}, "Enter an amount in dollars"),
    ({"code": "G0438", "amount": "-5", "effective_from": "2026-12-01"}, "Enter an amount in dollars"),
    ({"code": "G0438", "amount": "10", "effective_from": "9999-12-31"}, "out of range"),
    ({"code": "G0438", "amount": "10", "effective_from": "2026-02-30"}, "Not a valid date"),
    ({"code": "G0438", "amount": "10", "modifier": "9!", "effective_from": "2026-12-01"}, "two letters or digits"),
    ({"code": "NOPE", "amount": "10", "effective_from": "2026-12-01"}, "No code is written like that"),
    ({"code": "", "amount": "", "effective_from": ""}, "Enter the code"),
])
def test_bad_price_input_is_refused_and_changes_nothing(client, login_as, db, shipped, data, message):
    login_as("admin")
    response = _post(client, "/admin/fees/prices", data)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.query(FeeScheduleEntry).count() == 0


def test_bad_local_codes_are_refused(client, login_as, db, shipped):
    login_as("admin")
    for data in ({"code": "has space", "descriptor": "x"}, {"code": "X" * 30, "descriptor": "x"},
                 {"code": "LOC-OK", "descriptor": ""}):
        assert _post(client, "/admin/fees/codes", data).status_code == 422
    assert not codes.find(db, "LOCAL:LOC-OK")


def test_only_the_admin_sees_the_fee_schedule(client, login_as, db):
    login_as("billing")
    assert client.get("/admin/fees").status_code == 403


def test_the_demo_seed_ships_codes_and_prices(db):
    from app.services.seed import seed_demo

    seed_demo(db)
    db.commit()
    consult = codes.find(db, "LOC-CONSULT")[0]
    assert fees.price_for(db, consult.id, "", date(2026, 12, 7)) == 15000
    assert not codes.find(db, "99213")                     # no CPT is shipped


def test_the_app_role_may_use_the_new_tables(db):
    from sqlalchemy import text

    for table in ("billing_codes", "fee_schedule"):
        for privilege, expected in (("SELECT", True), ("INSERT", True), ("UPDATE", True), ("DELETE", True),
                                    ("TRUNCATE", False)):
            granted = db.scalar(text("SELECT has_table_privilege(current_user, :t, :p)"), {"t": table, "p": privilege})
            assert granted is expected, (table, privilege)
