"""HTTP server: routing, auth, CORS, idempotency, fault injection and the /_sandbox/ admin routes."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from . import errors
from .core import API_VERSION, Ctx, expand
from .errors import StripeAPIError
from .faults import Faults
from .forms import FormError, parse_form
from .resources import payment_intents, register_all, setup_intents
from .resources.webhook_endpoints import make_endpoint
from .store import Store, new_id, public
from .webhooks import Dispatcher

IDEMPOTENCY_WINDOW = 24 * 3600
STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key, Stripe-Version, "
                                    "Stripe-Account, X-Stripe-Client-User-Agent",
    "Access-Control-Expose-Headers": "Request-Id, Idempotent-Replayed, Stripe-Version",
    "Access-Control-Max-Age": "600",
}


class Route:
    def __init__(self, method: str, pattern: str, handler, publishable: bool):
        self.method = method
        self.pattern = pattern
        self.regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        self.handler = handler
        self.publishable = publishable


class Router:
    def __init__(self):
        self.routes: list[Route] = []
        self.timers = []
        self.admin_routes: list[Route] = []
        self.pages: list[Route] = []

    def add(self, method: str, pattern: str, handler, publishable: bool = False) -> None:
        self.routes.append(Route(method, pattern, handler, publishable))

    def admin(self, method: str, pattern: str, handler) -> None:
        """An admin route under /_sandbox (``pattern`` without that prefix, e.g. ``/cards/{id}/expire``):
        ``handler(ctx, data, **path_args)`` runs in one transaction with an admin context and returns
        the JSON body (200); a StripeAPIError answers with its status and envelope."""
        self.admin_routes.append(Route(method, pattern, handler, False))

    def timer(self, fn) -> None:
        self.timers.append(fn)

    def page(self, method: str, pattern: str, handler) -> None:
        """An HTML page served by the sandbox (e.g. Connect onboarding, ``/_sandbox/onboarding/{link}``):
        ``handler(ctx, form, **path_args) -> (status, content_type, body_bytes, headers)``, in one transaction."""
        self.pages.append(Route(method, pattern, handler, False))

    def match(self, method: str, path: str):
        for r in self.routes:
            if r.method != method:
                continue
            m = r.regex.match(path)
            if m:
                return r, m.groupdict()
        return None, None


class SandboxApp:
    def __init__(self, data_dir: str, *, secret_key: str = "sk_test_sandbox", publishable_key: str = "pk_test_sandbox",
                 webhook_secret: str = "whsec_sandbox", webhook_urls: list[str] | None = None,
                 later_seconds: float | None = None):
        # "Later" (a refund settling, a dispute opening, funds becoming available, a payout landing):
        # due this many seconds after the cause in real time, or at once when the sandbox clock is
        # advanced past it. Env STRIPE_SANDBOX_LATER_SECONDS; admin POST /_sandbox/later.
        if later_seconds is None:
            later_seconds = float(os.environ.get("STRIPE_SANDBOX_LATER_SECONDS") or 3)
        self.later_seconds = later_seconds
        self.secret_key = secret_key
        self.publishable_key = publishable_key
        self.webhook_secret = webhook_secret
        self.api_base = ""
        self.store = Store(data_dir)
        salt = self.store.get_meta("fingerprint_salt")
        if salt is None:
            salt = secrets.token_hex(16)
            self.store.set_meta("fingerprint_salt", salt)
        self.fingerprint_salt = salt
        self.webhooks = Dispatcher(webhook_secret)
        self.faults = Faults()
        self.router = Router()
        register_all(self.router)
        for url in webhook_urls or []:
            self.add_webhook_endpoint(url)

    def close(self) -> None:
        self.webhooks.stop()
        self.store.close()

    # -- helpers used by admin routes -------------------------------------------
    def add_webhook_endpoint(self, url: str, secret: str | None = None, events=None) -> dict:
        with self.store.lock:
            for we in self.store.all("webhook_endpoint"):
                if we["url"] == url and we["secret"] == (secret or self.webhook_secret):
                    return we
            we = make_endpoint(self.store.now(), url, secret or self.webhook_secret, events)
            self.store.insert(we)
            return we

    def run_in_tx(self, fn, *, key_kind: str = "admin", request_id: str | None = None):
        """Run fn(ctx) in one transaction, then hand its events to the webhook dispatcher."""
        with self.store.lock:
            ctx = Ctx(self, self.store, "POST", "", {}, key_kind, request_id or new_id("req", 14), None)
            self.store.begin()
            try:
                result = fn(ctx)
                self.store.commit()
            except BaseException:
                self.store.rollback()
                raise
            self.webhooks.enqueue(self.store, ctx.events)
            return result

    def sweep(self) -> None:
        def run(ctx):
            for t in self.router.timers:
                t(ctx)
        self.run_in_tx(run)

    # -- the API ------------------------------------------------------------
    def authenticate(self, headers, params: dict) -> str:
        auth = headers.get("Authorization") or ""
        key = None
        if auth.startswith("Bearer "):
            key = auth[7:].strip()
        elif auth.startswith("Basic "):
            try:
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            except Exception:  # noqa: BLE001
                key = ""
        elif isinstance(params.get("key"), str):
            key = params["key"]
        if not key:
            raise errors.auth_error(
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api"
                "#authentication for details, or we can help at https://support.stripe.com/.")
        if key == self.secret_key:
            return "secret"
        if key == self.publishable_key:
            return "publishable"
        raise errors.auth_error(f"Invalid API Key provided: {key[:8]}{'*' * 12}{key[-4:]}")

    def handle_api(self, method: str, path: str, query: str, headers, body: bytes):
        """Returns (status, extra_headers, body_dict)."""
        request_id = new_id("req", 14)
        out_headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
        idem_key = headers.get("Idempotency-Key")
        if idem_key:
            out_headers["Idempotency-Key"] = idem_key
        try:
            try:
                params = parse_form(query) if query else {}
                if method == "POST" and body:
                    params.update(parse_form(body.decode("utf-8")))
            except (FormError, UnicodeDecodeError) as e:
                raise errors.invalid(str(e) or "Invalid request body")
            route, kwargs = self.router.match(method, path)
            key_kind = self.authenticate(headers, params)
            if route is None:
                raise StripeAPIError(404, "invalid_request_error",
                                     f"Unrecognized request URL ({method}: {path}). Please see "
                                     "https://stripe.com/docs or we can help at https://support.stripe.com/.")
            if key_kind == "publishable" and not route.publishable:
                raise errors.auth_error("This API call cannot be made with a publishable API key. Please use a "
                                        "secret API key. You can find a list of your API keys at "
                                        "https://dashboard.stripe.com/account/apikeys.")
            params.pop("key", None)
            self.sweep()
            with self.store.lock:
                if method == "POST" and idem_key:
                    scope = key_kind + ":" + hashlib.sha256(
                        (headers.get("Authorization") or "").encode()).hexdigest()[:16]
                    fp = hashlib.sha256(json.dumps([method, path, params], sort_keys=True).encode()).hexdigest()
                    prior = self.store.idem_get(scope, idem_key, IDEMPOTENCY_WINDOW)
                    if prior is not None:
                        if prior[0] != fp:
                            raise StripeAPIError(
                                400, "idempotency_error",
                                "Keys for idempotent requests can only be used with the same parameters they were "
                                f"first used with. Try using a key other than '{idem_key}' if you meant to execute "
                                "a different request.")
                        out_headers["Idempotent-Replayed"] = "true"
                        stored = json.loads(prior[2])
                        out_headers["Original-Request"] = stored.get("request_id", "")
                        return prior[1], out_headers, stored["body"]
                else:
                    scope = fp = None
                ctx = Ctx(self, self.store, method, path, params, key_kind, request_id, idem_key)
                ctx.account = headers.get("Stripe-Account") or None   # acting as a connected account
                self.store.begin()
                try:
                    try:
                        obj = route.handler(ctx, **kwargs)
                        status, result = 200, expand(ctx, obj, ctx.expand_paths())
                    except StripeAPIError as e:
                        if not e.keep:
                            self.store.rollback()
                            self.store.begin()
                            ctx.events.clear()
                        status, result = e.status, e.body()
                    result = public(result)
                    if scope is not None:
                        self.store.idem_put(scope, idem_key, fp, status,
                                            json.dumps({"request_id": request_id, "body": result}))
                    self.store.commit()
                except BaseException:
                    self.store.rollback()
                    raise
                self.webhooks.enqueue(self.store, ctx.events)
                return status, out_headers, result
        except StripeAPIError as e:
            out_headers.update(e.headers)
            return e.status, out_headers, e.body()
        except Exception:  # noqa: BLE001 - never a stack trace in a response
            traceback.print_exc(file=sys.stderr)
            return 500, out_headers, errors.api_error().body()

    # -- admin ----------------------------------------------------------------
    def handle_admin(self, method: str, path: str, data: dict):
        sub = path[len("/_sandbox"):].rstrip("/") or "/"
        if sub == "/health":
            return 200, {"ok": True, "now": self.store.now(), "api_base": self.api_base}
        if sub == "/config":
            return 200, {"api_base": self.api_base, "js_url": self.api_base + "/v3/",
                         "secret_key": self.secret_key, "publishable_key": self.publishable_key,
                         "webhook_secret": self.webhook_secret}
        if sub == "/webhook_endpoints":
            if method == "POST":
                url = data.get("url")
                if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                    return 400, {"error": "url (http:// or https://) is required"}
                we = self.add_webhook_endpoint(url, data.get("secret"), data.get("enabled_events"))
                return 200, we
            if method == "GET":
                with self.store.lock:
                    return 200, {"data": self.store.all("webhook_endpoint")}
            if method == "DELETE":
                with self.store.lock:
                    self.store.db.execute("DELETE FROM objects WHERE type='webhook_endpoint'")
                return 200, {"deleted": True}
        if sub == "/clock":
            return 200, {"now": self.store.now(), "offset": self.store.clock_offset()}
        if sub == "/clock/advance" and method == "POST":
            seconds = float(data.get("seconds", 0))
            if seconds < 0:
                return 400, {"error": "seconds must be >= 0"}
            with self.store.lock:
                self.store.advance_clock(seconds)
            self.sweep()
            return 200, {"now": self.store.now(), "offset": self.store.clock_offset()}
        if sub == "/faults":
            if method == "POST":
                rules = data.get("rules") if "rules" in data else [data]
                added = [self.faults.add(r) for r in rules]
                return 200, {"added": len(added), "faults": self.faults.describe()}
            if method == "GET":
                return 200, {"faults": self.faults.describe()}
            if method == "DELETE":
                self.faults.reset()
                self.webhooks.reset()
                return 200, {"faults": [], "webhook_mode": vars(self.webhooks.mode)}
        if sub == "/webhooks/mode":
            if method == "POST":
                m = self.webhooks.set_mode(data)
                return 200, {"webhook_mode": vars(m)}
            return 200, {"webhook_mode": vars(self.webhooks.mode)}
        if sub == "/webhooks/deliveries":
            if method == "DELETE":
                self.webhooks.clear_log()
                return 200, {"data": []}
            return 200, {"data": self.webhooks.deliveries(), "pending": self.webhooks.pending()}
        if sub == "/webhooks/wait" and method == "POST":
            idle = self.webhooks.wait_idle(float(data.get("timeout", 10)))
            return 200, {"idle": idle, "pending": self.webhooks.pending()}
        m = re.fullmatch(r"/3ds/([A-Za-z0-9_]+)", sub)
        if m and method == "POST":
            outcome = data.get("outcome", "succeeded")
            if outcome not in ("succeeded", "failed"):
                return 400, {"error": "outcome must be succeeded or failed"}
            intent_id = m.group(1)

            def run(ctx):
                if intent_id.startswith("seti_"):
                    obj = ctx.load("setup_intent", intent_id, "setup_intent")
                    return setup_intents.authenticate(ctx, obj, outcome == "succeeded")
                obj = ctx.load("payment_intent", intent_id, "payment_intent")
                return payment_intents.authenticate(ctx, obj, outcome == "succeeded")
            try:
                return 200, public(self.run_in_tx(run))
            except StripeAPIError as e:
                return e.status, e.body()
        if sub == "/later":
            if method == "POST":
                seconds = float(data.get("seconds", self.later_seconds))
                if seconds < 0:
                    return 400, {"error": "seconds must be >= 0"}
                self.later_seconds = seconds
            return 200, {"later_seconds": self.later_seconds}
        for r in self.router.admin_routes:
            if r.method != method:
                continue
            found = r.regex.match(sub)
            if found:
                try:
                    return 200, public(self.run_in_tx(lambda ctx: r.handler(ctx, data, **found.groupdict())))
                except StripeAPIError as e:
                    return e.status, e.body()
        return 404, {"error": f"unknown sandbox route {method} {path}"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "StripeSandbox/1.0"
    disable_nagle_algorithm = True  # headers and body go out as separate writes; don't wait for delayed ACKs
    app: SandboxApp

    def log_message(self, format, *args):  # noqa: A002
        if os.environ.get("STRIPE_SANDBOX_LOG"):
            sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_OPTIONS(self):
        self._dispatch("OPTIONS")

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in CORS_HEADERS.items():
            self.send_header(k, v)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj, headers=None):
        self._send(status, json.dumps(obj).encode(), "application/json", headers)   # C encoder: no indent

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self, method: str):
        app = self.app
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            u = urlsplit(self.path)
            path = u.path
            if method == "OPTIONS":
                self._send(204, b"", "text/plain")
                return
            if path in ("/v3", "/v3/", "/v3/stripe.js"):
                with open(os.path.join(STATIC_DIR, "stripe.js"), "rb") as f:
                    js = f.read()
                self._send(200, js, "application/javascript; charset=utf-8", {"Cache-Control": "no-store"})
                return
            if path == "/v3/authorize":
                html = (b"<!doctype html><html lang=\"en\"><title>3D Secure test page</title><p>This sandbox completes 3-D Secure "
                        b"challenges inside Stripe.js (stripe.handleNextAction).</p>")
                self._send(200, html, "text/html; charset=utf-8")
                return
            for r in app.router.pages:   # HTML pages (Connect onboarding)
                found = r.regex.match(path) if r.method == method else None
                if found:
                    form = dict(parse_qsl(body.decode())) if body else {}
                    try:
                        status, ctype, out, hdrs = app.run_in_tx(
                            lambda ctx, r=r, found=found: r.handler(ctx, form, **found.groupdict()))
                    except StripeAPIError as e:
                        status, ctype, hdrs = e.status, "text/plain; charset=utf-8", {}
                        out = e.message.encode()
                    self._send(status, out, ctype, hdrs)
                    return
            if path.startswith("/_sandbox/"):
                data: dict = {}
                if body:
                    ctype = self.headers.get("Content-Type", "")
                    if "json" in ctype:
                        data = json.loads(body.decode())
                    else:
                        data = dict(parse_qsl(body.decode()))
                if u.query:
                    data.update(dict(parse_qsl(u.query)))
                try:
                    status, obj = app.handle_admin(method, path, data)
                except (ValueError, TypeError) as e:
                    status, obj = 400, {"error": str(e)}
                self._json(status, obj)
                return
            if not path.startswith("/v1/"):
                self._json(404, {"error": {"type": "invalid_request_error",
                                           "message": f"Unrecognized request URL ({method}: {path})."}})
                return
            rule = app.faults.take(method, path)
            if rule is not None:
                if rule.mode == "slow":
                    time.sleep(rule.delay)
                elif rule.mode == "drop_before":
                    self._drop()
                    return
                elif rule.mode == "error_before":
                    self._json(500, errors.api_error().body(), {"Request-Id": new_id("req", 14)})
                    return
            status, headers, obj = app.handle_api(method, path, u.query, self.headers, body)
            if rule is not None and rule.mode == "drop_after":
                self._drop()
                return
            if rule is not None and rule.mode == "error_after":
                self._json(500, errors.api_error().body(), {"Request-Id": headers.get("Request-Id", "")})
                return
            self._json(status, obj, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            try:
                self._json(500, errors.api_error().body())
            except OSError:
                self.close_connection = True


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


def make_server(app: SandboxApp, port: int = 0) -> SandboxServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    srv = SandboxServer(("127.0.0.1", port), handler)
    app.api_base = f"http://127.0.0.1:{srv.server_address[1]}"
    return srv


def serve_in_thread(app: SandboxApp, port: int = 0):
    srv = make_server(app, port)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    return srv, t
