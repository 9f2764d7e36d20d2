"""Two-step sign-in set up on a phone (360 px): the QR code fits, the code confirms through htmx,
the recovery codes show, and the next sign-in asks for a code."""
from datetime import timedelta

import pyotp
import pytest
from playwright.sync_api import expect

from tests.helpers.phone import has_page_chrome, sign_in, small_tap_targets

pytestmark = pytest.mark.e2e


def test_a_patient_sets_up_two_step_sign_in_on_a_phone(live_server, phone, factories, clock, browser):
    me = factories.user("patient")
    page = phone
    sign_in(page, live_server, me.email)
    page.get_by_role("link", name="Two-step sign-in").click()
    page.wait_for_load_state("load")
    qr = page.locator(".qr svg")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box["width"] >= 150 and box["x"] + box["width"] <= 360
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert small_tap_targets(page) == []

    secret = page.locator("#mfa-secret").inner_text().strip()
    page.get_by_label("Code", exact=True).fill(pyotp.TOTP(secret).at(clock.now()))
    page.get_by_role("button", name="Turn on two-step sign-in").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    assert page.locator("#recovery-codes li").count() == 10
    assert has_page_chrome(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    # A new browser: the password, then the code.
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        other = context.new_page()
        other.goto(live_server + "/login")
        other.get_by_label("Email").fill(me.email)
        other.get_by_label("Password").fill("correct-horse-battery")
        other.get_by_role("button", name="Sign in").click()
        other.wait_for_url(lambda url: url.endswith("/login/mfa"))
        clock.advance(timedelta(seconds=30))
        other.get_by_label("Code", exact=True).fill(pyotp.TOTP(secret).at(clock.now()))
        other.get_by_role("button", name="Continue").click()
        other.wait_for_url(lambda url: url.endswith("/patient"))
    finally:
        context.close()
