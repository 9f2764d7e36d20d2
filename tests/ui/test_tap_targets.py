"""On a 360 px phone every link and button a patient taps on the main patient pages is at least
44 x 44 CSS px (measured from the rendered boxes, not read from the CSS)."""
from datetime import datetime, timezone

import pytest

from tests.helpers.phone import MIN_TAP, sign_in, small_tap_targets, tap_targets

pytestmark = pytest.mark.e2e

WED_10_NY = datetime(2026, 12, 9, 15, 0, tzinfo=timezone.utc)     # outside the 24 h cancellation window


def test_every_link_and_button_on_the_patient_pages_is_at_least_44_px(live_server, phone, db, factories, clock,
                                                                       policy, stripe_sandbox):
    from tests.helpers.payments import paid_appointment

    if stripe_sandbox is None:
        pytest.fail("this test needs the Stripe sandbox (unset STRIPE_SECRET_KEY)")
    booked = paid_appointment(db, factories, clock, policy, stripe_sandbox, starts_at=WED_10_NY)
    me = booked.patient.user
    page = phone
    sign_in(page, live_server, me.email)

    measured: dict[str, int] = {}
    too_small: dict[str, list[str]] = {}

    def check(name: str) -> None:
        page.wait_for_load_state("load")
        measured[name] = len(tap_targets(page))
        failures = small_tap_targets(page)
        if failures:
            too_small[name] = failures

    page.goto(f"{live_server}/patient")
    check("patient home")
    page.goto(f"{live_server}/appointments")
    check("appointments")
    page.goto(f"{live_server}/appointments/{booked.id}")
    page.get_by_role("link", name="Add to calendar (.ics)").wait_for()
    check("appointment")
    page.goto(f"{live_server}/appointments/{booked.id}/receipt")
    check("receipt")
    page.goto(f"{live_server}/book")
    check("search")
    page.locator("#results h3 a").first.click()
    page.locator("button.slot").first.wait_for()
    check("provider slots")
    page.locator("button.slot").first.click()
    page.get_by_role("heading", name="Review your visit").wait_for()
    check("review")
    page.get_by_role("link", name="Continue to payment").click()
    page.get_by_role("heading", name="Pay to book").wait_for()
    check("checkout")

    assert all(count >= 3 for count in measured.values()), measured      # the pages really rendered
    report = "\n".join(f"{name}: {failure}" for name, failures in too_small.items() for failure in failures)
    assert not too_small, f"tap targets under {MIN_TAP}x{MIN_TAP} CSS px:\n{report}"


def test_the_providers_availability_link_is_at_least_44_px(live_server, phone, factories, clock):
    visit = factories.appointment_type(name="Video consult")
    provider = factories.provider(types=[visit], full_name="Dr. Eve Day")
    page = phone
    sign_in(page, live_server, provider.user.email)
    page.goto(f"{live_server}/staff/day")
    link = page.get_by_role("link", name="Availability", exact=True)
    box = link.bounding_box()
    assert box and box["width"] >= MIN_TAP and box["height"] >= MIN_TAP, f"Availability link is {box}"
    assert not small_tap_targets(page), small_tap_targets(page)
