"""A patient fills intake on a phone (360 x 740, Chromium): the hybrid visit's page asks for intake
first, each step saves (a double tap saves once), the card photo is shrunk on the phone and stored,
the estimate follows, and "Choose a time" opens the times; a slot holds with the intake attached."""
from __future__ import annotations

import struct
import zlib

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.helpers.phone import sign_in

pytestmark = pytest.mark.e2e


def _png(width: int, height: int) -> bytes:
    """A real (grey) PNG, big enough that the page shrinks it to a JPEG."""
    raw = b"".join(b"\x00" + bytes([(x * 7 + y * 3) % 256 for x in range(width)]) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b""))


def _fits(page):
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


def test_a_patient_fills_intake_on_a_phone_then_sees_times(live_server, phone, db, factories, clinic, new_member,
                                                           tmp_path):
    from app.models import Appointment, Coverage, EligibilityCheck, Intake

    me = factories.user("patient", full_name="Maria Alvarez")
    member = new_member()
    photo = tmp_path / "card.png"
    photo.write_bytes(_png(2400, 1500))           # ~3.6 MB uncompressed: over the request limit as it is
    page = phone
    sign_in(page, live_server, me.email)
    page.goto(f"{live_server}/book/providers/{clinic['provider'].id}?type_id={clinic['hybrid'].id}")
    expect(page.get_by_role("heading", name="First, tell us about you and your insurance (about 5 min)")).to_be_visible()
    assert page.locator("button.slot").count() == 0
    page.get_by_role("link", name="Start intake").click()

    expect(page.get_by_role("heading", name="About you")).to_be_visible()
    expect(page.get_by_label("Legal name (as on your ID)")).to_have_value("Maria Alvarez")     # from the account
    _fits(page)
    page.get_by_label("Legal name (as on your ID)").fill("Maria José Alvarez")
    page.get_by_label("Date of birth").fill("1984-03-09")
    page.get_by_label("Sex").select_option("female")
    page.get_by_label("Address", exact=True).fill("12 Elm Street")
    page.get_by_label("City").fill("Albany")
    page.get_by_label("State").fill("XX")
    page.get_by_label("ZIP code").fill("12207")
    page.get_by_role("button", name="Save and continue").click()
    expect(page.get_by_text("Use the two-letter state code, like NY.")).to_be_visible()          # kept as typed
    expect(page.get_by_label("City")).to_have_value("Albany")
    _fits(page)
    page.get_by_label("State").fill("NY")
    button = page.get_by_role("button", name="Save and continue")
    assert button.bounding_box()["height"] >= 44
    button.dblclick()                                                           # a second tap does nothing

    expect(page.get_by_role("heading", name="Reason for your visit")).to_be_visible()
    db.expire_all()
    intake = db.scalars(select(Intake)).one()
    assert intake.version == 2                                                   # saved once
    page.get_by_label("What would you like help with?").fill("Follow-up on my blood pressure")
    page.get_by_label("Any allergies?").fill("penicillin")
    page.get_by_role("button", name="Save and continue").click()

    expect(page.get_by_role("heading", name="Insurance")).to_be_visible()
    _fits(page)
    page.get_by_label("Use my insurance").check()
    primary = page.get_by_role("group", name="Your insurance")
    primary.get_by_label("Insurer").select_option("AETNA-DEMO")
    primary.get_by_label("Member ID").fill(member)
    expect(page.locator("#secondary-coverage")).to_be_hidden()
    page.locator("#f-primary_card_front").set_input_files(str(photo))
    expect(page.get_by_role("button", name="Save and continue")).to_be_enabled()
    page.wait_for_function("document.querySelector('#f-primary_card_front').files[0].type === 'image/jpeg'")
    page.get_by_role("button", name="Save and continue").click()

    expect(page.get_by_role("heading", name="Consents")).to_be_visible()
    expect(page.get_by_text("Your insurance: Your insurance is active.")).to_be_visible()
    _fits(page)
    for field in page.get_by_label("Type your full name to sign").all():
        field.fill("maria josé alvarez")
    page.get_by_role("button", name="Sign and continue").click()

    expect(page.get_by_role("heading", name="Review and submit")).to_be_visible()
    _fits(page)
    page.get_by_role("button", name="Submit intake").click()
    page.wait_for_url(lambda url: "/estimate" in url)
    _fits(page)
    page.get_by_role("link", name="Choose a time").click()
    page.locator("button.slot").first.wait_for()
    expect(page.get_by_text("Your intake is in.")).to_be_visible()
    page.locator("button.slot").first.click()
    page.get_by_role("heading", name="Review your visit").wait_for()

    db.expire_all()
    intake = db.get(Intake, intake.id)
    [appointment] = db.scalars(select(Appointment)).all()
    assert intake.status == "submitted" and intake.appointment_id == appointment.id
    [coverage] = db.scalars(select(Coverage)).all()
    assert coverage.card_front_type == "image/jpeg" and coverage.card_front
    assert db.scalars(select(EligibilityCheck.status)).all() == ["active"]
