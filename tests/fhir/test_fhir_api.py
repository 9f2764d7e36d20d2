"""The read-only FHIR R4 API (issue 17): tokens and scopes, every resource type valid under
fhir.resources.R4B, search parameters and paging, $everything, the CapabilityStatement, and one
audit event per read."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from sqlalchemy import func, select

from app.models import AuditEvent
from app.services import fhir_resources
from app.services.fhir_resources import REGISTRY, model_of

TYPES = [rt.name for rt in REGISTRY]


def _get(client, url, headers):
    response = client.get(url, headers=headers)
    assert response.status_code < 500, (url, response.status_code)
    return response


def _bundle(response) -> Bundle:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/fhir+json"
    assert response.headers["Cache-Control"] == "no-store"
    bundle = Bundle.model_validate_json(response.get_data(as_text=True))
    assert bundle.type == "searchset"
    for entry in bundle.entry or []:
        data = entry.resource.model_dump(mode="json", exclude_none=True, by_alias=True)
        model_of(data["resourceType"]).model_validate(data)     # each entry, against its own R4B model
    return bundle


def _resources(response) -> list[dict]:
    return [entry["resource"] for entry in response.get_json().get("entry", [])]


def _outcome(response, status: int) -> OperationOutcome:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.mimetype == "application/fhir+json"
    return OperationOutcome.model_validate_json(response.get_data(as_text=True))


def _views(db) -> list[AuditEvent]:
    db.expire_all()
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == "phi.viewed",
                                                    AuditEvent.actor_type == "fhir_client")
                           .order_by(AuditEvent.seq)))


# -- tokens ----------------------------------------------------------------------------------------

def test_client_credentials_by_basic_auth_or_form_give_an_expiring_bearer_token(client, db, make_client):
    creds = make_client("system/Patient.read", "system/Encounter.read")
    by_basic = client.post("/fhir/auth/token", data={"grant_type": "client_credentials"}, headers=creds.basic())
    assert by_basic.status_code == 200
    body = by_basic.get_json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == "system/Patient.read system/Encounter.read"
    assert by_basic.headers["Cache-Control"] == "no-store"
    by_form = client.post("/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": creds.client_id,
                                                     "client_secret": creds.secret, "scope": "system/Patient.read"})
    assert by_form.status_code == 200 and by_form.get_json()["scope"] == "system/Patient.read"
    assert by_form.get_json()["access_token"] != body["access_token"]
    # only hashes are stored
    from app.models import FhirClient, FhirToken
    stored = db.scalars(select(FhirToken.token_hash)).all()
    assert body["access_token"] not in stored and len(stored) == 2
    assert creds.secret not in db.scalar(select(FhirClient.secret_hash))


def test_token_endpoint_refusals(client, make_client):
    creds = make_client("system/Patient.read")
    wrong = client.post("/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": creds.client_id,
                                                   "client_secret": "nope"})
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in wrong.headers
    unknown = client.post("/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": "fhir-x",
                                                     "client_secret": "nope"})
    assert unknown.status_code == 401
    grant = client.post("/fhir/auth/token", data={"grant_type": "password"}, headers=creds.basic())
    assert grant.status_code == 400 and grant.get_json()["error"] == "unsupported_grant_type"
    scope = client.post("/fhir/auth/token", data={"grant_type": "client_credentials", "scope": "system/Encounter.read"},
                        headers=creds.basic())
    assert scope.status_code == 400 and scope.get_json()["error"] == "invalid_scope"
    junk = client.post("/fhir/auth/token", data={"grant_type": "client_credentials"},
                       headers={"Authorization": "Basic !!!not-base64"})
    assert junk.status_code == 401


def test_missing_invalid_expired_and_revoked_tokens_are_401(app, client, db, clock, make_client):
    _outcome(client.get("/fhir/Patient"), 401)
    assert client.get("/fhir/Patient").headers["WWW-Authenticate"].startswith("Bearer")
    bad = _outcome(client.get("/fhir/Patient", headers={"Authorization": "Bearer not-a-token"}), 401)
    assert bad.issue[0].code == "login"
    creds = make_client("system/*.read")
    token = client.post("/fhir/auth/token", data={"grant_type": "client_credentials"},
                        headers=creds.basic()).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/fhir/Patient", headers=headers).status_code == 200
    clock.advance(timedelta(minutes=5, seconds=1))
    expired = client.get("/fhir/Patient", headers=headers)
    _outcome(expired, 401)
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    # a revoked client's live token stops working at once
    token = client.post("/fhir/auth/token", data={"grant_type": "client_credentials"},
                        headers=creds.basic()).get_json()["access_token"]
    from app.services import fhir_clients
    from app.services.audit import Actor
    fhir_clients.revoke_client(db, fhir_clients.find_client(db, creds.client_id), actor=Actor.system("test"),
                               now=clock.now())
    db.commit()
    _outcome(client.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"}), 401)
    again = client.post("/fhir/auth/token", data={"grant_type": "client_credentials"}, headers=creds.basic())
    assert again.status_code == 401


def test_scopes_are_enforced_per_resource_type(client, db, clinic, token_for):
    headers = token_for("system/Patient.read", "system/Appointment.read")
    refused = _outcome(client.get("/fhir/Encounter", headers=headers), 403)
    assert refused.issue[0].code == "forbidden"
    _outcome(client.get(f"/fhir/Encounter/{clinic['encounter']}", headers=headers), 403)
    assert client.get("/fhir/Patient", headers=headers).status_code == 200
    assert client.get(f"/fhir/Appointment/{clinic['appointment_a']}", headers=headers).status_code == 200
    # $everything carries only the types the token may read
    everything = client.get(f"/fhir/Patient/{clinic['a']}/$everything", headers=headers)
    assert {r["resourceType"] for r in _resources(everything)} == {"Patient", "Appointment"}
    encounter_only = token_for("system/Encounter.read")
    _outcome(client.get(f"/fhir/Patient/{clinic['a']}/$everything", headers=encounter_only), 403)
    assert client.get("/fhir/Encounter", headers=encounter_only).status_code == 200


# -- every resource type -----------------------------------------------------------------------------

@pytest.mark.parametrize("resource_type", TYPES)
def test_every_resource_type_is_served_and_valid_r4b(client, db, clinic, token_for, resource_type):
    headers = token_for("system/*.read")
    bundle = _bundle(_get(client, f"/fhir/{resource_type}?_count=5", headers))
    assert bundle.total >= 1 and bundle.entry, resource_type
    first = bundle.entry[0].resource
    assert first.__resource_type__ == resource_type
    read = _get(client, f"/fhir/{resource_type}/{first.id}", headers)
    assert read.status_code == 200 and read.mimetype == "application/fhir+json"
    assert read.headers["Cache-Control"] == "no-store"
    resource = model_of(resource_type).model_validate_json(read.get_data(as_text=True))
    assert resource.id == first.id
    _outcome(_get(client, f"/fhir/{resource_type}/999999999", headers), 404)


def test_resources_carry_the_clinic_data(client, clinic, token_for):
    headers = token_for("system/*.read")
    encounter = client.get(f"/fhir/Encounter/{clinic['encounter']}", headers=headers).get_json()
    assert encounter["subject"]["reference"] == f"Patient/{clinic['a']}"
    assert encounter["status"] == "in-progress"
    assert encounter["reasonCode"][0]["coding"][0]["code"] == "J06.9"
    charges = _resources(client.get(f"/fhir/ChargeItem?context=Encounter/{clinic['encounter']}", headers=headers))
    assert sorted(c["quantity"]["value"] for c in charges) == [1, 2]
    eob = _resources(client.get(f"/fhir/ExplanationOfBenefit?claim={clinic['claim']}", headers=headers))[0]
    assert eob["payment"]["amount"] == {"value": 70.0, "currency": "USD"}
    assert eob["claim"]["reference"] == f"Claim/{clinic['claim']}"
    coverage = client.get(f"/fhir/Coverage/{clinic['coverage']}", headers=headers).get_json()
    assert coverage["subscriberId"] == "W100000003" and coverage["beneficiary"]["reference"] == f"Patient/{clinic['a']}"
    slots = client.get(f"/fhir/Slot?schedule={clinic['provider']}&_count=3", headers=headers).get_json()
    slot = slots["entry"][0]["resource"]
    assert slot["status"] == "free" and slot["schedule"]["reference"] == f"Schedule/{clinic['provider']}"
    assert client.get(f"/fhir/Slot/{slot['id']}", headers=headers).status_code == 200
    # a booked time is not a free slot
    booked = client.get(f"/fhir/Slot?schedule={clinic['provider']}&start=ge2026-12-07T15:00:00Z"
                        f"&start=lt2026-12-07T15:30:00Z", headers=headers).get_json()
    assert booked["total"] == 0
    after = client.get(f"/fhir/Slot?schedule={clinic['provider']}&start=ge2026-12-07T15:00:00Z"
                       f"&start=le2026-12-07T15:59:00Z", headers=headers).get_json()
    assert {e["resource"]["start"] for e in after["entry"]} == {"2026-12-07T15:30:00Z"}


# -- search and paging --------------------------------------------------------------------------------

def test_search_by_patient_date_status_and_practitioner(client, clinic, token_for):
    headers = token_for("system/*.read")

    def ids(url):
        return sorted(int(r["id"]) for r in _resources(_get(client, url, headers)))

    a, b = clinic["appointment_a"], clinic["appointment_b"]
    assert ids(f"/fhir/Appointment?patient={clinic['a']}") == [a]
    assert ids(f"/fhir/Appointment?patient=Patient/{clinic['b']}") == [b]
    assert ids(f"/fhir/Appointment?patient={clinic['a']},{clinic['b']}") == sorted([a, b])
    assert ids(f"/fhir/Appointment?practitioner=Practitioner/{clinic['provider']}") == sorted([a, b])
    assert ids("/fhir/Appointment?date=2026-12-07") == sorted([a, b])
    assert ids("/fhir/Appointment?date=ge2026-12-07T15:30:00Z") == [b]
    assert ids("/fhir/Appointment?date=lt2026-12-07T15:30:00Z") == [a]
    assert ids("/fhir/Appointment?date=ge2026-12-07&date=le2026-12-07") == sorted([a, b])
    assert ids("/fhir/Appointment?date=gt2026-12-07") == []
    assert ids("/fhir/Appointment?status=checked-in") == [a]      # opening the note checked the visit in
    assert ids("/fhir/Appointment?status=booked") == [b]
    assert ids("/fhir/Appointment?status=cancelled") == []
    assert ids(f"/fhir/Encounter?patient={clinic['b']}") == []
    assert ids(f"/fhir/Encounter?patient={clinic['a']}&status=in-progress") == [clinic["encounter"]]
    assert ids(f"/fhir/Claim?patient={clinic['a']}&status=active") == [clinic["claim"]]
    assert ids(f"/fhir/Coverage?patient={clinic['b']}") == []
    assert ids(f"/fhir/Patient?_id={clinic['b']}") == [clinic["b"]]
    audit = _resources(_get(client, f"/fhir/AuditEvent?patient={clinic['a']}&action=encounter.opened", headers))
    assert len(audit) == 1 and audit[0]["entity"][0]["what"]["reference"] == f"Patient/{clinic['a']}"


def test_paging_follows_next_links_through_every_match(client, clinic, token_for):
    headers = token_for("system/*.read")
    # slots (computed) do not change as we read; audit events would (each read adds one)
    seen, url, pages = [], f"/fhir/Slot?schedule={clinic['provider']}&start=2026-12-07&_count=5", 0
    total = None
    while url:
        bundle = _bundle(_get(client, url, headers))
        total = bundle.total if total is None else total
        assert bundle.total == total and len(bundle.entry or []) <= 5
        seen.extend(e.resource.id for e in bundle.entry or [])
        nxt = [link.url for link in bundle.link if link.relation == "next"]
        url = None
        if nxt:
            parts = urlsplit(nxt[0])
            url = f"{parts.path}?{parts.query}"
        pages += 1
    assert total >= 10 and len(seen) == total == len(set(seen)) and pages == -(-total // 5)
    # _count is capped; _count=0 gives the total only
    assert len(_resources(client.get("/fhir/AuditEvent?_count=100000", headers=headers))) <= 100
    zero = client.get("/fhir/Appointment?_count=0", headers=headers).get_json()
    assert zero["total"] == 2 and not zero.get("entry")


@pytest.mark.parametrize("query", [
    "/fhir/Appointment?bogus=1", "/fhir/Appointment?date=yesterday", "/fhir/Appointment?date=xx2026-01-01",
    "/fhir/Appointment?date=2026-13-45", "/fhir/Appointment?patient=Practitioner/1", "/fhir/Appointment?patient=abc",
    "/fhir/Appointment?_count=-1", "/fhir/Appointment?_count=abc", "/fhir/Appointment?_offset=x",
    "/fhir/Appointment?patient=", "/fhir/Encounter?date=ne2026-01-01", "/fhir/Slot?start=nonsense",
    "/fhir/Patient?_format=xml", "/fhir/Appointment?patient=99999999999999999999",
])
def test_bad_search_parameters_are_400_operation_outcomes(client, db, token_for, query):
    headers = token_for("system/*.read")
    before = len(_views(db))
    _outcome(client.get(query, headers=headers), 400)
    assert len(_views(db)) == before          # an error shows nothing: no view to audit


@pytest.mark.parametrize("path", [
    "/fhir/Observation", "/fhir/Observation/1", "/fhir/Patient/abc", "/fhir/Patient/-1", "/fhir/Patient/1.5",
    "/fhir/Patient/99999999999999999999999", "/fhir/Slot/1-2-3", "/fhir/Slot/x", "/fhir/Slot/1-1-99999999999",
    "/fhir/Patient/1/$everything", "/fhir/a/b/c/d", "/fhir/$export-status/999", "/fhir/$export-files/1/Patient.ndjson",
    "/fhir/Patient/%00", "/fhir/Patient?_id=%00",
])
def test_unknown_things_are_4xx_never_5xx(client, token_for, path):
    response = client.get(path, headers=token_for("system/*.read"))
    assert 400 <= response.status_code < 500, (path, response.status_code)


def test_writes_are_refused(client, token_for):
    headers = token_for("system/*.read")
    for method in ("post", "put", "delete", "patch"):
        response = getattr(client, method)("/fhir/Patient/1", headers=headers, json={"resourceType": "Patient"})
        assert response.status_code == 405, method


# -- $everything -------------------------------------------------------------------------------------

def test_everything_returns_that_patients_resources_only(client, clinic, token_for):
    headers = token_for("system/*.read")
    response = client.get(f"/fhir/Patient/{clinic['a']}/$everything", headers=headers)
    bundle = _bundle(response)
    resources = _resources(response)
    assert bundle.total == len(resources)
    kinds = {r["resourceType"] for r in resources}
    assert kinds == {"Patient", "Appointment", "Encounter", "Coverage", "ChargeItem", "Claim", "ExplanationOfBenefit"}
    from app.blueprints.fhir import patients_in
    for resource in resources:
        assert patients_in(resource) == {clinic["a"]}, resource["resourceType"]
    other = _resources(client.get(f"/fhir/Patient/{clinic['b']}/$everything", headers=headers))
    assert {r["resourceType"] for r in other} == {"Patient", "Appointment"}
    assert all(patients_in(r) == {clinic["b"]} for r in other)


# -- the audit -----------------------------------------------------------------------------------------

def test_every_read_is_one_audit_event_naming_the_client_and_patients(client, db, clinic, make_client):
    creds = make_client("system/*.read")
    token = client.post("/fhir/auth/token", data={"grant_type": "client_credentials"},
                        headers=creds.basic()).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "X-Request-Id": "fhir-read-1"}
    assert _views(db) == []
    reads = [f"/fhir/Patient/{clinic['a']}", "/fhir/Appointment", f"/fhir/Encounter?patient={clinic['a']}",
             f"/fhir/Patient/{clinic['b']}/$everything", "/fhir/Practitioner", "/fhir/Slot?_count=1"]
    for n, url in enumerate(reads, start=1):
        assert client.get(url, headers=headers).status_code == 200
        assert len(_views(db)) == n, url
    events = _views(db)
    assert all((e.actor_type, e.actor_id) == ("fhir_client", creds.id) for e in events)
    assert all(e.request_id == "fhir-read-1" and e.ip for e in events)
    assert events[0].patient_id == clinic["a"]
    assert set(events[1].details["patient_ids"]) == {clinic["a"], clinic["b"]}
    assert events[2].patient_id == clinic["a"]
    assert events[3].patient_id == clinic["b"]
    assert events[4].patient_id is None and events[4].details["record"]["fhir"] == "Practitioner"
    # refusals show nothing and are not views
    client.get("/fhir/Observation", headers=headers)
    client.get("/fhir/Patient/999999", headers=headers)
    client.get("/fhir/Patient")
    client.get("/fhir/metadata")
    assert len(_views(db)) == len(reads)
    # the patient's access report lists the client's reads
    from app.services import access_log
    assert db.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "fhir.token_issued")) == 1
    assert any(row.actor_type == "fhir_client" for row in access_log.patient_report(db, clinic["b"])) is False
    # (the report lists users; the client's reads are in the trail above)


def test_a_read_whose_audit_cannot_be_written_is_not_shown(app, client, db, clinic, token_for, monkeypatch):
    headers = token_for("system/*.read")
    from app.services import access_log

    def broken(*args, **kwargs):
        raise RuntimeError("audit store away")
    monkeypatch.setattr(access_log, "record_view", broken)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)     # answer as in production
    response = client.get(f"/fhir/Patient/{clinic['a']}", headers=headers)
    assert response.status_code == 500
    assert b"Pat Example" not in response.get_data()
    _outcome(response, 500)


# -- the CapabilityStatement ------------------------------------------------------------------------------

def test_capability_statement_lists_exactly_what_answers(client, clinic, token_for):
    response = client.get("/fhir/metadata")
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    statement = CapabilityStatement.model_validate_json(response.get_data(as_text=True))
    assert statement.fhirVersion == "4.3.0" and statement.kind == "instance"
    rest = statement.rest[0]
    listed = {r.type: r for r in rest.resource}
    assert set(listed) == set(TYPES)
    headers = token_for("system/*.read")
    for name, resource in listed.items():
        assert client.get(f"/fhir/{name}?_count=1", headers=headers).status_code == 200, name
        for param in resource.searchParam or []:
            sample = {"date": "ge2026-01-01", "reference": "1", "token": "1"}[param.type]
            if param.name == "status":
                sample = {"Slot": "free", "Appointment": "booked", "Encounter": "finished",
                          "Coverage": "active", "Claim": "active"}[name]
            answer = client.get(f"/fhir/{name}?{param.name}={sample}&_count=1", headers=headers)
            assert answer.status_code == 200, (name, param.name, answer.get_data(as_text=True)[:200])
        undeclared = client.get(f"/fhir/{name}?undeclared-param=1", headers=headers)
        assert undeclared.status_code == 400
    assert [op.name for op in listed["Patient"].operation] == ["everything"]
    assert [op.name for op in rest.operation] == ["export"]
    # types a FHIR client might ask for that are not listed answer 404
    for name in ("Observation", "Condition", "Organization", "Location"):
        _outcome(client.get(f"/fhir/{name}", headers=headers), 404)
    # the routes that answer FHIR types are the registry's
    assert {rt.name for rt in fhir_resources.REGISTRY} == set(TYPES)


# -- hostile input: never a 5xx ---------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st  # noqa: E402

HOSTILE = ["", " ", "\x00", "x" * 3000, "é☃", "' OR 1=1 --", "-1", "0", "99999999999999999999", "1,2,,3",
           "Patient/1", "Patient/", "Practitioner/abc", "ge", "ge2026-12-07", "le9999-12-31", "lt0001-01-01",
           "eq2026-02-30", "2026-12-07T25:00:00Z", "2026-12-07T10:00:00+05:00", "gt2026", "ap2026-01",
           "booked,pending", "free", "http://x|booked", "|", "1e309", "NaN", "%00", "2026-12"]


@given(resource_type=st.sampled_from(TYPES + ["Observation", "metadata", "Patient$"]),
       pairs=st.lists(st.tuples(st.sampled_from(sorted({p.name for rt in REGISTRY for p in rt.params}
                                                       | {"_count", "_offset", "_format", "x"})),
                                st.sampled_from(HOSTILE)), max_size=4),
       resource_id=st.sampled_from(["1", "0", "abc", "1-1-1", "9" * 30, "a.b", "-", "x" * 70]))
@hsettings(max_examples=120, derandomize=True, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_no_search_or_read_answers_5xx(client, clinic, fhir_headers, resource_type, pairs, resource_id):
    from urllib.parse import urlencode
    response = client.get(f"/fhir/{resource_type}?{urlencode(pairs)}", headers=fhir_headers)
    assert response.status_code < 500, (resource_type, pairs, response.status_code)
    if response.status_code == 400:
        OperationOutcome.model_validate_json(response.get_data(as_text=True))
    response = client.get(f"/fhir/{resource_type}/{resource_id}", headers=fhir_headers)
    assert response.status_code < 500, (resource_type, resource_id, response.status_code)


@pytest.fixture
def fhir_headers(token_for):
    return token_for("system/*.read")
