"""Expected status per role for the admin's ledger pages (issue 16; merged into test_access.EXPECTED).

The report, its CSV, a reconciliation's page and "Reconcile now" are the admin's alone. The POST
without a day is a 400 (the page says which date is wrong). No page here shows PHI."""
from datetime import date, datetime, timezone

LOGIN, DENY = 302, 403
ADMIN_ONLY = dict(anonymous=LOGIN, patient=DENY, provider=DENY, billing=DENY, admin=200)


def _reconciliation_id(factories):
    from app.models.ledger import LedgerReconciliation

    run = LedgerReconciliation(day=date(2026, 12, 7), window_start=datetime(2026, 12, 7, tzinfo=timezone.utc),
                               window_end=datetime(2026, 12, 8, tzinfo=timezone.utc), status="matched",
                               matched=0, mismatches=[])
    factories.session.add(run)
    factories.session.commit()
    return {"reconciliation_id": run.id}


LEDGER_EXPECTED = {
    ("GET", "admin.ledger"): ADMIN_ONLY,
    ("GET", "admin.ledger_csv"): ADMIN_ONLY,
    ("GET", "admin.ledger_reconciliation"): ADMIN_ONLY,
    ("POST", "admin.ledger_reconcile_now"): dict(ADMIN_ONLY, admin=400),
}
LEDGER_SAMPLE_ARGS = {
    "admin.ledger_reconciliation": _reconciliation_id,
}
