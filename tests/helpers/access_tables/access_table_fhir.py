"""Expected status per role for the FHIR R4 API (issue 17; merged into test_access.EXPECTED).

The routes are public to the session rules: a signed-in user is no FHIR client. Without a bearer
token every FHIR route answers 401 (an OperationOutcome with WWW-Authenticate), except the
CapabilityStatement (public) and the token endpoint (its own 401 invalid_client for no credentials)."""
EVERYONE = dict(anonymous=200, patient=200, provider=200, billing=200, admin=200)
NO_TOKEN = dict(anonymous=401, patient=401, provider=401, billing=401, admin=401)

FHIR_EXPECTED = {
    ("GET", "fhir.metadata"): EVERYONE,
    ("POST", "fhir.token"): dict(anonymous=400, patient=400, provider=400, billing=400, admin=400),
    ("GET", "fhir.search"): NO_TOKEN,
    ("GET", "fhir.read"): NO_TOKEN,
    ("GET", "fhir.everything"): NO_TOKEN,
    ("GET", "fhir.export"): NO_TOKEN,
    ("GET", "fhir.export_status"): NO_TOKEN,
    ("GET", "fhir.export_file"): NO_TOKEN,
    ("GET", "fhir.unknown"): NO_TOKEN,
    ("POST", "fhir.unknown"): NO_TOKEN,
    ("PUT", "fhir.unknown"): NO_TOKEN,
    ("PATCH", "fhir.unknown"): NO_TOKEN,
    ("DELETE", "fhir.unknown"): NO_TOKEN,
    # the admin's page of clients
    ("GET", "admin.fhir_clients_page"): dict(anonymous=302, patient=403, provider=403, billing=403, admin=200),
    ("POST", "admin.create_fhir_client"): dict(anonymous=302, patient=403, provider=403, billing=403, admin=422),
    ("POST", "admin.revoke_fhir_client"): dict(anonymous=302, patient=403, provider=403, billing=403, admin=404),
}
FHIR_SAMPLE_ARGS = {
    "fhir.search": {"resource_type": "Patient"},
    "fhir.read": {"resource_type": "Patient", "resource_id": "1"},
    "fhir.everything": {"resource_id": "1"},
    "fhir.export_status": {"export_id": 1},
    "fhir.export_file": {"export_id": 1, "resource_type": "Patient"},
    "fhir.unknown": {"rest": "Patient/1/_history"},
    "admin.revoke_fhir_client": {"client_pk": 999999},
}
