"""Intake PHI: encrypted at rest (the raw columns hold ciphertext), each view of an intake page or a
card photo audited as a PHI view and never cached, another patient's intake a 404 (audited), nothing
PHI in audit rows, consents append-only in the database."""
from __future__ import annotations

import io

import psycopg
import pytest
from sqlalchemy import func, select

from tests.intake.conftest import ABOUT, insurance_form

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"card-front-pixels"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64 + b"card-back-pixels"


def _views(db, since=0):
    from app.models import AuditEvent

    db.expire_all()
    return db.scalars(select(AuditEvent).where(AuditEvent.seq > since, AuditEvent.action == "phi.viewed")
                      .order_by(AuditEvent.seq)).all()


def _max_seq(db):
    from app.models import AuditEvent

    return db.scalar(select(func.coalesce(func.max(AuditEvent.seq), 0)))


def test_intake_phi_is_encrypted_at_rest(db, driver, clinic, new_member, raw_conn):
    member = new_member()
    intake_id = driver.start(clinic["hybrid"].id)
    assert driver.post(intake_id, "about", ABOUT).status_code == 303
    assert driver.post(intake_id, "reason", {"reason": "Chest tightness when climbing stairs",
                                             "q_allergies": "penicillin"}).status_code == 303
    photos = {"primary_card_front": (io.BytesIO(JPEG), "front.jpg", "image/jpeg")}
    assert driver.post(intake_id, "insurance", insurance_form(member, primary_group_number="GRP-SECRET-9", **photos),
                       content_type="multipart/form-data").status_code == 303
    assert driver.post(intake_id, "consents", {"consent_treatment": ABOUT["legal_name"]}).status_code == 303

    [data] = raw_conn.execute("SELECT data FROM intakes WHERE id = %s", (intake_id,)).fetchone()
    assert data.startswith("v1:")
    for secret in ("Alvarez", "1984-03-09", "Elm Street", "Chest tightness", "penicillin"):
        assert secret not in data
    row = raw_conn.execute("SELECT member_id, group_number, plan_name, subscriber_name, subscriber_birth_date, "
                           "card_front FROM coverages").fetchone()
    assert all(value.startswith("v1:") for value in row)
    assert member not in row[0] and "GRP-SECRET-9" not in row[1] and "Alvarez" not in row[3]
    [typed] = raw_conn.execute("SELECT typed_name FROM intake_consents").fetchone()
    assert typed.startswith("v1:") and "Alvarez" not in typed
    # ... and nothing of it in the audit rows.
    dump = " ".join(str(r) for r in raw_conn.execute("SELECT action, details, reason FROM audit_events").fetchall())
    for secret in ("Alvarez", "1984-03-09", "Elm Street", "Chest", "penicillin", member, "GRP-SECRET-9", "AETNA"):
        assert secret not in dump


def test_each_view_of_an_intake_page_is_one_audited_phi_view_never_cached(db, driver, clinic):
    intake_id = driver.start(clinic["hybrid"].id)
    patient_id = driver.client.user.patient.id
    for step in ("about", "reason", "insurance", "consents", "review"):
        before = _max_seq(db)
        response = driver.page(intake_id, step)
        assert response.status_code == 200
        assert "no-store" in response.headers["Cache-Control"]
        [event] = _views(db, before)
        assert event.patient_id == patient_id and event.details["kind"] == "intake"
        assert event.details["record"] == {"intake_id": intake_id}
        assert (event.actor_type, event.actor_id, event.actor_role) == ("user", driver.client.user.id, "patient")


def test_another_patients_intake_is_not_found_and_the_attempt_is_audited(app, db, driver, clinic, factories):
    from app.models import AuditEvent
    from tests.helpers.web import IsolatedClient, login

    intake_id = driver.start(clinic["hybrid"].id)
    other = IsolatedClient(app, app.response_class, use_cookies=True)
    intruder = factories.user("patient")
    login(other, intruder.email)
    before = _max_seq(db)
    for url in (f"/intake/{intake_id}/about", f"/intake/{intake_id}", f"/intake/{intake_id}/review"):
        assert other.get(url).status_code == 404
    db.expire_all()
    denied = db.scalars(select(AuditEvent).where(AuditEvent.seq > before, AuditEvent.action == "access.denied")).all()
    assert len(denied) == 3 and all(e.details["intake_id"] == intake_id for e in denied)
    assert _views(db, before) == []


def test_card_photos_are_served_only_through_the_audited_no_store_route(app, db, driver, clinic, new_member,
                                                                         factories):
    from app.models import Coverage
    from tests.helpers.web import IsolatedClient, login

    intake_id = driver.start(clinic["hybrid"].id)
    driver.post(intake_id, "about", ABOUT)
    photos = {"primary_card_front": (io.BytesIO(JPEG), "front.jpg", "image/jpeg"),
              "primary_card_back": (io.BytesIO(PNG), "back.png", "image/png")}
    assert driver.post(intake_id, "insurance", insurance_form(new_member(), **photos),
                       content_type="multipart/form-data").status_code == 303
    [coverage] = db.scalars(select(Coverage)).all()
    page = driver.page(intake_id, "insurance").get_data(as_text=True)
    assert f"/coverages/{coverage.id}/card-front" in page and "card-front-pixels" not in page

    before = _max_seq(db)
    front = driver.client.get(f"/coverages/{coverage.id}/card-front")
    assert front.status_code == 200 and front.data == JPEG and front.mimetype == "image/jpeg"
    assert front.headers["Cache-Control"] == "no-store"
    [event] = _views(db, before)
    assert event.details["kind"] == "card_photo" and event.patient_id == coverage.patient_id
    assert event.details["record"] == {"coverage_id": coverage.id, "card_side": "front"}
    assert driver.client.get(f"/coverages/{coverage.id}/card-back").data == PNG

    # Billing may see it (audited); another patient, or a provider without this patient, may not.
    billing = IsolatedClient(app, app.response_class, use_cookies=True)
    login(billing, factories.user("billing").email)
    assert billing.get(f"/coverages/{coverage.id}/card-front").status_code == 200
    stranger = IsolatedClient(app, app.response_class, use_cookies=True)
    login(stranger, factories.user("patient").email)
    assert stranger.get(f"/coverages/{coverage.id}/card-front").status_code == 404
    provider = IsolatedClient(app, app.response_class, use_cookies=True)
    login(provider, clinic["provider"].user.email)
    assert provider.get(f"/coverages/{coverage.id}/card-front").status_code == 404


def test_a_photo_that_is_not_a_picture_is_refused_and_the_rest_is_kept(db, driver, clinic, new_member):
    intake_id = driver.start(clinic["hybrid"].id)
    driver.post(intake_id, "about", ABOUT)
    member = new_member()
    bad = {"primary_card_front": (io.BytesIO(b"<html>not a photo</html>"), "x.jpg", "image/jpeg")}
    response = driver.post(intake_id, "insurance", insurance_form(member, **bad), content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "The card photo must be a JPEG, PNG or WebP picture." in html
    assert f'value="{member}"' in html and "Please choose the card photos again." in html


def test_consents_are_append_only_in_the_database(app, db, driver, clinic):
    from tests.conftest import owner_url

    intake_id = driver.start(clinic["hybrid"].id)
    driver.post(intake_id, "about", ABOUT)
    driver.post(intake_id, "consents", {"consent_treatment": ABOUT["legal_name"]})
    with psycopg.connect(owner_url(app), autocommit=True) as conn:
        for statement in ("UPDATE intake_consents SET wording_version = 'x'", "DELETE FROM intake_consents"):
            with pytest.raises(psycopg.Error):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM intake_consents").fetchone()[0] == 1
