"""Intake fixtures: a clinic with a payer list, a hybrid type (intake before a slot) and a plain
deposit-to-book type, a clinician offering both, a signed-in patient, and helpers that fill each step
through the pages as a phone's browser would (plain form posts with the page's CSRF token). (``payers``
and ``new_member``, a fresh simulator member, are shared: tests/helpers/fixtures_insurance.py.)"""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from tests.helpers.payments import drain
from tests.helpers.web import csrf_from, login

MON_10_NY = datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc)     # the test clock is Monday 08:00 New York

ABOUT = {"legal_name": "Maria José Alvarez", "date_of_birth": "1984-03-09", "sex": "female",
         "address_line1": "12 Elm Street", "address_line2": "", "city": "Albany", "state": "ny",
         "postal_code": "12207"}
QUESTIONS = [{"key": "allergies", "label": "Any allergies?", "kind": "text", "required": True},
             {"key": "pregnant", "label": "Could you be pregnant?", "kind": "yesno", "required": False},
             {"key": "pain", "label": "Pain today", "kind": "choice", "choices": ["none", "mild", "severe"],
              "required": False}]


@pytest.fixture(autouse=True)
def _clean_queue(app):
    drain(app)
    yield
    drain(app)


@pytest.fixture
def clinic(db, factories, payers, clock):
    """The hybrid type, a deposit-to-book type and a clinician offering both; a signed-in patient."""
    hybrid = factories.appointment_type(name="Follow-up (insurance)", price_cents=4000, payment_timing="hybrid",
                                        modality="telehealth", intake_questions=QUESTIONS)
    plain = factories.appointment_type(name="Consultation", price_cents=12500, payment_timing="deposit_to_book",
                                       modality="in_person")
    provider = factories.provider(types=[hybrid, plain], full_name="Dr. Ines Intake")
    return {"hybrid": hybrid, "plain": plain, "provider": provider}


@pytest.fixture
def patient_client(app, client, factories, clinic):
    user = factories.user("patient", full_name="Maria Alvarez")
    assert login(client, user.email).status_code == 303
    client.user = user
    return client


class IntakeDriver:
    """Fill the intake's steps through the pages."""

    def __init__(self, client):
        self.client = client

    def start(self, type_id: int, provider_id: int | None = None) -> int:
        url = f"/intake/start?type_id={type_id}" + (f"&provider_id={provider_id}" if provider_id else "")
        response = self.client.get(url)
        assert response.status_code == 303, response.get_data(as_text=True)
        return int(re.search(r"/intake/(\d+)/", response.location).group(1))

    def page(self, intake_id: int, step: str):
        return self.client.get(f"/intake/{intake_id}/{step}")

    def version(self, html: str) -> str:
        return re.search(r'name="version" value="(\d+)"', html).group(1)

    def post(self, intake_id: int, step: str, data: dict, *, html: str | None = None, **kwargs):
        html = html or self.page(intake_id, step).get_data(as_text=True)
        body = {"csrf_token": csrf_from(html), "version": self.version(html), **data}
        return self.client.post(f"/intake/{intake_id}/{step}", data=body, **kwargs)

    def submit(self, intake_id: int):
        html = self.page(intake_id, "review").get_data(as_text=True)
        return self.client.post(f"/intake/{intake_id}/submit",
                                data={"csrf_token": csrf_from(html), "version": self.version(html)})

    def fill(self, intake_id: int, *, member_id: str | None = None, self_pay: bool = False, name=None,
             telehealth: bool = True):
        """Every step, with valid answers; returns the submit's response."""
        name = name or ABOUT["legal_name"]
        assert self.post(intake_id, "about", {**ABOUT, "legal_name": name}).status_code == 303
        assert self.post(intake_id, "reason", {"reason": "Follow-up on my blood pressure",
                                               "q_allergies": "penicillin", "q_pregnant": "no"}).status_code == 303
        assert self.post(intake_id, "insurance", self_pay_form() if self_pay else
                         insurance_form(member_id)).status_code == 303
        consents = {"consent_treatment": name, "consent_privacy": name, "consent_financial": name}
        if telehealth:
            consents["consent_telehealth"] = name
        assert self.post(intake_id, "consents", consents).status_code == 303
        return self.submit(intake_id)


def insurance_form(member_id: str, payer_id: str = "AETNA-DEMO", **extra) -> dict:
    return {"coverage_choice": "insurance", "primary_payer_id": payer_id, "primary_member_id": member_id,
            "primary_group_number": "GRP-1", "primary_plan_name": "PPO", "primary_subscriber_relationship": "self",
            **extra}


def self_pay_form() -> dict:
    return {"coverage_choice": "self_pay"}


@pytest.fixture
def driver(patient_client):
    return IntakeDriver(patient_client)
