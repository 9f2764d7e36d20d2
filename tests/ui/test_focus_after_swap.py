"""After an htmx swap the patient asked for, focus moves to what arrived (app.js): a form sent with
mistakes starts at its error summary, each field in error says so (aria-invalid) and names its
message (aria-describedby); a wrong password lands on the alert that says so. A keyboard user
then continues from there."""
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

ACTIVE = """() => { const el = document.activeElement;
  return {tag: el.tagName.toLowerCase(), cls: el.className || "", role: el.getAttribute("role") || "",
          text: (el.innerText || "").trim(), id: el.id || ""}; }"""


def test_a_signup_with_mistakes_moves_focus_to_the_error_summary(live_server, phone):
    page = phone
    page.goto(f"{live_server}/signup", wait_until="load")
    page.get_by_label("Email").focus()
    page.keyboard.type("not-an-email")
    page.keyboard.press("Enter")                   # sends the form (htmx swaps it in place)

    summary = page.locator(".error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()
    expect(summary).to_have_attribute("role", "alert")
    expect(summary.get_by_role("heading", name="There is a problem")).to_be_visible()
    email = page.get_by_label("Email")
    expect(email).to_have_attribute("aria-invalid", "true")
    described = email.get_attribute("aria-describedby")
    message = page.locator(f"#{described.split()[-1]}")
    expect(message).to_be_visible()
    assert message.inner_text().strip(), "the field's error message is empty"
    # The summary names the field and links to it.
    expect(summary.get_by_role("link", name="Email")).to_have_attribute("href", f"#{email.get_attribute('id')}")
    # Tab goes on from the summary into its links, not back to the top of the page.
    page.keyboard.press("Tab")
    info = page.evaluate(ACTIVE)
    first_link = page.locator(".error-summary a").first
    assert info["tag"] == "a" and first_link.evaluate("a => a === document.activeElement"), info


def test_a_wrong_password_moves_focus_to_the_alert(live_server, phone, factories):
    me = factories.user("patient")
    page = phone
    page.goto(f"{live_server}/login", wait_until="load")
    page.get_by_label("Email").focus()
    page.keyboard.type(me.email)
    page.keyboard.press("Tab")
    page.keyboard.type("not-the-password")
    page.keyboard.press("Enter")

    alert = page.locator("#login-form [role=alert]").first
    expect(alert).to_be_visible()
    expect(alert).to_be_focused()
    info = page.evaluate(ACTIVE)
    assert info["role"] == "alert" and info["text"], info


def test_a_slot_taken_meanwhile_moves_focus_to_the_notice_in_the_new_list(live_server, phone, factories, clock,
                                                                         db, policy):
    from datetime import datetime

    from app.services import booking
    from app.services.audit import Actor
    from tests.helpers.phone import sign_in

    visit = factories.appointment_type(name="Video consult")
    provider = factories.provider(types=[visit], full_name="Dr. Focus Swap")
    me, rival = factories.user("patient"), factories.patient()
    page = phone
    sign_in(page, live_server, me.email)
    page.goto(f"{live_server}/book/providers/{provider.id}?type_id={visit.id}", wait_until="load")
    slot = page.locator("button.slot").first
    booking.take_hold(db, now=clock.now(), patient=rival, provider_id=provider.id, type_id=visit.id,
                      starts_at=datetime.fromisoformat(slot.get_attribute("value")), policy=policy,
                      actor=Actor.system("test"))
    db.commit()
    for _ in range(60):                  # Tab to the first time, as a keyboard user would
        page.keyboard.press("Tab")
        if slot.evaluate("b => b === document.activeElement"):
            break
    expect(slot).to_be_focused()
    page.keyboard.press("Enter")

    notice = page.locator("#slot-list [role=alert]")
    expect(notice).to_contain_text("that time was just taken")
    expect(notice).to_be_focused()              # not lost to <body> with the button that was swapped out
    page.keyboard.press("Tab")
    info = page.evaluate(ACTIVE)
    assert info["tag"] == "button" and "slot" in info["cls"], info      # straight on to the nearest times
