"""Platform fee rules (issue 16): a percentage and/or a fixed amount on the visit type's form (both
empty: the clinic's default), and the clinic's default on the clinic settings page. What a person
types is stored in basis points and cents, refused with a message next to the field (422, the form
kept, nothing stored) when it cannot be used, and audited like the rest of those forms."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.models import AppointmentType, AuditEvent, ClinicSettings
from app.services import type_settings
from tests.helpers.web import csrf_from, login

TYPE_FORM = dict(name="Telehealth follow-up", duration_minutes="30", buffer_before_minutes="5",
                 buffer_after_minutes="10", price="125.50", payment_timing="post_visit", modality="telehealth",
                 min_notice_minutes="120", horizon_days="45", cancellation_window_hours="24",
                 slot_interval_minutes="", is_active="y", deposit_rule="estimate")
CLINIC_FORM = dict(name="Riverside Health", phone="+1 555 555 0100", address="2 River Rd",
                   timezone="America/New_York", npi="", tax_id="")


def audits(db, action):
    return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def the_type(db) -> AppointmentType:
    db.expire_all()
    return db.scalars(select(AppointmentType)).one()


# -- the visit type's fee ----------------------------------------------------------------------------

def test_an_admin_sets_a_types_fee_and_sees_it_again(db, client, forms, login_as):
    login_as("admin")
    response = forms.post("/staff/types/new", {**TYPE_FORM, "platform_fee_percent": "12.5",
                                               "platform_fee_fixed": "0.30"})
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    saved = the_type(db)
    assert (saved.platform_fee_percent_bp, saved.platform_fee_fixed_cents) == (1250, 30)
    (event,) = audits(db, "appointment_type.platform_fee")
    assert event.details == {"type_id": saved.id, "from": {"percent_bp": None, "fixed_cents": None},
                             "to": {"percent_bp": 1250, "fixed_cents": 30}}
    page = client.get(f"/staff/types/{saved.id}").get_data(as_text=True)
    assert 'name="platform_fee_percent" type="text" value="12.5"' in page
    assert 'name="platform_fee_fixed" type="text" value="0.30"' in page
    assert "Leave both empty to use the clinic's default (10%)" in page

    # A percentage alone (the fixed part emptied); "%" and "$" are understood.
    response = forms.post(f"/staff/types/{saved.id}", {**TYPE_FORM, "platform_fee_percent": "7.25%",
                                                       "platform_fee_fixed": ""})
    assert response.status_code == 303
    assert (the_type(db).platform_fee_percent_bp, the_type(db).platform_fee_fixed_cents) == (725, None)
    response = forms.post(f"/staff/types/{saved.id}", {**TYPE_FORM, "platform_fee_percent": "",
                                                       "platform_fee_fixed": "$2"})
    assert response.status_code == 303
    assert (the_type(db).platform_fee_percent_bp, the_type(db).platform_fee_fixed_cents) == (None, 200)
    # Saving it again unchanged writes no second audit of the fee.
    forms.post(f"/staff/types/{saved.id}", {**TYPE_FORM, "platform_fee_percent": "", "platform_fee_fixed": "2.00"})
    assert len(audits(db, "appointment_type.platform_fee")) == 3


def test_both_empty_is_the_clinics_default(db, client, forms, login_as):
    login_as("admin")
    response = forms.post("/staff/types/new", {**TYPE_FORM, "platform_fee_percent": " ", "platform_fee_fixed": ""})
    assert response.status_code == 303
    saved = the_type(db)
    assert (saved.platform_fee_percent_bp, saved.platform_fee_fixed_cents) == (None, None)
    assert audits(db, "appointment_type.platform_fee") == []
    # Set, then emptied again: back to the default.
    forms.post(f"/staff/types/{saved.id}", {**TYPE_FORM, "platform_fee_percent": "15", "platform_fee_fixed": "1"})
    assert (the_type(db).platform_fee_percent_bp, the_type(db).platform_fee_fixed_cents) == (1500, 100)
    forms.post(f"/staff/types/{saved.id}", {**TYPE_FORM, "platform_fee_percent": "", "platform_fee_fixed": ""})
    assert (the_type(db).platform_fee_percent_bp, the_type(db).platform_fee_fixed_cents) == (None, None)
    page = client.get(f"/staff/types/{saved.id}").get_data(as_text=True)
    assert 'name="platform_fee_percent" type="text" value=""' in page


def test_a_form_that_does_not_send_the_fee_leaves_it_as_it_is(db, client, forms, login_as, factories):
    """An older page (or any client) posting without the fee fields changes nothing of the fee."""
    login_as("admin")
    visit = factories.appointment_type(platform_fee_percent_bp=500, platform_fee_fixed_cents=25)
    response = forms.post(f"/staff/types/{visit.id}", {**TYPE_FORM, "price": "99"})
    assert response.status_code == 303
    saved = the_type(db)
    assert (saved.price_cents, saved.platform_fee_percent_bp, saved.platform_fee_fixed_cents) == (9900, 500, 25)


@pytest.mark.parametrize("field, value, message", [
    ("platform_fee_percent", "-5", "The percentage cannot be negative."),
    ("platform_fee_percent", "100.01", "The percentage cannot be more than 100."),
    ("platform_fee_percent", "250", "The percentage cannot be more than 100."),
    ("platform_fee_percent", "ten", "Enter a percentage from 0 to 100, like 10 or 12.5."),
    ("platform_fee_percent", "12.345", "Use at most two decimals, like 12.25."),
    ("platform_fee_percent", "1e2", "Enter a percentage from 0 to 100, like 10 or 12.5."),
    ("platform_fee_percent", "9" * 39, "Enter a percentage from 0 to 100, like 10 or 12.5."),
    ("platform_fee_percent", "9" * 41, "Field cannot be longer than 40 characters."),
    ("platform_fee_fixed", "-1", "The fixed amount cannot be negative."),
    ("platform_fee_fixed", "2.555", "Use at most two decimals (cents), like 2.50."),
    ("platform_fee_fixed", "two dollars", "Enter the fixed amount in dollars, like 2 or 2.50."),
    ("platform_fee_fixed", "99999999", "Enter the fixed amount in dollars, like 2 or 2.50."),
    ("platform_fee_fixed", "9999999", "The fixed amount cannot be more than $999,999.99."),
])
def test_bad_fee_input_is_a_422_next_to_the_field_and_nothing_is_saved(db, client, forms, login_as, factories,
                                                                       field, value, message):
    login_as("admin")
    response = forms.post("/staff/types/new", {**TYPE_FORM, "name": "Kept name", field: value})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'id="{field}-error"' in html and message in html
    assert 'value="Kept name"' in html                          # the form is kept
    assert db.scalar(select(func.count(AppointmentType.id))) == 0
    # Editing a type: the stored fee is unchanged.
    visit = factories.appointment_type(platform_fee_percent_bp=800, platform_fee_fixed_cents=None)
    response = forms.post(f"/staff/types/{visit.id}", {**TYPE_FORM, field: value})
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    saved = the_type(db)
    assert (saved.platform_fee_percent_bp, saved.platform_fee_fixed_cents) == (800, None)
    assert audits(db, "appointment_type.platform_fee") == []


# -- the clinic's default ---------------------------------------------------------------------------

def test_the_clinics_default_fee_is_shown_set_and_audited(db, client, forms, login_as):
    login_as("admin")
    page = client.get("/admin/clinic").get_data(as_text=True)
    assert 'name="platform_fee_percent" type="text" value="10"' in page     # the default before any save
    assert 'name="platform_fee_fixed" type="text" value="0.00"' in page
    response = forms.post("/admin/clinic", {**CLINIC_FORM, "platform_fee_percent": "8.75",
                                            "platform_fee_fixed": "0.50"})
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    db.expire_all()
    clinic = db.get(ClinicSettings, 1)
    assert (clinic.platform_fee_percent_bp, clinic.platform_fee_fixed_cents) == (875, 50)
    event = audits(db, "clinic.settings_updated")[-1]
    assert event.details["platform_fee"] == {
        "platform_fee_percent_bp": {"from": None, "to": 875}, "platform_fee_fixed_cents": {"from": None, "to": 50}}
    page = client.get("/admin/clinic").get_data(as_text=True)
    assert 'value="8.75"' in page and 'value="0.50"' in page
    # Changed again: the audit names the values before and after.
    forms.post("/admin/clinic", {**CLINIC_FORM, "platform_fee_percent": "10", "platform_fee_fixed": "0.50"})
    event = audits(db, "clinic.settings_updated")[-1]
    assert event.details["platform_fee"] == {"platform_fee_percent_bp": {"from": 875, "to": 1000}}
    # The type form's hint names the clinic's default.
    assert "the clinic's default (10% + $0.50)" in client.get("/staff/types/new").get_data(as_text=True)


def test_the_clinic_form_without_the_fee_fields_leaves_the_fee(db, client, forms, login_as):
    login_as("admin")
    forms.post("/admin/clinic", {**CLINIC_FORM, "platform_fee_percent": "5", "platform_fee_fixed": "1"})
    response = forms.post("/admin/clinic", {**CLINIC_FORM, "name": "Renamed"})
    assert response.status_code == 303
    db.expire_all()
    clinic = db.get(ClinicSettings, 1)
    assert (clinic.name, clinic.platform_fee_percent_bp, clinic.platform_fee_fixed_cents) == ("Renamed", 500, 100)


@pytest.mark.parametrize("field, value, message", [
    ("platform_fee_percent", "", "Enter a percentage from 0 to 100 (0 for none)."),
    ("platform_fee_percent", "-1", "The percentage cannot be negative."),
    ("platform_fee_percent", "101", "The percentage cannot be more than 100."),
    ("platform_fee_percent", "abc", "Enter a percentage from 0 to 100, like 10 or 12.5."),
    ("platform_fee_percent", "3.333", "Use at most two decimals, like 12.25."),
    ("platform_fee_fixed", "", "Enter an amount in dollars (0 for none)."),
    ("platform_fee_fixed", "-0.30", "The fixed amount cannot be negative."),
    ("platform_fee_fixed", "0.305", "Use at most two decimals (cents), like 2.50."),
    ("platform_fee_fixed", "1,2,3,4,5,6,7,8,9", "Enter the fixed amount in dollars, like 2 or 2.50."),
    ("platform_fee_fixed", "1000000", "The fixed amount cannot be more than $999,999.99."),
])
def test_bad_clinic_fee_input_is_a_422_and_nothing_changes(db, client, forms, login_as, field, value, message):
    login_as("admin")
    forms.post("/admin/clinic", {**CLINIC_FORM, "platform_fee_percent": "10", "platform_fee_fixed": "0"})
    before = len(audits(db, "clinic.settings_updated"))
    response = forms.post("/admin/clinic", {**CLINIC_FORM, "name": "Kept Clinic", "platform_fee_percent": "10",
                                            "platform_fee_fixed": "0", field: value})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'id="{field}-error"' in html and message in html and 'value="Kept Clinic"' in html
    db.expire_all()
    clinic = db.get(ClinicSettings, 1)
    assert (clinic.name, clinic.platform_fee_percent_bp, clinic.platform_fee_fixed_cents) == \
        ("Riverside Health", 1000, 0)
    assert len(audits(db, "clinic.settings_updated")) == before


def test_other_roles_cannot_change_fees(app, db, factories):
    visit = factories.appointment_type()
    for role in ("provider", "billing"):
        other = app.test_client()
        assert login(other, factories.user(role).email).status_code == 303
        token = csrf_from(other.get("/", follow_redirects=True).get_data(as_text=True))
        assert other.post(f"/staff/types/{visit.id}", data={**TYPE_FORM, "platform_fee_percent": "50",
                                                              "csrf_token": token}).status_code == 403
        assert other.post("/admin/clinic", data={**CLINIC_FORM, "platform_fee_percent": "50",
                                                  "csrf_token": token}).status_code == 403
    db.expire_all()
    assert db.get(AppointmentType, visit.id).platform_fee_percent_bp is None
    assert db.get(ClinicSettings, 1) is None


# -- the parsers, exactly -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, basis_points", [
    ("0", 0), ("10", 1000), ("12.5", 1250), ("12.25", 1225), ("0.01", 1), ("100", 10000), ("100.00", 10000),
    ("7 %", 700), (" 3.10 ", 310), ("", None), ("   ", None), (None, None),
])
def test_percentages_are_stored_in_basis_points(text, basis_points):
    assert type_settings.parse_fee_percent(text) == basis_points
    if basis_points is not None:
        assert type_settings.parse_fee_percent(type_settings.fee_percent_text(basis_points)) == basis_points


@pytest.mark.parametrize("text, cents", [
    ("0", 0), ("2", 200), ("2.5", 250), ("2.50", 250), ("$1,234.56", 123456), ("0.3", 30), ("", None), (None, None),
])
def test_fixed_amounts_are_stored_in_cents(text, cents):
    assert type_settings.parse_fee_fixed(text) == cents


def test_the_split_uses_what_the_forms_stored(db, client, forms, login_as):
    """What the pages store is the rule app/services/payouts.py applies when a visit's money is final:
    the type's (either part set; the other is 0), else the clinic's default."""
    from app.services import payouts
    from app.services.clinic import current_clinic

    login_as("admin")
    forms.post("/admin/clinic", {**CLINIC_FORM, "platform_fee_percent": "8.75", "platform_fee_fixed": "0.50"})
    forms.post("/staff/types/new", {**TYPE_FORM, "platform_fee_percent": "", "platform_fee_fixed": ""})
    visit = the_type(db)
    clinic = current_clinic(db)
    rule = payouts.rule_of(visit, clinic)
    assert (rule.percent_bp, rule.fixed_cents, rule.source) == (875, 50, "clinic")
    assert payouts.platform_fee(10000, rule) == 875 + 50

    forms.post(f"/staff/types/{visit.id}", {**TYPE_FORM, "platform_fee_percent": "12.5",
                                            "platform_fee_fixed": "0.30"})
    rule = payouts.rule_of(the_type(db), clinic)
    assert (rule.percent_bp, rule.fixed_cents, rule.source) == (1250, 30, "type")
    assert payouts.split_for(10000, 320, rule).provider_share == 10000 - 320 - 1250 - 30

    forms.post(f"/staff/types/{visit.id}", {**TYPE_FORM, "platform_fee_percent": "", "platform_fee_fixed": "2"})
    rule = payouts.rule_of(the_type(db), clinic)
    assert (rule.percent_bp, rule.fixed_cents, rule.source) == (0, 200, "type")
    forms.post(f"/staff/types/{visit.id}", {**TYPE_FORM, "platform_fee_percent": "0", "platform_fee_fixed": ""})
    rule = payouts.rule_of(the_type(db), clinic)           # 0% typed is a rule of its own: no fee, not the default
    assert (rule.percent_bp, rule.fixed_cents, rule.source) == (0, 0, "type")
