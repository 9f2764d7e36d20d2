"""FHIR bulk export (issue 17): ``GET /fhir/$export`` as a background job writing NDJSON.

``start`` stores a ``FhirExport`` (queued) naming the resource types, in order, and asks for the
job after the commit (intent ``fhir_export``). The job (app/jobs/fhir.py) calls ``run_next`` once
per type: each call builds every resource of the next type not yet done, validated with its R4B
model, stores them as one ``FhirExportFile`` (NDJSON, encrypted at rest) and appends the type to
``done_types``, all in one transaction. A job that dies mid-type leaves nothing of that type
behind, so running it again (the retry, or the sweep's ``resumable``) continues at that type.
Writing a file is a read of PHI by the client: one ``phi.viewed`` audit row per type, naming
the patients whose records it holds.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import FhirClient, FhirExport, FhirExportFile
from app.services import access_log, fhir_clients, fhir_resources
from app.services.fhir_resources import SearchError
from app.services.unit_of_work import request as after_commit

# Computed, not stored (Slot): not part of an export.
EXPORTABLE = tuple(rt.name for rt in fhir_resources.REGISTRY if rt.model is not None)
BATCH = 500
STALE = timedelta(minutes=10)    # a running export untouched this long is resumed by the sweep


def types_for(scopes, requested: str | None) -> list[str]:
    """The types to export: ``_type`` (comma-separated) or every exportable type the scopes allow."""
    if requested:
        wanted = [t.strip() for t in requested.split(",") if t.strip()]
        unknown = [t for t in wanted if t not in EXPORTABLE]
        if unknown or not wanted:
            raise SearchError(f"cannot export type {(unknown or [''])[0][:40]!r}")
        refused = [t for t in wanted if not fhir_clients.allows(scopes, t)]
        if refused:
            raise PermissionError(refused[0])
        return list(dict.fromkeys(wanted))
    return [t for t in EXPORTABLE if fhir_clients.allows(scopes, t)]


def start(session: Session, *, client: FhirClient, types: list[str], request_url: str, now: datetime) -> FhirExport:
    export = FhirExport(client_id=client.id, status="queued", types=types, done_types=[],
                        request_url=request_url[:2000], requested_at=now)
    session.add(export)
    session.flush()
    after_commit(session, "fhir_export", export.id)
    return export


def run_next(session: Session, export: FhirExport, *, now: datetime) -> bool:
    """Write the next type's NDJSON; True while types remain. The caller commits after each call."""
    if export.status in ("completed", "failed"):
        return False
    if export.status == "queued":
        export.status = "running"
        export.started_at = now
    remaining = [t for t in export.types if t not in (export.done_types or [])]
    if not remaining:
        export.status, export.completed_at = "completed", now
        return False
    name = remaining[0]
    rt = fhir_resources.BY_NAME[name]
    # A file left by a run that died after writing it but before... cannot exist (one transaction),
    # yet a row from a concurrent duplicate run is replaced, never doubled.
    existing = session.scalar(select(FhirExportFile).where(FhirExportFile.export_id == export.id,
                                                          FhirExportFile.resource_type == name))
    lines, patients, offset = [], set(), 0
    while True:
        rows = list(session.scalars(rt.base().order_by(rt.order).offset(offset).limit(BATCH)).unique())
        for row in rows:
            lines.append(json.dumps(fhir_resources.to_json(rt.build(session, row)), separators=(",", ":")))
            patients.update(rt.patients_of(row))
        if len(rows) < BATCH:
            break
        offset += BATCH
    content = "".join(line + "\n" for line in lines)
    if existing is None:
        session.add(FhirExportFile(export_id=export.id, resource_type=name, count=len(lines), content=content))
    else:
        existing.count, existing.content = len(lines), content
    export.done_types = [*(export.done_types or []), name]
    access_log.record_view(session, actor=fhir_clients.actor_of(export_client(session, export)),
                           kind="fhir_export", endpoint="fhir.export", patient_ids=sorted(patients),
                           record={"export_id": export.id, "type": name, "count": len(lines)}, at=now)
    if len(export.done_types) >= len(export.types):
        export.status, export.completed_at = "completed", now
        return False
    return True


def export_client(session: Session, export: FhirExport) -> FhirClient:
    return session.get(FhirClient, export.client_id)


def fail(session: Session, export: FhirExport, *, reason: str, now: datetime) -> None:
    export.status, export.error, export.completed_at = "failed", reason[:255], now


def resumable(session: Session, *, now: datetime) -> list[int]:
    """Exports a lost job left queued or running (nothing written for STALE): the sweep reruns them."""
    cutoff = now - STALE
    return list(session.scalars(select(FhirExport.id).where(
        FhirExport.status.in_(("queued", "running")), FhirExport.requested_at < cutoff).order_by(FhirExport.id)))


def manifest(export: FhirExport, *, base_url: str) -> dict:
    return {"transactionTime": fhir_resources._instant(export.started_at or export.requested_at),
            "request": export.request_url, "requiresAccessToken": True,
            "output": [{"type": f.resource_type, "url": f"{base_url}/$export-files/{export.id}/{f.resource_type}.ndjson",
                        "count": f.count} for f in sorted(export.files, key=lambda f: export.types.index(f.resource_type))],
            "error": []}
