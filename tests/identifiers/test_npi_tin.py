"""The clinic's NPI and tax id (TIN) and each clinician's NPI (issue 15): checked where they are typed
(an NPI is 10 digits whose last is the Luhn check digit over 80840 + the first nine; a TIN is 9 digits,
kept and shown as NN-NNNNNNN), seeded for the demo, and shown on the Good Faith Estimate
(45 CFR 149.610(c)) or "not on file"."""
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app.models import Appointment, AuditEvent, ClinicSettings, Provider
from app.services import identifiers
from tests.helpers.web import login

UTC = timezone.utc


def value_of(html: str, name: str) -> str:
    tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', html).group(0)
    found = re.search(r'value="([^"]*)"', tag)
    return found.group(1) if found else ""


# -- the rules ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed, stored", [("1234567893", "1234567893"), (" 1234-567-893 ", "1234567893"),
                                           ("", None), (None, None)])
def test_an_npi_is_ten_digits_with_its_check_digit(typed, stored):
    assert identifiers.normalize_npi(typed) == stored


@pytest.mark.parametrize("typed, words", [("1234567890", "last digit does not match"),
                                          ("123456789", "10 digits"), ("12345678931", "10 digits"),
                                          ("12345678a3", "10 digits"), ("１２３４５６７８９３", "10 digits")])
def test_a_wrong_npi_is_refused_in_words(typed, words):
    with pytest.raises(identifiers.InvalidIdentifier, match=words):
        identifiers.normalize_npi(typed)


def test_a_tin_is_nine_digits_kept_as_nn_nnnnnnn():
    assert identifiers.normalize_tin("123456789") == "12-3456789"
    assert identifiers.normalize_tin("12-3456789") == "12-3456789"
    assert identifiers.normalize_tin("  ") is None
    for wrong in ("12-345678", "1234567890", "12-34567A9"):
        with pytest.raises(identifiers.InvalidIdentifier, match="9 digits"):
            identifiers.normalize_tin(wrong)
    assert identifiers.format_tin("987654321") == "98-7654321"


# -- the admin's clinic settings --------------------------------------------------------------------------

CLINIC = dict(name="Riverside Health", phone="+1 555 555 0100", address="2 River Rd, Springfield, IL",
              timezone="America/Chicago")


def test_the_admin_saves_the_clinic_npi_and_tin(client, forms, login_as, db):
    admin = login_as("admin")
    response = forms.post("/admin/clinic", dict(CLINIC, npi="1234567893", tax_id="123456789"))
    assert response.status_code == 303
    db.expire_all()
    clinic = db.get(ClinicSettings, 1)
    assert (clinic.npi, clinic.tax_id) == ("1234567893", "12-3456789")
    page = client.get("/admin/clinic").get_data(as_text=True)
    assert value_of(page, "npi") == "1234567893" and value_of(page, "tax_id") == "12-3456789"
    event = db.scalars(select(AuditEvent).where(AuditEvent.action == "clinic.settings_updated",
                                                AuditEvent.actor_id == admin.id)).all()[-1]
    assert {"npi", "tax_id"} <= set(event.details["changed"])
    # emptied: no longer on file
    assert forms.post("/admin/clinic", dict(CLINIC, npi="", tax_id="")).status_code == 303
    db.expire_all()
    assert (db.get(ClinicSettings, 1).npi, db.get(ClinicSettings, 1).tax_id) == (None, None)


def test_a_wrong_clinic_npi_or_tin_is_refused_and_what_was_typed_is_kept(client, forms, login_as, db):
    login_as("admin")
    assert forms.post("/admin/clinic", dict(CLINIC, npi="1234567893", tax_id="12-3456789")).status_code == 303
    response = forms.post("/admin/clinic", dict(CLINIC, name="Renamed Clinic", npi="1234567890",
                                                tax_id="12-34567"))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "This is not a valid NPI" in html and "A tax id (TIN) is 9 digits" in html
    assert value_of(html, "npi") == "1234567890" and value_of(html, "tax_id") == "12-34567"
    assert value_of(html, "name") == "Renamed Clinic"
    db.expire_all()
    clinic = db.get(ClinicSettings, 1)
    assert (clinic.name, clinic.npi, clinic.tax_id) == ("Riverside Health", "1234567893", "12-3456789")


def test_the_clinic_service_refuses_a_bad_npi_too(db):
    from app.services.audit import Actor
    from app.services.clinic import update_clinic

    with pytest.raises(identifiers.InvalidIdentifier):
        update_clinic(db, actor=Actor.system("test"), name="X", phone="+15555550100", address="",
                      timezone="UTC", npi="1111111111")
    db.rollback()
    # not passed: left as it is (callers that only change the name keep the NPI)
    update_clinic(db, actor=Actor.system("test"), name="X", phone="+15555550100", address="", timezone="UTC",
                  npi="1234567893", tax_id="123456789")
    update_clinic(db, actor=Actor.system("test"), name="Y", phone="+15555550100", address="", timezone="UTC")
    assert (db.get(ClinicSettings, 1).npi, db.get(ClinicSettings, 1).tax_id) == ("1234567893", "12-3456789")


# -- the provider's profile -----------------------------------------------------------------------------

def _profile(provider: Provider, **changes) -> dict:
    data = dict(specialty_id=str(provider.specialty_id), timezone=provider.timezone, bio="",
                offers_telehealth="y", offers_in_person="y", is_active="y",
                type_ids=[str(t.id) for t in provider.types])
    data.update(changes)
    return data


def test_the_admin_saves_a_provider_npi_and_wrong_ones_are_refused(client, forms, login_as, db, factories):
    login_as("admin")
    visit_type = factories.appointment_type()
    provider = factories.provider(types=[visit_type])
    other = factories.provider(types=[visit_type], npi="1122334455")
    url = f"/staff/providers/{provider.id}"
    assert forms.post(url, _profile(provider, npi="1456789019")).status_code == 303
    db.expire_all()
    assert db.get(Provider, provider.id).npi == "1456789019"
    assert value_of(client.get(url).get_data(as_text=True), "npi") == "1456789019"

    for typed, words in (("1456789010", "This is not a valid NPI"), ("14567", "An NPI is 10 digits."),
                         (other.npi, "Another provider already has this NPI.")):
        response = forms.post(url, _profile(provider, npi=typed, bio="Kept as typed"))
        html = response.get_data(as_text=True)
        assert response.status_code == 422, typed
        assert words in html and value_of(html, "npi") == typed
        assert "Kept as typed" in html
    db.expire_all()
    assert db.get(Provider, provider.id).npi == "1456789019"
    # emptied: not on file any more
    assert forms.post(url, _profile(provider, npi="")).status_code == 303
    db.expire_all()
    assert db.get(Provider, provider.id).npi is None


def test_a_new_provider_profile_takes_an_npi(client, forms, login_as, db, factories):
    login_as("admin")
    specialty = factories.specialty()
    staff = factories.user("provider", full_name="Grace Npi")
    response = forms.post("/staff/providers/new", {
        "user_id": str(staff.id), "specialty_id": str(specialty.id), "timezone": "America/New_York",
        "offers_telehealth": "y", "npi": "1765432103"})
    assert response.status_code == 303
    assert db.scalar(select(Provider).where(Provider.user_id == staff.id)).npi == "1765432103"


# -- the demo clinic ------------------------------------------------------------------------------------

def test_the_demo_clinic_and_its_clinicians_have_valid_distinct_npis(db):
    from app.services.seed import seed_demo

    seed_demo(db)
    db.commit()
    seed_demo(db)
    db.commit()
    clinic = db.get(ClinicSettings, 1)
    assert identifiers.npi_is_valid(clinic.npi) and re.fullmatch(r"\d{2}-\d{7}", clinic.tax_id)
    npis = [p.npi for p in db.scalars(select(Provider))]
    assert npis and all(identifiers.npi_is_valid(n) for n in npis)
    assert len(set(npis)) == len(npis) and clinic.npi not in npis


# -- the Good Faith Estimate ----------------------------------------------------------------------------

def _visit(db, factories, clock, provider_npi=None):
    visit_type = factories.appointment_type(name="Telehealth consult", price_cents=12500,
                                            payment_timing="deposit_to_book", modality="telehealth")
    provider = factories.provider(types=[visit_type], full_name="Dr. Ida Npi", npi=provider_npi)
    user = factories.user("patient")
    start = clock.now() + timedelta(days=20)
    visit = Appointment(patient_id=user.patient.id, provider_id=provider.id, type_id=visit_type.id,
                        status="confirmed", starts_at=start, ends_at=start + timedelta(minutes=30),
                        blocked_start=start, blocked_end=start + timedelta(minutes=30), price_cents=12500,
                        payment_timing="deposit_to_book", modality="telehealth", confirmed_at=clock.now())
    db.add(visit)
    db.commit()
    return user, visit


def _ids(html: str) -> dict:
    return {m.group(1): m.group(2).strip() for m in re.finditer(r'data-field="([a-z-]+)">([^<]*)<', html)}


def test_the_good_faith_estimate_names_the_npis_and_the_tin(client, db, factories, clock):
    from app.services.audit import Actor
    from app.services.clinic import update_clinic

    update_clinic(db, actor=Actor.system("test"), name="Riverside Health", phone="+15555550100",
                  address="2 River Rd, Springfield, IL", timezone="America/Chicago", npi="1234567893",
                  tax_id="123456789")
    db.commit()
    user, visit = _visit(db, factories, clock, provider_npi="1543219871")
    assert login(client, user.email).status_code == 303
    response = client.get(f"/appointments/{visit.id}/good-faith-estimate")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    got = _ids(html)
    assert got["provider-npi"] == "1543219871" and got["provider-tin"] == "12-3456789"
    assert got["clinic-npi"] == "1234567893" and got["clinic-tin"] == "12-3456789"
    assert "Dr. Ida Npi" in html and "2 River Rd, Springfield, IL" in html


def test_the_good_faith_estimate_says_not_on_file(client, db, factories, clock):
    user, visit = _visit(db, factories, clock)
    assert login(client, user.email).status_code == 303
    html = client.get(f"/appointments/{visit.id}/good-faith-estimate").get_data(as_text=True)
    got = _ids(html)
    assert got == {**got, "provider-npi": "not on file", "provider-tin": "not on file",
                   "clinic-npi": "not on file", "clinic-tin": "not on file"}
