"""Browser-facing headers (app/security_headers.py): a Content-Security-Policy with a fresh nonce on
every page, every script of the page carrying it and no inline style or handler; Stripe's sources
from the settings (real Stripe vs the sandbox); HSTS only in production; 413 for a body over
MAX_CONTENT_LENGTH; ProxyFix only when PROXY_FIX says so."""
from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from tests.conftest import make_settings, stripe_settings
from tests.foundation.test_access import EXPECTED, ROLES, SAMPLE_ARGS
from tests.helpers.payments import checkout_page, sign_in

NONCE = re.compile(r"'nonce-([A-Za-z0-9_-]+)'")


class Tags(HTMLParser):
    """The page's <script> / <style> tags and any style="" or on*="" attribute."""

    def __init__(self):
        super().__init__()
        self.scripts, self.styles, self.inline_attributes = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts.append(attrs)
        elif tag == "style":
            self.styles.append(attrs)
        for name in attrs:
            if name == "style" or name.startswith("on") or name.startswith("hx-on"):
                self.inline_attributes.append((tag, name, attrs[name]))


def directives(header: str) -> dict[str, list[str]]:
    found = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            found[words[0]] = words[1:]
    return found


def check_page(response) -> str:
    """The page's CSP names a nonce; every script and style of the HTML carries exactly it; no
    style attribute or inline handler. Returns the nonce."""
    header = response.headers.get("Content-Security-Policy", "")
    nonces = NONCE.findall(header)
    assert nonces and len(set(nonces)) == 1, (response.request.path, header)
    policy = directives(header)
    assert policy["frame-ancestors"] == ["'none'"] and policy["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in header and "'unsafe-eval'" not in header
    if response.mimetype == "text/html":
        tags = Tags()
        tags.feed(response.get_data(as_text=True))
        for attrs in tags.scripts + tags.styles:
            assert attrs.get("nonce") == nonces[0], (response.request.path, attrs)
        assert tags.inline_attributes == [], (response.request.path, tags.inline_attributes)
    return nonces[0]


@pytest.mark.parametrize("role", ROLES)
def test_every_get_page_has_a_csp_with_a_nonce_its_scripts_carry(app, client, login_as, factories, role):
    from flask import url_for
    from werkzeug.routing import BuildError

    if role != "anonymous":
        login_as(role)
    pages = 0
    for (method, endpoint), expected in sorted(EXPECTED.items()):
        # webhooks and the FHIR API are server to server (SESSIONLESS): JSON for programs, no page
        if method != "GET" or endpoint.startswith(("webhooks.", "fhir.")) or endpoint not in app.view_functions:
            continue
        args = SAMPLE_ARGS.get(endpoint, {})
        if callable(args):
            args = args(factories)
        try:
            with app.test_request_context():
                url = url_for(endpoint, **args)
        except BuildError:          # a row whose route is still being written
            continue
        response = client.get(url)
        if response.status_code not in (301, 302, 303):
            check_page(response)
            pages += response.mimetype == "text/html"
        response.close()
    assert pages >= 3


def test_each_response_has_its_own_nonce(client):
    first, second = client.get("/login"), client.get("/login")
    assert check_page(first) != check_page(second)


def test_checkout_loads_stripe_js_from_the_sandbox_under_the_policy(app, client, db, held, sandbox):
    sign_in(client, held.patient.user)
    response, secret, _ = checkout_page(client, held.id)
    assert response.status_code == 200 and secret
    nonce = check_page(response)
    html = response.get_data(as_text=True)
    assert f'src="{sandbox.js_url}" nonce="{nonce}"' in html
    origin = re.match(r"https?://[^/]+", sandbox.api_base).group(0)
    policy = directives(response.headers["Content-Security-Policy"])
    for name in ("script-src", "frame-src", "connect-src"):
        assert origin in policy[name], (name, policy[name])
        assert not any("stripe.com" in source for source in policy[name])
    assert policy["form-action"] == ["'self'"] and policy["base-uri"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]


@pytest.fixture
def swapped_settings(app):
    """Run a request under other settings (the hooks read them per request)."""
    original = app.config["SETTINGS"]

    def swap(**changes):
        app.config["SETTINGS"] = replace(original, **changes)

    yield swap
    app.config["SETTINGS"] = original


def test_real_stripe_gets_the_sources_stripes_guide_lists(client, swapped_settings):
    swapped_settings(STRIPE_API_BASE="https://api.stripe.com", STRIPE_JS_URL="https://js.stripe.com/v3/")
    policy = directives(client.get("/login").headers["Content-Security-Policy"])
    assert policy["script-src"][2:] == ["https://js.stripe.com"]
    assert policy["frame-src"][1:] == ["https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"]
    assert policy["connect-src"][1:] == ["https://api.stripe.com"]


def test_hsts_only_in_production(client, swapped_settings):
    assert "Strict-Transport-Security" not in client.get("/login").headers
    swapped_settings(APP_ENV="production")
    response = client.get("/login")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    check_page(response)


def test_a_body_over_the_limit_is_413_with_a_clear_page(app, client):
    limit = app.config["MAX_CONTENT_LENGTH"]
    assert limit == app.config["SETTINGS"].MAX_CONTENT_LENGTH == 1024 * 1024
    big = "x" * (limit + 1)
    response = client.post("/login", data={"email": "a@example.test", "password": big})
    assert response.status_code == 413
    assert "too large" in response.get_data(as_text=True)
    check_page(response)
    webhook = client.post("/webhooks/stripe", data=big, content_type="application/json",
                          headers={"Stripe-Signature": "t=1,v1=0"})
    assert webhook.status_code == 413 and webhook.is_json


@pytest.fixture
def fresh_app(db, database_url, service_urls, tmp_path, stripe_sandbox):
    """Another app on this run's database and Redis, with the given settings; it records each
    request's client address and scheme."""
    from flask import request

    from app import create_app
    from tests.foundation.test_log_scrub import dispose

    made = []

    def make(**overrides):
        application = create_app(make_settings(database_url, service_urls["REDIS_URL"], tmp_path,
                                               **stripe_settings(stripe_sandbox), **overrides))
        made.append(application)
        seen = []
        application.before_request(lambda: seen.append((request.remote_addr, request.scheme)) and None)
        return application, seen

    yield make
    for application in made:
        dispose(application)


FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


def test_proxy_fix_is_off_by_default(fresh_app):
    application, seen = fresh_app()
    assert application.test_client().get("/healthz", headers=FORWARDED).status_code == 200
    assert seen == [("127.0.0.1", "http")]


def test_proxy_fix_setting_trusts_the_named_hops(fresh_app):
    application, seen = fresh_app(PROXY_FIX="x_for=1,x_proto=1")
    assert application.test_client().get("/healthz", headers=FORWARDED).status_code == 200
    assert seen == [("203.0.113.7", "https")]


def test_a_malformed_proxy_fix_setting_stops_the_start(tmp_path):
    from app.settings import ConfigError, Settings

    with pytest.raises(ConfigError, match="PROXY_FIX"):
        Settings.from_env({"APP_ENV": "test", "INSTANCE_PATH": str(tmp_path), "PROXY_FIX": "x_for=yes"})
