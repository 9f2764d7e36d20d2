"""Browser steps and measurements for the phone-sized (360 px) e2e tests."""
from __future__ import annotations

MIN_TAP = 44      # CSS px, each way


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
