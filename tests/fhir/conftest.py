"""FHIR fixtures: a clinic with two patients (one with a documented visit, insurance, a claim and the
payer's answer; one with a visit only), and clients with chosen scopes and their bearer tokens."""
from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest

from app.models import Claim, Coverage, Payer, Remittance
from app.services import emr, fhir_clients
from app.services.audit import Actor
from tests.emr.conftest import MON_10_NY, book_visit, priced_codes  # noqa: F401 (fixtures)

ALL = ("system/*.read",)


@dataclass
class FhirClientCreds:
    client_id: str
    secret: str
    id: int

    def basic(self) -> dict:
        raw = base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def make_client(db):
    def make(*scopes: str, name: str = "EHR") -> FhirClientCreds:
        made = fhir_clients.create_client(db, name=name, scopes=list(scopes or ALL), actor=Actor.system("test"))
        db.commit()
        return FhirClientCreds(made.client.client_id, made.secret, made.client.id)
    return make


@pytest.fixture
def token_for(client, make_client):
    """token_for(*scopes) -> headers with a fresh bearer token of a new client granted ``scopes``."""
    def get(*scopes: str) -> dict:
        creds = make_client(*scopes)
        response = client.post("/fhir/auth/token", data={"grant_type": "client_credentials"}, headers=creds.basic())
        assert response.status_code == 200, response.get_data(as_text=True)
        return {"Authorization": f"Bearer {response.get_json()['access_token']}"}
    return get


@pytest.fixture
def clinic(db, clock, book_visit):  # noqa: F811
    """Patient A: a visit with an open encounter (a diagnosis, two coded lines), primary insurance,
    a claim and its remittance. Patient B: a visit the next hour with the same clinician, nothing else."""
    visit_a = book_visit()
    visit_b = book_visit(provider=visit_a.provider, starts_at=MON_10_NY + timedelta(hours=1))
    appt = visit_a.appointment
    encounter = emr.open_encounter(db, appt, actor=visit_a.actor, user=visit_a.user, now=clock.now(),
                                   source="day_view")
    emr.add_diagnosis(db, encounter.id, "j06.9", actor=visit_a.actor, now=clock.now())
    emr.add_line(db, encounter.id, code_id=visit_a.codes["LOC-CONSULT"].id, modifier="", units=1, pointers=[1],
                 actor=visit_a.actor, now=clock.now())
    emr.add_line(db, encounter.id, code_id=visit_a.codes["LOC-FORMS"].id, modifier="", units=2, pointers=[1],
                 actor=visit_a.actor, now=clock.now())
    db.add(Payer(id="DEMO-PPO", name="Demo PPO", default_allowed_percent=60))
    db.flush()
    coverage = Coverage(patient_id=appt.patient_id, rank="primary", payer_id="DEMO-PPO", member_id="W100000003",
                        group_number="G-1", plan_name="Demo plan", subscriber_name="Pat Example",
                        subscriber_birth_date="1980-01-01", subscriber_relationship="self", status="active")
    db.add(coverage)
    db.flush()
    lines = [{"line_number": 1, "code_system": "LOCAL", "code": "LOC-CONSULT", "modifiers": [], "units": 1,
              "billed_cents": 15000, "pointers": [1]}]
    claim = Claim(uuid=uuid.uuid4(), encounter_id=encounter.id, appointment_id=appt.id, coverage_id=coverage.id,
                  rank="primary", status="adjudicated", billed_cents=15000, lines=lines)
    db.add(claim)
    db.flush()
    db.add(Remittance(claim_id=claim.id, external_id=f"manual:{uuid.uuid4()}", source="manual", status="processed",
                      payer_claim_number="PCN-1", billed_cents=15000, allowed_cents=9000, paid_cents=7000,
                      patient_responsibility_cents=2000, written_off_cents=6000, lines=[]))
    db.commit()
    return {"a": appt.patient_id, "b": visit_b.appointment.patient_id, "provider": visit_a.provider.id,
            "appointment_a": appt.id, "appointment_b": visit_b.appointment.id, "encounter": encounter.id,
            "coverage": coverage.id, "claim": claim.id}
