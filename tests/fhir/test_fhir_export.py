"""FHIR bulk export (issue 17): $export starts a job, the status URL reports progress and then the
manifest, and the NDJSON files it lists validate under fhir.resources.R4B; a job killed halfway
resumes; the files are the requesting client's only; the CLI makes and revokes clients."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from app.models import AuditEvent, FhirExport, FhirExportFile
from app.services import fhir_export
from app.services.fhir_resources import model_of

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def jobs_app(app):
    from app.jobs import set_app

    set_app(app)
    return app


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _kick_off(client, headers, query=""):
    response = client.get(f"/fhir/$export{query}", headers={**headers, **ASYNC})
    assert response.status_code == 202, response.get_data(as_text=True)
    return _path(response.headers["Content-Location"])


def test_export_runs_through_the_job_to_valid_ndjson(app, client, db, clinic, token_for, jobs_app):
    headers = token_for("system/*.read")
    status_url = _kick_off(client, headers)
    export_id = int(status_url.rsplit("/", 1)[1])
    # the job was asked for after the commit
    from app.jobs import get_queue
    with app.app_context():
        queued = [job for job in get_queue().jobs if job.func_name == "app.jobs.fhir.run_export"]
    assert any(job.args == (export_id,) for job in queued)
    pending = client.get(status_url, headers=headers)
    assert pending.status_code == 202 and pending.headers["X-Progress"].startswith("0%")

    from app.jobs.fhir import run_export
    assert run_export(export_id) == "completed"

    done = client.get(status_url, headers=headers)
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    manifest = done.get_json()
    assert manifest["requiresAccessToken"] is True
    types = [item["type"] for item in manifest["output"]]
    assert types == list(fhir_export.EXPORTABLE) and "Slot" not in types
    counts = {}
    for item in manifest["output"]:
        response = client.get(_path(item["url"]), headers=headers)
        assert response.status_code == 200 and response.mimetype == "application/fhir+ndjson"
        lines = [line for line in response.get_data(as_text=True).splitlines() if line]
        assert len(lines) == item["count"]
        for line in lines:
            resource = model_of(item["type"]).model_validate_json(line)
            assert resource.__resource_type__ == item["type"]
        counts[item["type"]] = item["count"]
    assert counts["Patient"] == 2 and counts["Appointment"] == 2 and counts["Encounter"] == 1
    assert counts["ChargeItem"] == 2 and counts["Claim"] == 1 and counts["ExplanationOfBenefit"] == 1
    # each file written is a read by the client, each download another
    db.expire_all()
    written = db.scalars(select(AuditEvent).where(AuditEvent.action == "phi.viewed",
                                                  AuditEvent.details["kind"].astext == "fhir_export")).all()
    assert len(written) == len(types)
    patient_file = next(e for e in written if e.details["record"]["type"] == "Patient")
    assert set(patient_file.details["patient_ids"]) == {clinic["a"], clinic["b"]}
    assert all(e.actor_type == "fhir_client" for e in written)
    downloads = db.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "phi.viewed", AuditEvent.details["endpoint"].astext == "fhir.export_file"))
    assert downloads == len(types)


def test_another_client_cannot_see_the_export(client, db, clinic, token_for, jobs_app):
    mine = token_for("system/*.read")
    status_url = _kick_off(client, mine, "?_type=Patient")
    from app.jobs.fhir import run_export
    run_export(int(status_url.rsplit("/", 1)[1]))
    manifest = client.get(status_url, headers=mine).get_json()
    file_url = _path(manifest["output"][0]["url"])
    theirs = token_for("system/*.read")
    assert client.get(status_url, headers=theirs).status_code == 404
    assert client.get(file_url, headers=theirs).status_code == 404
    assert client.get(file_url).status_code == 401
    assert client.get(file_url, headers=mine).status_code == 200


def test_export_scopes_and_parameters(client, db, clinic, token_for):
    patients_only = token_for("system/Patient.read")
    status_url = _kick_off(client, patients_only)
    job = db.get(FhirExport, int(status_url.rsplit("/", 1)[1]))
    assert job.types == ["Patient"]
    assert client.get("/fhir/$export?_type=Encounter", headers={**patients_only, **ASYNC}).status_code == 403
    assert client.get("/fhir/$export", headers=patients_only).status_code == 400           # no Prefer
    assert client.get("/fhir/$export?_type=Observation", headers={**patients_only, **ASYNC}).status_code == 400
    assert client.get("/fhir/$export?_since=2026-01-01", headers={**patients_only, **ASYNC}).status_code == 400
    assert client.get("/fhir/$export?_outputFormat=text/csv", headers={**patients_only, **ASYNC}).status_code == 400
    slots_only = token_for("system/Slot.read")
    assert client.get("/fhir/$export", headers={**slots_only, **ASYNC}).status_code == 403
    assert client.get("/fhir/$export", headers=ASYNC).status_code == 401


def _bearer(client, creds) -> dict:
    token = client.post("/fhir/auth/token", data={"grant_type": "client_credentials"}, headers=creds.basic())
    return {"Authorization": f"Bearer {token.get_json()['access_token']}"}


def test_a_job_killed_halfway_resumes_without_duplicates(app, client, db, clinic, make_client, jobs_app, clock):
    creds = make_client("system/*.read")
    headers = _bearer(client, creds)
    status_url = _kick_off(client, headers)
    export_id = int(status_url.rsplit("/", 1)[1])
    job = db.get(FhirExport, export_id)
    assert fhir_export.run_next(db, job, now=clock.now()) is True        # the first type, committed
    db.commit()
    fhir_export.run_next(db, db.get(FhirExport, export_id), now=clock.now())    # the second, then the crash
    db.rollback()
    progress = client.get(status_url, headers=headers)
    assert progress.status_code == 202
    total = len(fhir_export.EXPORTABLE)
    assert progress.headers["X-Progress"] == f"{100 // total}% (1/{total} types)"
    # the sweep finds it once it is stale, and the rerun finishes it
    from datetime import timedelta
    clock.advance(fhir_export.STALE + timedelta(seconds=1))
    assert fhir_export.resumable(db, now=clock.now()) == [export_id]
    db.rollback()
    from app.jobs.fhir import run_export
    assert run_export(export_id) == "completed"
    assert run_export(export_id) == "completed"          # safe to run twice
    db.expire_all()
    rows = db.execute(select(FhirExportFile.resource_type, func.count()).where(FhirExportFile.export_id == export_id)
                      .group_by(FhirExportFile.resource_type)).all()
    assert sorted(t for t, _ in rows) == sorted(fhir_export.EXPORTABLE) and all(n == 1 for _, n in rows)
    assert client.get(status_url, headers=headers).status_code == 401        # that token expired meanwhile
    assert client.get(status_url, headers=_bearer(client, creds)).status_code == 200
    assert fhir_export.resumable(db, now=clock.now()) == []


def test_cli_creates_lists_and_revokes_clients(app, client, db):
    runner = app.test_cli_runner()
    made = runner.invoke(args=["fhir", "create-client", "Payer X", "--scope", "system/Claim.read",
                               "--scope", "system/ExplanationOfBenefit.read"])
    assert made.exit_code == 0, made.output
    fields = dict(line.split(": ", 1) for line in made.output.splitlines() if ": " in line)
    token = client.post("/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": fields["client_id"],
                                                   "client_secret": fields["client_secret"]})
    assert token.status_code == 200 and token.get_json()["scope"] == "system/Claim.read system/ExplanationOfBenefit.read"
    listed = runner.invoke(args=["fhir", "list-clients"])
    assert fields["client_id"] in listed.output and fields["client_secret"] not in listed.output
    bad = runner.invoke(args=["fhir", "create-client", "Y", "--scope", "patient/*.write"])
    assert bad.exit_code == 2
    revoked = runner.invoke(args=["fhir", "revoke-client", fields["client_id"]])
    assert revoked.exit_code == 0
    bearer = {"Authorization": f"Bearer {token.get_json()['access_token']}"}
    assert client.get("/fhir/Claim", headers=bearer).status_code == 401
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action.in_(("fhir.client_created", "fhir.client_revoked")))) == 2
