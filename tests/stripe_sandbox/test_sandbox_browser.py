"""The sandbox's Stripe.js driven in Chromium from a page on another origin (phone viewport)."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

PAGE = """<!doctype html>
<html lang="en"><head><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Checkout</title><script src="%(js_url)s"></script></head>
<body>
<form id="pay-form">
  <div id="payment-element"></div>
  <button id="pay" type="submit">Pay</button>
</form>
<p id="status"></p><p id="message" role="alert"></p>
<script>
  const q = new URLSearchParams(location.search);
  const stripe = Stripe(q.get("pk"));
  const elements = stripe.elements({clientSecret: q.get("cs"), appearance: {theme: "stripe"}});
  const element = elements.create("payment");
  element.mount("#payment-element");
  element.on("change", (e) => { document.body.dataset.complete = String(e.complete); });
  document.getElementById("pay-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const {error: submitError} = await elements.submit();
    if (submitError) { document.getElementById("message").textContent = submitError.message; return; }
    const result = await stripe.confirmPayment({
      elements, confirmParams: {return_url: location.origin + "/done"}, redirect: q.get("redirect") || "if_required"});
    if (result.error) {
      document.getElementById("message").textContent = result.error.message;
      document.getElementById("status").textContent = "error:" + (result.error.decline_code || result.error.code);
    } else {
      document.getElementById("status").textContent = "paid:" + result.paymentIntent.status;
    }
  });
</script></body></html>"""


DONE = b'<!doctype html><html lang="en"><title>Done</title>done'


@pytest.fixture(scope="module")
def page_server(sandbox):
    html = (PAGE % {"js_url": sandbox.js_url}).encode()

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = html if urlsplit(self.path).path == "/checkout" else DONE
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    t.join(timeout=5)


# `browser` is the suite's one Chromium (tests/conftest.py): Playwright's sync
# API allows one running instance per thread.


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    pg = ctx.new_page()
    pg.set_default_timeout(10000)
    yield pg
    ctx.close()


def open_checkout(page, page_server, sandbox, client, *, amount=2500, redirect="if_required"):
    pi = client.v1.payment_intents.create(params={"amount": amount, "currency": "usd",
                                                  "automatic_payment_methods": {"enabled": True}})
    page.goto(f"{page_server}/checkout?pk={sandbox.publishable_key}&cs={pi.client_secret}&redirect={redirect}")
    return pi


def fill_card(page, number):
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiration (MM / YY)").fill("1234")
    page.get_by_label("CVC").fill("123")
    page.get_by_label("ZIP").fill("94110")


def test_4242_succeeds(page, page_server, sandbox, client):
    pi = open_checkout(page, page_server, sandbox, client)
    fill_card(page, "4242424242424242")
    expect(page.get_by_label("Expiration (MM / YY)")).to_have_value("12 / 34")
    expect(page.locator("body")).to_have_attribute("data-complete", "true")
    page.get_by_role("button", name="Pay").click()
    expect(page.locator("#status")).to_have_text("paid:succeeded")
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"
    pm = client.v1.payment_methods.retrieve(client.v1.payment_intents.retrieve(pi.id).payment_method)
    assert pm.card.last4 == "4242" and pm.billing_details.address.postal_code == "94110"


def test_3155_challenge_completed_succeeds(page, page_server, sandbox, client):
    pi = open_checkout(page, page_server, sandbox, client)
    fill_card(page, "4000002500003155")
    page.get_by_role("button", name="Pay").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Complete authentication").click()
    expect(page.locator("#status")).to_have_text("paid:succeeded")
    expect(dialog).to_have_count(0)
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


def test_3155_challenge_failed_does_not_pay(page, page_server, sandbox, client):
    pi = open_checkout(page, page_server, sandbox, client)
    fill_card(page, "4000002500003155")
    page.get_by_role("button", name="Pay").click()
    page.get_by_role("dialog").get_by_role("button", name="Fail authentication").click()
    expect(page.locator("#status")).to_have_text("error:payment_intent_authentication_failure")
    expect(page.locator("#message")).to_contain_text("failed authentication")
    got = client.v1.payment_intents.retrieve(pi.id)
    assert got.status == "requires_payment_method"
    assert got.last_payment_error.code == "payment_intent_authentication_failure"


def test_9995_shows_decline(page, page_server, sandbox, client):
    pi = open_checkout(page, page_server, sandbox, client)
    fill_card(page, "4000000000009995")
    page.get_by_role("button", name="Pay").click()
    expect(page.locator("#message")).to_have_text("Your card has insufficient funds.")
    expect(page.locator("#status")).to_have_text("error:insufficient_funds")
    assert client.v1.payment_intents.retrieve(pi.id).status == "requires_payment_method"


def test_incomplete_card_is_a_validation_error(page, page_server, sandbox, client):
    open_checkout(page, page_server, sandbox, client)
    page.get_by_label("Card number").fill("4242 4242")
    page.get_by_role("button", name="Pay").click()
    expect(page.locator("#message")).to_have_text("Your card number is incomplete.")


def test_redirect_always_goes_to_return_url(page, page_server, sandbox, client):
    pi = open_checkout(page, page_server, sandbox, client, redirect="always")
    fill_card(page, "4242424242424242")
    page.get_by_role("button", name="Pay").click()
    page.wait_for_url("**/done?**")
    q = parse_qs(urlsplit(page.url).query)
    assert q["payment_intent"] == [pi.id]
    assert q["payment_intent_client_secret"] == [pi.client_secret]
    assert q["redirect_status"] == ["succeeded"]
