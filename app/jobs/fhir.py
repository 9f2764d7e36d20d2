"""The FHIR bulk export job (issue 17): thin; ``app.services.fhir_export`` does the work.

``run_export`` writes one resource type per transaction (one commit each, progress with it), so a
job killed halfway resumes at the next unwritten type when it runs again (RQ's retry, or the
sweep's ``sweep_exports`` for an export whose job was lost). Safe to run twice.
"""
from __future__ import annotations

import logging

from app.jobs import enqueue, job_session
from app.jobs import now as _now
from app.models import FhirExport
from app.services import fhir_export

log = logging.getLogger(__name__)


def run_export(export_id: int) -> str:
    with job_session() as session:
        while True:
            export = session.get(FhirExport, export_id, with_for_update={"skip_locked": True})
            if export is None:
                session.rollback()
                return "busy or gone"          # another run holds it, or it was deleted
            more = fhir_export.run_next(session, export, now=_now())
            session.commit()
            if not more:
                return export.status


def sweep_exports() -> dict:
    """Rerun exports whose job was lost (still queued or running after fhir_export.STALE)."""
    with job_session() as session:
        ids = fhir_export.resumable(session, now=_now())
        session.rollback()
    for export_id in ids:
        enqueue(run_export, export_id)
    return {"fhir_exports_resumed": len(ids)} if ids else {}
