"""The ledger's daily job (issue 16): a thin caller of ``app.services.ledger_reconcile``.

``reconcile_yesterday`` reconciles the UTC day before (once RECONCILE_GRACE has passed after its
end) and runs again every day of the last LOOKBACK_DAYS whose run failed (Stripe unreachable) or
was interrupted. A day with a finished run is not run twice, so calling it more often than daily
(every sweep) is safe; ``reconcile_day`` commits its own steps.
"""
from __future__ import annotations

from app.jobs import job_session
from app.jobs import now as _now
from app.services import ledger_reconcile
from app.services.audit import Actor


def reconcile_yesterday() -> dict:
    with job_session() as session:
        runs = ledger_reconcile.reconcile_due(session, now=_now(), actor=Actor.system("job"))
        result = {"ledger_reconciled": len(runs)}
        for run in runs:
            result[f"ledger_{run.status}"] = result.get(f"ledger_{run.status}", 0) + 1
        return result
