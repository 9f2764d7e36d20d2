"""A patient signs up, then signs in, on a phone-sized viewport, in Chromium."""
import pytest

pytestmark = pytest.mark.e2e


def test_patient_signs_up_signs_out_and_signs_in_on_a_phone(live_server, phone):
    page = phone
    page.goto(live_server + "/")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Full name").fill("Morgan Phone")
    page.get_by_label("Email").fill("morgan@example.com")
    page.get_by_label("Mobile phone").fill("+1 555 555 0142")
    page.get_by_label("Timezone").fill("America/New_York")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Repeat password").fill("short")
    page.get_by_role("button", name="Create account").click()
    # htmx swaps the form with its errors; nothing typed is lost.
    page.get_by_text("Use at least 12 characters.", exact=True).wait_for()     # under the field (and in the summary)
    assert page.get_by_label("Full name").input_value() == "Morgan Phone"
    page.get_by_label("Password", exact=True).fill("a-long-password")
    page.get_by_label("Repeat password").fill("a-long-password")
    page.get_by_role("button", name="Create account").click()
    # Sign-up signs no one in (it answers the same for an email that has an account): sign in next.
    page.get_by_role("heading", name="Sign in").wait_for()
    page.get_by_text("Thanks for signing up").wait_for()
    page.get_by_label("Email").fill("morgan@example.com")
    page.get_by_label("Password").fill("a-long-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Hello, Morgan").wait_for()
    # The page fits a 360 px screen: nothing scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()
    page.get_by_label("Email").fill("morgan@example.com")
    page.get_by_label("Password").fill("a-long-password")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Hello, Morgan").wait_for()
    box = page.get_by_role("button", name="Sign out").bounding_box()
    assert box["height"] >= 44
