"""The estimate page of a submitted intake: the breakdown in plain words, the deposit and its rule, and
"Choose a time" back to the provider's slots with the intake; on a 360 px phone (e2e)."""
import json
import re

import pytest
from sqlalchemy import select

from app.models import AuditEvent, Intake
from app.services import estimates
from tests.helpers.web import login


@pytest.fixture
def submitted(db, factories, hybrid_type, coverage, new_member, clock, job_actor):
    """submitted(user, member_kwargs=None | 'self_pay') -> (intake, provider) with its estimate built."""
    def make(user, member=None, **member_fields):
        provider = factories.provider(types=[hybrid_type], full_name="Dr. Esti Mate")
        self_pay = member == "self_pay"
        if not self_pay:
            coverage(user.patient, new_member(**member_fields))
        intake = Intake(patient_id=user.patient.id, appointment_type_id=hybrid_type.id, status="submitted",
                        submitted_at=clock.now(), data=json.dumps({"self_pay": self_pay}))
        db.add(intake)
        db.flush()
        estimates.build(db, patient=user.patient, appointment_type=hybrid_type, intake=intake,
                        service_date=clock.now().date(), now=clock.now(), actor=job_actor)
        db.commit()
        return intake, provider
    return make


def rows(html):
    return {m.group(1): re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m.group(2))).strip()
            for m in re.finditer(r'data-row="(\w+)"(.*?)</div>', html, re.S)}


def test_insured_breakdown_in_plain_words(app, db, client, factories, submitted, clock):
    user = factories.user("patient")
    intake, provider = submitted(user, deductible_met_cents=48000, oop_met_cents=100000)
    assert login(client, user.email).status_code == 303
    response = client.get(f"/intake/{intake.id}/estimate?provider_id={provider.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "no-store" in response.headers["Cache-Control"]
    got = rows(html)
    assert "$150.00" in got["billed"]
    assert "$90.00" in got["allowed"] and "$60.00 above it" in got["allowed"]
    assert "$25.00" in got["copay"]
    assert "$20.00" in got["deductible"] and "$20.00 of your deductible left" in got["deductible"]
    assert "(20%)" in got["coinsurance"] and "$9.00" in got["coinsurance"]
    assert "$0.00" in got["oop"] and "$2,000.00 left" in got["oop"]
    assert "$36.00" in got["insurer"]
    assert "$54.00" in got["share"]
    assert "$54.00" in got["deposit"] and "The deposit is your estimated share of the cost." in got["deposit"]
    link = re.search(r'id="choose-time" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert link == f"/book/providers/{provider.id}?type_id={intake.appointment_type_id}&intake_id={intake.id}"
    assert db.scalars(select(AuditEvent).where(AuditEvent.action == "phi.viewed")).all()[-1].details["kind"] == "estimate"


def test_self_pay_shows_the_good_faith_estimate(app, db, client, factories, submitted):
    user = factories.user("patient")
    intake, provider = submitted(user, "self_pay")
    assert login(client, user.email).status_code == 303
    html = client.get(f"/intake/{intake.id}/estimate?provider_id={provider.id}").get_data(as_text=True)
    got = rows(html)
    assert "allowed" not in got and "copay" not in got
    assert "$150.00" in got["billed"] and "$150.00" in got["share"] and "$150.00" in got["deposit"]
    assert "Good Faith Estimate" in html and "$400" in html


def test_inactive_coverage_says_why_it_is_the_full_price(app, db, client, factories, submitted):
    user = factories.user("patient")
    intake, _ = submitted(user, active=False, coverage_end="2025-12-31")
    assert login(client, user.email).status_code == 303
    html = client.get(f"/intake/{intake.id}/estimate").get_data(as_text=True)
    assert "says this coverage is not active" in html
    link = re.search(r'id="choose-time" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert link.startswith("/book?") or link.startswith("/book/") and f"intake_id={intake.id}" in link


def test_another_patients_intake_and_bad_ids(app, db, client, factories, submitted):
    owner = factories.user("patient")
    intake, _ = submitted(owner, "self_pay")
    stranger = factories.user("patient")
    assert login(client, stranger.email).status_code == 303
    assert client.get(f"/intake/{intake.id}/estimate").status_code == 404
    assert client.get(f"/intake/{intake.id}/estimate?provider_id=abc%00").status_code in (400, 404)
    stranger_own = client.get("/intake/999999/estimate")
    assert stranger_own.status_code == 404


def test_a_draft_intake_goes_back_to_its_steps(app, db, client, factories, hybrid_type):
    user = factories.user("patient")
    draft = Intake(patient_id=user.patient.id, appointment_type_id=hybrid_type.id, status="draft", data="{}")
    db.add(draft)
    db.commit()
    assert login(client, user.email).status_code == 303
    response = client.get(f"/intake/{draft.id}/estimate")
    assert response.status_code == 303 and f"/intake/{draft.id}" in response.location


@pytest.mark.e2e
def test_the_estimate_on_a_360px_phone(live_server, phone, db, factories, submitted):
    from playwright.sync_api import expect

    from tests.helpers.phone import sign_in

    user = factories.user("patient")
    intake, provider = submitted(user, deductible_met_cents=48000, oop_met_cents=100000)
    page = phone
    sign_in(page, live_server, user.email)
    page.goto(f"{live_server}/intake/{intake.id}/estimate?provider_id={provider.id}")
    expect(page.get_by_role("heading", name="Your estimate")).to_be_visible()
    expect(page.locator("[data-field=share]")).to_have_text("$54.00")
    expect(page.locator("[data-row=deposit] dd:not(.note)")).to_have_text("$54.00")
    expect(page.locator("[data-row=coinsurance] dt")).to_contain_text("Your coinsurance (20%)")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    # Label and amount sit side by side, the amount right-aligned inside the viewport.
    for row in ("billed", "allowed", "copay", "share", "deposit"):
        box = page.locator(f"[data-row={row}] dd:not(.note)").bounding_box()
        assert box["x"] + box["width"] <= 360, row
    choose = page.get_by_role("link", name="Choose a time")
    assert choose.bounding_box()["height"] >= 44
    choose.click()
    page.wait_for_url(re.compile(rf"/book/providers/{provider.id}\?type_id=\d+&intake_id={intake.id}"))
    expect(page.get_by_role("heading", name="Dr. Esti Mate")).to_be_visible()
    expect(page.locator("#gfe-notice summary")).to_contain_text("Good Faith Estimate")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
