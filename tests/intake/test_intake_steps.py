"""Intake steps through the pages: validation (a 422 that keeps what was typed), save and come back,
two tabs (a 409, nothing overwritten), required sections per type, insurance with its eligibility
check in plain words, a changed coverage as a new row, consents signed by typing the legal name."""
from __future__ import annotations

import html
import re

from sqlalchemy import select

from tests.intake.conftest import ABOUT, insurance_form, self_pay_form


def _intake(db, intake_id):
    from app.models import Intake

    db.expire_all()
    return db.get(Intake, intake_id)


def test_bad_answers_are_refused_with_clear_messages_and_what_was_typed_is_kept(db, driver, clinic):
    intake_id = driver.start(clinic["hybrid"].id)
    before = _intake(db, intake_id).version
    typed = {**ABOUT, "date_of_birth": "2099-01-01", "state": "Narnia", "postal_code": "ABCDE", "sex": "robot",
             "city": ""}
    response = driver.post(intake_id, "about", typed)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Date of birth must be a real date in the past." in html
    assert "Use the two-letter state code, like NY." in html
    assert "A ZIP code looks like 10001 or 10001-1234." in html
    assert "Choose one of the options." in html
    assert "City is required." in html
    assert 'value="Maria José Alvarez"' in html and 'value="12 Elm Street"' in html    # nothing lost
    assert _intake(db, intake_id).version == before                                      # nothing saved


def test_malformed_input_never_gets_a_5xx(driver, clinic):
    intake_id = driver.start(clinic["hybrid"].id)
    for data in ({"legal_name": "x" * 5000, "date_of_birth": "9999-99-99"}, {"date_of_birth": "0001-01-01"},
                 {"legal_name": "12345"}, {"sex": ["female", "male"]}):
        assert driver.post(intake_id, "about", data).status_code == 422
    assert driver.post(intake_id, "insurance", {"coverage_choice": "maybe"}).status_code == 422
    assert driver.post(intake_id, "insurance", insurance_form("!!", payer_id="NOPE")).status_code == 422
    assert driver.post(intake_id, "reason", {"q_pregnant": "perhaps", "reason": "r" * 2000}).status_code == 422
    html = driver.page(intake_id, "about").get_data(as_text=True)
    from tests.helpers.web import csrf_from

    no_version = driver.client.post(f"/intake/{intake_id}/about", data={"csrf_token": csrf_from(html), **ABOUT})
    assert no_version.status_code == 400 and "out of date" in no_version.get_data(as_text=True)
    assert driver.client.get("/intake/start?type_id=99999999999").status_code == 400
    assert driver.client.get("/intake/start").status_code == 400


def test_save_and_come_back_resumes_the_same_draft_where_it_was_left(db, driver, clinic):
    intake_id = driver.start(clinic["hybrid"].id, clinic["provider"].id)
    saved = driver.post(intake_id, "about", ABOUT)
    assert saved.status_code == 303 and saved.location.endswith(f"/intake/{intake_id}/reason")
    # Later (another day, another page): the same draft, at the step after the last save.
    again = driver.client.get(f"/intake/start?type_id={clinic['hybrid'].id}")
    assert again.status_code == 303 and again.location.endswith(f"/intake/{intake_id}/reason")
    html = driver.page(intake_id, "about").get_data(as_text=True)
    assert 'value="Maria José Alvarez"' in html and 'value="NY"' in html and 'value="1984-03-09"' in html
    intake = _intake(db, intake_id)
    from app.services import intake as intakes

    assert intakes.data(intake)["demographics"]["state"] == "NY"
    assert intakes.provider_id(intake) == clinic["provider"].id


def test_two_tabs_never_overwrite_each_other(db, driver, clinic):
    intake_id = driver.start(clinic["hybrid"].id)
    first_tab = driver.page(intake_id, "about").get_data(as_text=True)
    second_tab = driver.page(intake_id, "about").get_data(as_text=True)
    assert driver.post(intake_id, "about", ABOUT, html=first_tab).status_code == 303
    stale = driver.post(intake_id, "about", {**ABOUT, "city": "Buffalo"}, html=second_tab)
    html = stale.get_data(as_text=True)
    assert stale.status_code == 409
    assert "changed in another tab or window" in html
    assert 'value="Buffalo"' in html                    # what this tab typed is still in the form
    from app.services import intake as intakes

    assert intakes.data(_intake(db, intake_id))["demographics"]["city"] == "Albany"
    # Saving again from the conflict page (it carries the current version) keeps this tab's answer.
    assert driver.post(intake_id, "about", {**ABOUT, "city": "Buffalo"}, html=html).status_code == 303
    assert intakes.data(_intake(db, intake_id))["demographics"]["city"] == "Buffalo"


def test_submit_names_what_is_missing_and_required_sections_follow_the_type(db, driver, clinic, factories):
    intake_id = driver.start(clinic["hybrid"].id)
    assert driver.post(intake_id, "about", ABOUT).status_code == 303
    response = driver.submit(intake_id)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Tell us the reason for your visit." in html
    assert "Please answer: Any allergies?." in html
    assert "Add your insurance, or choose to pay yourself." in html
    assert "Please sign: Consent to treatment, Notice of privacy practices, Financial policy, Telehealth." in html
    assert _intake(db, intake_id).status == "draft"
    # A type that requires only demographics: submit right away.
    light = factories.appointment_type(name="Quick check", payment_timing="deposit_to_book",
                                       intake_required=["demographics"], modality="in_person")
    from app.services import intake as intakes

    assert intakes.required_sections(light) == ("demographics",)
    assert intakes.required_sections(clinic["plain"]) == ("demographics", "reason", "consents")
    assert intakes.required_sections(clinic["hybrid"]) == intakes.SECTIONS


def test_consents_are_signed_by_typing_the_legal_name_case_insensitively(db, driver, clinic):
    from app.models import IntakeConsent

    intake_id = driver.start(clinic["hybrid"].id)
    driver.post(intake_id, "about", ABOUT)
    wrong = driver.post(intake_id, "consents", {"consent_treatment": "Someone Else"})
    assert wrong.status_code == 422
    assert "Type your full legal name exactly as under About you" in wrong.get_data(as_text=True)
    assert db.scalars(select(IntakeConsent)).all() == []
    ok = driver.post(intake_id, "consents", {"consent_treatment": "  maria   JOSÉ alvarez ",
                                             "consent_privacy": "MARIA JOSÉ ALVAREZ"})
    assert ok.status_code == 303
    signed = {c.kind: c for c in db.scalars(select(IntakeConsent)).all()}
    assert set(signed) == {"treatment", "privacy"}
    assert signed["treatment"].wording_version == "treatment-v1" and signed["treatment"].typed_name == "maria JOSÉ alvarez"
    # Signing again changes nothing (append-only); the legal name can no longer change on this intake.
    driver.post(intake_id, "consents", {"consent_financial": ABOUT["legal_name"]})
    assert len(db.scalars(select(IntakeConsent)).all()) == 3
    renamed = driver.post(intake_id, "about", {**ABOUT, "legal_name": "Maria Smith"})
    assert renamed.status_code == 422 and "signed the consents" in renamed.get_data(as_text=True)


def test_saving_insurance_checks_eligibility_and_says_so_in_plain_words(db, driver, clinic, new_member):
    from app.models import Coverage, EligibilityCheck

    intake_id = driver.start(clinic["hybrid"].id)
    driver.post(intake_id, "about", ABOUT)
    member = new_member()
    saved = driver.post(intake_id, "insurance", insurance_form(member.lower()))
    assert saved.status_code == 303 and saved.location.endswith("/consents")
    [coverage] = db.scalars(select(Coverage)).all()
    assert coverage.member_id == member and coverage.subscriber_name == ABOUT["legal_name"]
    assert coverage.subscriber_birth_date == "1984-03-09" and coverage.rank == "primary"
    [check] = db.scalars(select(EligibilityCheck)).all()
    assert (check.coverage_id, check.trigger, check.status) == (coverage.id, "entry", "active")
    assert "Your insurance is active." in driver.page(intake_id, "consents").get_data(as_text=True)
    # A member the insurer does not know: saved all the same, and the patient is told.
    unknown = driver.post(intake_id, "insurance", insurance_form("W999999999"))
    assert unknown.status_code == 303
    page = driver.page(intake_id, "insurance").get_data(as_text=True)
    assert "Check the member ID, the name and the birth date exactly as on the card." in page


def test_an_unreachable_insurer_never_blocks_the_save(db, driver, clinic, new_member, payer_sandbox):
    from app.models import Coverage, EligibilityCheck

    intake_id = driver.start(clinic["hybrid"].id)
    driver.post(intake_id, "about", ABOUT)
    payer_sandbox.inject_fault("error", count=5, path="/eligibility")
    try:
        assert driver.post(intake_id, "insurance", insurance_form(new_member())).status_code == 303
    finally:
        payer_sandbox.reset_faults()
    assert len(db.scalars(select(Coverage)).all()) == 1
    assert db.scalars(select(EligibilityCheck.status)).all() == ["unavailable"]
    assert "We couldn't reach your insurer: we'll check again before your visit." in \
        html.unescape(driver.page(intake_id, "consents").get_data(as_text=True))


def test_a_changed_coverage_is_a_new_row_and_the_old_one_is_replaced(db, driver, clinic, new_member):
    from app.models import Coverage

    intake_id = driver.start(clinic["hybrid"].id)
    driver.post(intake_id, "about", ABOUT)
    first, second = new_member(), new_member()
    driver.post(intake_id, "insurance", insurance_form(first))
    driver.post(intake_id, "insurance", insurance_form(first))            # the same: no new row
    assert len(db.scalars(select(Coverage)).all()) == 1
    secondary = {"has_secondary": "1", "secondary_payer_id": "BCBS-DEMO", "secondary_member_id": "XYZ200000001",
                 "secondary_subscriber_relationship": "spouse", "secondary_subscriber_name": "Jon Alvarez",
                 "secondary_subscriber_birth_date": "1980-01-02"}
    assert driver.post(intake_id, "insurance", insurance_form(second, **secondary)).status_code == 303
    db.expire_all()
    rows = db.scalars(select(Coverage).order_by(Coverage.id)).all()
    assert [(c.rank, c.member_id, c.status) for c in rows] == [
        ("primary", first, "replaced"), ("primary", second, "active"), ("secondary", "XYZ200000001", "active")]
    # Self-pay for this visit: the coverages stay on file, the intake says self-pay.
    assert driver.post(intake_id, "insurance", self_pay_form()).status_code == 303
    from app.services import intake as intakes

    assert intakes.self_pay(_intake(db, intake_id))


def test_a_new_intake_is_prefilled_from_the_last_submitted_one_and_active_coverages(db, driver, clinic, new_member):
    member = new_member()
    intake_id = driver.start(clinic["hybrid"].id)
    assert driver.fill(intake_id, member_id=member).status_code == 303
    again = driver.start(clinic["hybrid"].id)
    assert again != intake_id
    about = driver.page(again, "about").get_data(as_text=True)
    assert 'value="Maria José Alvarez"' in about and 'value="12207"' in about
    assert 'name="reason"' in driver.page(again, "reason").get_data(as_text=True)
    assert "Follow-up on my blood pressure" not in driver.page(again, "reason").get_data(as_text=True)
    insurance = driver.page(again, "insurance").get_data(as_text=True)
    assert f'value="{member}"' in insurance
    assert re.search(r'value="insurance"\s+checked', insurance)
    assert _intake(db, again).previous_intake_id == intake_id
