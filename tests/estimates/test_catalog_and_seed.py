"""The staff catalog edits a type's expected codes, questionnaire, required intake sections and deposit
rule; the demo seed loads the simulator's payers and sets up the hybrid type."""
import pytest
from sqlalchemy import func, select

from app.models import AppointmentType, Payer, PayerAllowedAmount

TYPE_FORM = dict(name="Follow-up (insurance)", duration_minutes="30", buffer_before_minutes="0",
                 buffer_after_minutes="5", price="150", payment_timing="hybrid", modality="telehealth",
                 min_notice_minutes="60", horizon_days="60", cancellation_window_hours="24",
                 slot_interval_minutes="", is_active="y")
SETTINGS = dict(expected_codes_text="LOCAL LOC-FOLLOWUP\nhcpcs j1100 x4",
                intake_questions_text="choice: How do you feel? = Better, The same, Worse\n"
                                      "yesno: Any new medicines?\nAnything else? (optional)",
                intake_required=["demographics", "insurance", "consents"], deposit_rule="percent",
                deposit_percent="50", deposit_fixed="", deposit_cap="40")


def test_an_admin_sets_the_intake_and_deposit_settings(db, client, forms, login_as, follow_up_code):
    login_as("admin")
    response = forms.post("/staff/types/new", data={**TYPE_FORM, **SETTINGS})
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    saved = db.scalars(select(AppointmentType)).one()
    assert saved.expected_codes == [{"system": "LOCAL", "code": "LOC-FOLLOWUP", "modifier": "", "units": 1},
                                    {"system": "HCPCS", "code": "J1100", "modifier": "", "units": 4}]
    assert saved.intake_questions == [
        {"key": "how_do_you_feel", "label": "How do you feel?", "kind": "choice", "required": True,
         "choices": ["Better", "The same", "Worse"]},
        {"key": "any_new_medicines", "label": "Any new medicines?", "kind": "yesno", "required": True},
        {"key": "anything_else", "label": "Anything else?", "kind": "text", "required": False}]
    assert saved.intake_required == ["demographics", "insurance", "consents"]
    assert (saved.deposit_rule, saved.deposit_percent, saved.deposit_fixed_cents, saved.deposit_cap_cents) == \
        ("percent", 50, None, 4000)

    page = client.get(f"/staff/types/{saved.id}").get_data(as_text=True)
    assert "LOCAL LOC-FOLLOWUP" in page and "HCPCS J1100 x4" in page and "choice: How do you feel? = Better" in page
    assert 'value="40.00"' in page
    # Edited: the keys of unchanged questions are kept.
    response = forms.post(f"/staff/types/{saved.id}", data={
        **TYPE_FORM, **SETTINGS, "intake_questions_text": "yesno: Any new medicines?\ntext: Pain today?",
        "deposit_rule": "fixed", "deposit_fixed": "25", "deposit_cap": ""})
    assert response.status_code == 303
    db.refresh(saved)
    assert [q["key"] for q in saved.intake_questions] == ["any_new_medicines", "pain_today"]
    assert (saved.deposit_rule, saved.deposit_fixed_cents, saved.deposit_cap_cents) == ("fixed", 2500, None)


@pytest.mark.parametrize("field, value, message", [
    ("expected_codes_text", "LOCAL NOPE-CODE", "the clinic has no LOCAL code NOPE-CODE"),
    ("expected_codes_text", "LOCAL", "write the system and the code"),
    ("expected_codes_text", "LOCAL LOC-FOLLOWUP zzz", "neither a two-character modifier"),
    ("intake_questions_text", "choice: Pick one = only", "two or more answers"),
    ("deposit_percent", "150", "Enter a percentage from 0 to 100."),
    ("deposit_cap", "-3", "cannot be negative"),
])
def test_bad_settings_are_shown_next_to_the_field_and_nothing_is_saved(db, forms, login_as, follow_up_code, field,
                                                                       value, message):
    login_as("admin")
    data = {**TYPE_FORM, **SETTINGS, field: value}
    response = forms.post("/staff/types/new", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and message in html
    assert f'id="{field}-error"' in html
    assert db.scalar(select(func.count(AppointmentType.id))) == 0
    if field.endswith("_text"):
        assert value.split(":")[0] in html                     # what was typed is kept


def test_percent_rule_needs_a_percent(db, forms, login_as, follow_up_code):
    login_as("admin")
    response = forms.post("/staff/types/new", data={**TYPE_FORM, **SETTINGS, "deposit_percent": ""})
    assert response.status_code == 422 and "Enter the percentage" in response.get_data(as_text=True)


def test_seed_loads_the_payers_and_sets_up_the_hybrid_type(app, db):
    from app.services.seed import seed_demo

    seed_demo(db)
    db.commit()
    seed_demo(db)
    db.commit()
    assert {p.id: p.default_allowed_percent for p in db.scalars(select(Payer))} == \
        {"AETNA-DEMO": 60, "BCBS-DEMO": 55, "MEDICAID-DEMO": 40}
    # The simulator's contracted codes are CPT (not shipped) and G2012 (not in the clinic's codes): none yet.
    assert db.scalar(select(func.count(PayerAllowedAmount.id))) == 0
    hybrid = db.scalars(select(AppointmentType).where(AppointmentType.payment_timing == "hybrid")).one()
    assert hybrid.name == "Follow-up (insurance)" and hybrid.price_cents == 7500
    assert hybrid.expected_codes == [{"system": "LOCAL", "code": "LOC-FOLLOWUP", "modifier": "", "units": 1}]
    assert 2 <= len(hybrid.intake_questions) <= 3 and hybrid.deposit_rule == "estimate"
    assert "insurance" in hybrid.intake_required
