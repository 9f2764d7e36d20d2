"""The axe-core hook (tests/helpers/a11y.py) can fail a test: it finds an unlabeled input on a page
after load, one swapped in by htmx later, one in a dialog added to <body>, and on the page's final
state when the context closes; and a page with nothing wrong passes. The pages are served to
Chromium by a route (no server), with the same kind of nonce CSP the app sends."""
import pytest
from playwright.sync_api import expect

from tests.helpers import a11y

pytestmark = pytest.mark.e2e

ORIGIN = "http://a11y.test"
CSP = "default-src 'self'; script-src 'self' 'nonce-n0nce'; style-src 'self'"

GOOD = """<!doctype html><html lang="en"><head><title>Fine</title></head><body><main>
<h1>Fine</h1><label for="name">Name</label><input id="name"></main></body></html>"""
BAD = """<!doctype html><html lang="en"><head><title>Bad</title></head><body><main>
<h1>Bad</h1><input id="nameless" type="text"></main></body></html>"""
LATER = """<!doctype html><html lang="en"><head><title>Later</title>
<script nonce="n0nce" src="/later.js"></script></head><body><main><h1>Later</h1>
<button id="go" type="button">Show the form</button><div id="slot"></div></main></body></html>"""
LATER_JS = """document.addEventListener("DOMContentLoaded", function () {
  document.getElementById("go").addEventListener("click", function () {
    var slot = document.getElementById("slot");
    if (location.hash === "#dialog") {
      var d = document.createElement("div");
      d.setAttribute("role", "dialog");
      d.setAttribute("aria-label", "Pop");
      d.innerHTML = '<input type="text" class="in-dialog">';
      document.body.appendChild(d);
    } else if (location.hash === "#htmx") {
      slot.innerHTML = '<input type="text" class="swapped">';
      document.dispatchEvent(new CustomEvent("htmx:afterSettle", {bubbles: true}));
    } else {
      slot.innerHTML = '<input type="text" class="quiet">';      // no event: only the final check sees it
    }
  });
});"""


@pytest.fixture
def site(phone):
    pages = {"/good": GOOD, "/bad": BAD, "/later": LATER}

    def serve(route):
        path = route.request.url[len(ORIGIN):].split("#")[0]
        if path == "/later.js":
            return route.fulfill(body=LATER_JS, content_type="text/javascript")
        route.fulfill(body=pages.get(path, GOOD), content_type="text/html",
                      headers={"Content-Security-Policy": CSP})

    phone.context.route(f"{ORIGIN}/**", serve)
    return phone


def rules_found(found, marker):
    return [(v["rule"], v["why"]) for v in found if any(marker in t for t in v["targets"])]


def wait_for_check(page, url):
    page.wait_for_function("() => true")        # let pending binding calls reach Python
    for _ in range(100):
        if any(u == url for u, _ in a11y.CHECKS):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"axe never reported on {url}: {a11y.CHECKS}")


def test_an_unlabeled_input_after_load_is_reported_and_a_good_page_is_not(site):
    page = site
    page.goto(f"{ORIGIN}/good")
    wait_for_check(page, f"{ORIGIN}/good")
    page.goto(f"{ORIGIN}/bad")          # navigating on at once loses nothing: the load check reports itself
    page.goto(f"{ORIGIN}/good")
    wait_for_check(page, f"{ORIGIN}/bad")
    found = a11y.take()
    assert rules_found(found, "nameless") == [("label", "load")], found
    assert all(v["url"] == f"{ORIGIN}/bad" for v in found), found


@pytest.mark.parametrize("how, marker, why", [("htmx", "swapped", "htmx swap"),
                                              ("dialog", "in-dialog", "dialog")])
def test_content_added_later_is_checked_when_it_arrives(site, how, marker, why):
    page = site
    page.goto(f"{ORIGIN}/later#{how}")
    wait_for_check(page, f"{ORIGIN}/later#{how}")
    assert a11y.take() == []
    page.keyboard.press("Tab")
    expect(page.locator("#go")).to_be_focused()
    page.keyboard.press("Enter")
    for _ in range(100):
        if any(w == why for _, w in a11y.CHECKS):
            break
        page.wait_for_timeout(50)
    found = a11y.take()
    assert (("label", why)) in rules_found(found, marker), found
    page.context.close()            # its final-state check finds the same input again: forget it
    a11y.take()


def test_the_final_state_is_checked_when_the_context_closes(browser):
    context = browser.new_context(viewport={"width": 360, "height": 740})
    context.route(f"{ORIGIN}/**", lambda route: route.fulfill(
        body=LATER if "later.js" not in route.request.url else LATER_JS,
        content_type="text/javascript" if "later.js" in route.request.url else "text/html",
        headers={"Content-Security-Policy": CSP}))
    page = context.new_page()
    page.goto(f"{ORIGIN}/later")
    wait_for_check(page, f"{ORIGIN}/later")
    page.locator("#go").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".quiet")).to_be_attached()
    assert rules_found(a11y.FOUND, "quiet") == []
    context.close()
    found = a11y.take()
    assert rules_found(found, "quiet") == [("label", "final state")], found
