"""Browser steps and measurements for the e2e tests: signing in, a test card typed into the Payment
Element, the phone-sized (360 px) page's tap targets; on a laptop, the provider's step-up, the
note's review and signature, and the provider's payout onboarding."""
from __future__ import annotations

from datetime import timedelta

MIN_TAP = 44      # CSS px, each way
EXPIRY, CVC, ZIP = "12 / 34", "123", "10001"     # what a person types with any sandbox test card


def sign_in(page, base: str, email: str, password: str = "correct-horse-battery") -> None:
    """Sign in through the pages; an account with an authenticator (staff from the factories) gets
    the code step, answered with the code it shows now (the live server is this process's app)."""
    page.goto(base + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: not url.split("?")[0].endswith("/login"))
    if page.url.split("?")[0].endswith("/login/mfa"):
        from flask import current_app

        from tests.helpers.web import current_code

        page.get_by_label("Code", exact=True).fill(current_code(current_app._get_current_object(), email))
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(lambda url: "/login" not in url)
    page.wait_for_load_state("load")



def fill_card(page, number: str) -> None:
    """Type a test card into the Payment Element (the sandbox's Stripe.js) on the page."""
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiration (MM / YY)").fill(EXPIRY)
    page.get_by_label("CVC").fill(CVC)
    page.get_by_label("ZIP").fill(ZIP)


def step_up(page, email: str) -> None:
    """Answer "Confirm it is you" with the code the authenticator shows now."""
    from flask import current_app
    from playwright.sync_api import expect

    from tests.helpers.web import current_code

    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label("Code", exact=True).fill(current_code(current_app._get_current_object(), email))
    page.get_by_role("button", name="Confirm").click()


def review_and_sign(page, clock, email: str, total: str) -> None:
    """From the open note: Review and sign (the review shows ``total``), then Sign note; the sign-in's code
    is too old by then (the clock moved 16 minutes), so the step-up comes first; ends on the signed note."""
    from playwright.sync_api import expect

    page.get_by_role("link", name="Review and sign").click()
    page.wait_for_url(lambda url: url.endswith("/review"))
    expect(page.locator("#review-total")).to_contain_text(f"Total {total}")
    clock.advance(timedelta(minutes=16))                       # the sign-in's code is too old to sign with
    page.get_by_role("button", name="Sign note").click()
    step_up(page, email)
    page.wait_for_url(lambda url: url.endswith("/review"))
    page.get_by_role("button", name="Sign note").click()
    page.wait_for_url(lambda url: "/review" not in url)
    expect(page.get_by_role("heading", name="Visit note Signed")).to_be_visible()



def onboard_payouts(page, base: str, db, provider):
    """The provider signs in, opens Payouts, sets them up, continues to the sandbox's Stripe onboarding page
    (it names the account the app made) and submits it; back on the portal: "Ready to be paid". Returns the
    provider's payout account."""
    from playwright.sync_api import expect

    from app.services import payout_accounts

    sign_in(page, base, provider.user.email)
    page.get_by_role("link", name="Payouts").click()
    page.wait_for_url(lambda url: url.endswith("/staff/payouts"))
    expect(page.locator("#payout-words")).to_have_text("Not connected")
    page.get_by_role("button", name="Set up payouts").click()
    expect(page.locator("#payout-words")).to_have_text("Onboarding not finished")
    page.get_by_role("link", name="Continue to Stripe").click()
    page.wait_for_url(lambda url: "/_sandbox/onboarding/" in url)
    db.expire_all()
    account = payout_accounts.account_for(db, provider.id)
    expect(page.locator("#account")).to_have_text(account.stripe_account_id)
    page.get_by_role("button", name="Agree and submit").click()
    page.wait_for_url(lambda url: url.startswith(base) and "/staff/payouts/return" in url)
    expect(page.locator("#payout-words")).to_have_text("Ready to be paid")
    expect(page.get_by_text("You are ready to be paid")).to_be_visible()
    return account

# Every visible link and button, with its box and a name a person would recognise.
_TARGETS_JS = """
() => Array.from(document.querySelectorAll('a[href], button, input[type=submit], input[type=button], [role=button]'))
  .filter(el => {
    if (el.closest('[hidden]')) return false;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none') return false;
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0;
  })
  .map(el => {
    const box = el.getBoundingClientRect();
    const text = (el.innerText || el.value || el.getAttribute('aria-label') || '').trim().replace(/\\s+/g, ' ');
    return {tag: el.tagName.toLowerCase(), text: text.slice(0, 60), href: el.getAttribute('href') || '',
            width: Math.round(box.width * 10) / 10, height: Math.round(box.height * 10) / 10};
  })
"""


def tap_targets(page) -> list[dict]:
    return page.evaluate(_TARGETS_JS)


def small_tap_targets(page) -> list[str]:
    """Each visible link/button smaller than 44 x 44 CSS px, described for the failure message."""
    return [f'<{t["tag"]}> "{t["text"]}" {t["href"]} is {t["width"]}x{t["height"]}'
            for t in tap_targets(page) if t["width"] < MIN_TAP or t["height"] < MIN_TAP]


def has_page_chrome(page) -> bool:
    """The whole page, not a fragment: one top bar with the main navigation, one <main>."""
    return (page.locator("header.topbar").count() == 1 and page.locator("main").count() == 1
            and page.get_by_role("navigation", name="Main").is_visible())
