"""The admin's page of FHIR API clients (issue 17): add one (the secret shown once, then usable at
the token endpoint), see it listed without its secret, revoke it (its tokens stop at once)."""
from __future__ import annotations

import re

from sqlalchemy import select

from app.models import AuditEvent
from tests.helpers.web import csrf_from


def test_admin_adds_a_client_sees_the_secret_once_and_revokes_it(app, client, db, login_as):
    admin = login_as("admin")
    page = client.get("/admin/fhir-clients")
    assert page.status_code == 200 and "No clients yet." in page.get_data(as_text=True)
    token = csrf_from(page.get_data(as_text=True))
    refused = client.post("/admin/fhir-clients", data={"csrf_token": token, "name": "Hospital EHR"})
    assert refused.status_code == 422 and "Grant at least one scope." in refused.get_data(as_text=True)
    made = client.post("/admin/fhir-clients", data={"csrf_token": token, "name": "Hospital EHR",
                                                    "scopes": ["system/Patient.read", "system/Encounter.read"]})
    html = made.get_data(as_text=True)
    assert made.status_code == 200 and "shown only once" in html
    client_id = re.search(r'id="new-client-id">([^<]+)<', html).group(1)
    secret = re.search(r'id="new-client-secret">([^<]+)<', html).group(1)
    listed = client.get("/admin/fhir-clients").get_data(as_text=True)
    assert client_id in listed and secret not in listed and "system/Encounter.read" in listed

    api = app.test_client()
    issued = api.post("/fhir/auth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                 "client_secret": secret})
    assert issued.status_code == 200
    bearer = {"Authorization": f"Bearer {issued.get_json()['access_token']}"}
    assert api.get("/fhir/Patient", headers=bearer).status_code == 200
    assert api.get("/fhir/Claim", headers=bearer).status_code == 403

    pk = int(re.search(r'id="fhir-client-(\d+)"', listed).group(1))
    revoked = client.post(f"/admin/fhir-clients/{pk}/revoke", data={"csrf_token": csrf_from(listed)})
    assert revoked.status_code == 303
    assert "Revoked Hospital EHR" in client.get("/admin/fhir-clients").get_data(as_text=True)
    assert api.get("/fhir/Patient", headers=bearer).status_code == 401
    db.expire_all()
    events = db.scalars(select(AuditEvent).where(AuditEvent.action.like("fhir.client_%"))
                        .order_by(AuditEvent.seq)).all()
    assert [(e.action, e.actor_id) for e in events] == [("fhir.client_created", admin.id),
                                                        ("fhir.client_revoked", admin.id)]
