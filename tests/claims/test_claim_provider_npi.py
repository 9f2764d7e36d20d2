"""A claim carries the rendering clinician's NPI (issue 15): the appointment's provider's, else the
clinic's, else none; what crosses the wire to the clearinghouse (the payer simulator) is checked, and the
simulator accepts the claim."""
from __future__ import annotations

import pytest

from app.integrations import clearinghouse as ch
from app.models import Appointment, Claim, ClinicSettings, Provider
from app.services import claims
from app.services.audit import Actor
from tests.helpers.payments import fresh


@pytest.fixture
def sent(monkeypatch):
    """The keyword arguments of every claim sent through the real client (the real request still goes out)."""
    calls: list[dict] = []
    real = ch.Clearinghouse.submit_claim

    def spy(self, **kwargs):
        calls.append(kwargs)
        return real(self, **kwargs)

    monkeypatch.setattr(ch.Clearinghouse, "submit_claim", spy)
    return calls


def _clinic_npi(db, npi):
    clinic = db.get(ClinicSettings, 1)
    if clinic is None:
        clinic = ClinicSettings(id=1, name="Clinic", phone="+15555550100", address="", timezone="UTC")
        db.add(clinic)
    clinic.npi = npi
    db.commit()


def _submit(db, claim_id):
    result = claims.submit(db, claim_id, actor=Actor.system("test"), now=fresh(db, Claim, claim_id).created_at)
    db.commit()
    return result


@pytest.mark.parametrize("provider_npi, clinic_npi, expected", [
    ("1543219871", "1234567893", "1543219871"),       # the clinician's own
    (None, "1234567893", "1234567893"),               # none on file: the clinic's
    (None, None, None),                               # neither: the claim goes without one
])
def test_the_claim_names_the_provider_npi(db, hybrid_visit, sent, provider_npi, clinic_npi, expected):
    _clinic_npi(db, clinic_npi)
    visit = hybrid_visit("W100000003", deposit=3900, provider_npi=provider_npi)
    assert _submit(db, visit.claim_id) == "submitted"
    assert [call.get("provider_npi") for call in sent] == [expected]
    assert fresh(db, Claim, visit.claim_id).status == "submitted"


def test_a_resend_carries_the_npi_the_claim_opened_with(db, hybrid_visit, sent):
    """The answer to the first send was lost; the clinician's NPI is edited; the resend is the same
    claim (the clearinghouse would refuse different content under the same claim id)."""
    visit = hybrid_visit("W100000003", deposit=3900, provider_npi="1543219871")
    provider = db.get(Provider, db.get(Appointment, visit.appointment_id).provider_id)
    provider.npi = None
    _clinic_npi(db, "1234567893")
    assert _submit(db, visit.claim_id) == "submitted"
    assert [call.get("provider_npi") for call in sent] == ["1543219871"]
