"""The admin's ledger pages (issue 16): the report with its range, totals and per-provider table, each
day's reconciliation and its page naming the mismatches, "Reconcile now" (POST, CSRF) and the CSV.
Admins only; bad dates are a clear 400."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select

from app.models import ClinicSettings
from app.models.ledger import LedgerReconciliation
from app.services import ledger
from app.services.ledger import Entry
from tests.helpers.payments import sign_in
from tests.helpers.web import csrf_from

UTC = timezone.utc


@pytest.fixture
def admin(client, factories):
    user = factories.user("admin")
    sign_in(client, user)
    return user


@pytest.fixture
def posted(db, factories):
    db.add(ClinicSettings(id=1, name="Ledger Clinic", timezone="America/New_York"))
    provider = factories.provider(full_name="Dr. Page Ledger")
    ledger.post(db, kind="charge", dedupe_key="charge:ch_page", occurred_at=datetime(2026, 12, 7, 15, 0, tzinfo=UTC),
                provider_id=provider.id,
                entries=[Entry(ledger.STRIPE_BALANCE, 12113, balance_transaction_id="txn_page"),
                         Entry(ledger.STRIPE_FEES, 387, balance_transaction_id="txn_page"),
                         Entry(ledger.PATIENT_PAYMENTS, -12500)])
    run = LedgerReconciliation(day=date(2026, 12, 7), window_start=datetime(2026, 12, 7, tzinfo=UTC),
                               window_end=datetime(2026, 12, 8, tzinfo=UTC), status="mismatched", matched=3,
                               started_at=datetime(2026, 12, 8, 1, 0, tzinfo=UTC),
                               finished_at=datetime(2026, 12, 8, 1, 0, 5, tzinfo=UTC),
                               mismatches=[{"kind": "missing_in_ledger", "balance_transaction": "txn_Unseen1",
                                            "source": "ch_Unseen1", "type": "charge", "account": "stripe_balance",
                                            "stripe_cents": 4056, "ledger_cents": 0},
                                           {"kind": "fee_differs", "balance_transaction": "txn_Fee2",
                                            "source": "ch_Fee2", "type": "charge", "account": "fees",
                                            "stripe_cents": 175, "ledger_cents": 174}])
    db.add(run)
    db.commit()
    return provider, run


def test_the_report_page_shows_the_days_the_providers_and_the_runs(client, admin, posted):
    provider, run = posted
    response = client.get("/admin/ledger?from=2026-12-06&to=2026-12-08")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Dr. Page Ledger" in html and "$125.00" in html and "$121.13" in html and "$3.87" in html
    day = html.split('id="day-2026-12-07"')[1].split("</tr>")[0]
    assert "$125.00" in day and f"/admin/ledger/reconciliations/{run.id}" in day and "2 mismatches" in day
    assert "Not run" in html.split('id="day-2026-12-06"')[1].split("</tr>")[0]
    assert 'name="csrf_token"' in html and "Reconcile now" in html
    assert "Ledger" in client.get("/admin/").get_data(as_text=True)
    # Without a range: the last week up to the clinic's today.
    assert client.get("/admin/ledger").status_code == 200


def test_the_reconciliation_page_names_each_mismatch(client, admin, posted):
    _, run = posted
    html = client.get(f"/admin/ledger/reconciliations/{run.id}").get_data(as_text=True)
    assert "Mismatched" in html and "3 balance transactions matched; 2 mismatches" in html
    first = html.split('id="mismatch-1"')[1].split("</article>")[0]
    assert "Stripe has it, the ledger does not" in first and "txn_Unseen1" in first and "ch_Unseen1" in first
    assert "$40.56" in first
    second = html.split('id="mismatch-2"')[1].split("</article>")[0]
    assert "Fee differs" in second and "$1.75" in second and "$1.74" in second
    assert client.get("/admin/ledger/reconciliations/999999").status_code == 404


def test_the_csv_export(client, admin, posted):
    provider, _ = posted
    response = client.get("/admin/ledger.csv?from=2026-12-07&to=2026-12-07")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="ledger-2026-12-07-2026-12-07.csv"' in response.headers["Content-Disposition"]
    lines = response.get_data(as_text=True).splitlines()
    assert lines[1].startswith(f"2026-12-07,{provider.id},Dr. Page Ledger,12500,387,")


@pytest.mark.parametrize("query,message", [
    ("from=yesterday", "Dates look like 2026-12-31."),
    ("to=2026-13-01", "Dates look like 2026-12-31."),
    ("from=2026-12-09&to=2026-12-07", "The end date is before the start date."),
    ("from=2020-01-01&to=2026-12-07", "Choose at most 366 days."),
    ("from=1066-10-14&to=1066-10-15", "out of range"),
    ("from=99999-01-01", "Dates look like"),
    ("from=%00", "not allowed"),
])
def test_bad_dates_are_a_clear_400(client, admin, query, message):
    for path in ("/admin/ledger", "/admin/ledger.csv"):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query)
        assert message in response.get_data(as_text=True)


def test_reconcile_now_runs_the_day_and_shows_it(db, client, admin, sandbox):
    page = client.get("/admin/ledger").get_data(as_text=True)
    response = client.post("/admin/ledger/reconcile", data={"day": "2001-01-01", "csrf_token": csrf_from(page)})
    assert response.status_code == 303
    run = db.scalars(select(LedgerReconciliation)).one()
    assert response.location.endswith(f"/admin/ledger/reconciliations/{run.id}")
    assert (run.day, run.status, run.matched) == (date(2001, 1, 1), "matched", 0)
    html = client.get(response.location).get_data(as_text=True)
    assert "the ledger agrees with Stripe" in html and "Matched" in html


@pytest.mark.parametrize("day,message", [("", "Dates look like"), ("2001-02-30", "Dates look like"),
                                         ("2100-01-01", "has not started yet"), ("2999-01-01", "out of range")])
def test_reconcile_now_refuses_a_bad_day(db, client, admin, day, message):
    page = client.get("/admin/ledger").get_data(as_text=True)
    response = client.post("/admin/ledger/reconcile", data={"day": day, "csrf_token": csrf_from(page)})
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert db.scalars(select(LedgerReconciliation)).all() == []


def test_reconcile_now_needs_the_forms_token(db, client, admin):
    assert client.post("/admin/ledger/reconcile", data={"day": "2001-01-01"}).status_code == 400
    assert db.scalars(select(LedgerReconciliation)).all() == []


@pytest.mark.parametrize("role", ["billing", "provider", "patient"])
def test_only_admins(app, db, client, factories, posted, role):
    _, run = posted
    sign_in(client, factories.user(role))
    for path in ("/admin/ledger", "/admin/ledger.csv", f"/admin/ledger/reconciliations/{run.id}"):
        assert client.get(path).status_code == 403, path
    app.config["WTF_CSRF_ENABLED"] = False          # a valid form, still refused for the role
    try:
        assert client.post("/admin/ledger/reconcile", data={"day": "2001-01-01"}).status_code == 403
    finally:
        app.config["WTF_CSRF_ENABLED"] = True
    anonymous = app.test_client()
    response = anonymous.get("/admin/ledger")
    assert response.status_code == 302 and "/login" in response.location
    assert db.scalars(select(LedgerReconciliation)).all() == [run]
