"""Fixtures for the Stripe sandbox tests: one sandbox process per session, SDK clients, a webhook receiver.

These tests exercise devtools/stripe_sandbox only; they never import the app.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe

from devtools.stripe_sandbox.process import SandboxProcess


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    sp = SandboxProcess.start(tmp_path_factory.mktemp("stripe-sandbox"))
    try:
        yield sp
    finally:
        sp.stop()


@pytest.fixture(autouse=True)
def _clean_faults(request):
    yield
    if "sandbox" in request.fixturenames:
        sp = request.getfixturevalue("sandbox")
        if sp.running:
            sp.reset_faults()
            sp.remove_webhook_endpoints()


def make_client(sp: SandboxProcess, *, api_key: str | None = None, retries: int = 0):
    http = stripe.RequestsClient()
    client = stripe.StripeClient(api_key or sp.secret_key, base_addresses={"api": sp.api_base},
                                 max_network_retries=retries, http_client=http)
    return client, http


@pytest.fixture
def client(sandbox):
    c, http = make_client(sandbox)
    yield c
    http.close()


@pytest.fixture
def retrying_client(sandbox):
    """A client that retries like the portal's (max_network_retries=2)."""
    c, http = make_client(sandbox, retries=2)
    yield c
    http.close()


@pytest.fixture
def pk_client(sandbox):
    c, http = make_client(sandbox, api_key=sandbox.publishable_key)
    yield c
    http.close()


@pytest.fixture
def new_card(client):
    """new_card(number) -> a PaymentMethod created from a raw test card number (sandbox only)."""
    def make(number: str, *, exp_month: int = 12, exp_year: int = 2034, cvc: str = "123"):
        return client.v1.payment_methods.create(params={
            "type": "card",
            "card": {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": cvc},
        })
    return make


class WebhookReceiver:
    """A local HTTP server recording webhook deliveries; answers with ``self.status``."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 200
        self.lock = threading.Lock()
        receiver = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append({"body": body, "headers": dict(self.headers), "at": time.time()})
                    status = receiver.status(len(receiver.requests)) if callable(receiver.status) \
                        else receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/stripe"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def events(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]

    def wait_for(self, predicate, timeout: float = 10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            evts = self.events()
            if predicate(evts):
                return evts
            time.sleep(0.02)
        raise AssertionError(f"webhooks never satisfied the condition; got {[e['type'] for e in self.events()]}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def webhooks(sandbox):
    """A receiver registered as the sandbox's (only) webhook endpoint for this test."""
    rx = WebhookReceiver()
    sandbox.remove_webhook_endpoints()
    sandbox.add_webhook_endpoint(rx.url)
    try:
        yield rx
    finally:
        sandbox.remove_webhook_endpoints()
        sandbox.wait_for_webhooks(timeout=5)
        rx.close()
