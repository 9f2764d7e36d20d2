"""Browser-facing hardening: Content-Security-Policy with a per-request nonce, HSTS in production,
the request body limit (413) and the reverse-proxy headers (ProxyFix), all from the settings.

``init_app(app)`` (called by ``create_app``) wires it:

* ``csp_nonce()`` is a template global: a random value (``secrets.token_urlsafe``) made once per
  request; every ``<script>`` (and any ``<style>``) in app/templates carries ``nonce="{{
  csp_nonce() }}"``. The response's ``Content-Security-Policy`` names the same nonce, so the
  browser runs no inline script or style without it. Our templates carry no inline script, style,
  ``style=""`` attribute or event-handler attribute (``onclick=``); htmx's own indicator style
  is off (``includeIndicatorStyles: false`` in base.html's htmx-config, the rule is in app.css)
  and htmx is not allowed to evaluate code (``allowEval: false``: no ``hx-on``, no ``js:``
  values, no trigger filters).
* The Stripe sources are derived from the settings: real Stripe (``STRIPE_API_BASE`` is
  ``https://api.stripe.com``) gets what Stripe's CSP guide lists (script-src js.stripe.com;
  frame-src js.stripe.com, *.js.stripe.com, hooks.stripe.com; connect-src api.stripe.com); the
  offline sandbox gets its own origin(s) (of ``STRIPE_JS_URL`` and ``STRIPE_API_BASE``) in
  script-src, frame-src and connect-src. The sandbox's Stripe.js injects one ``<style>`` element
  and gives it the nonce of the ``<script>`` tag that loaded it.
* ``Strict-Transport-Security: max-age=31536000; includeSubDomains`` only when APP_ENV is
  production (a development server on http://127.0.0.1 must not pin the browser to https).
* ``MAX_CONTENT_LENGTH`` (bytes, default 1 MiB): a larger body is answered 413 with the error page
  (JSON for the JSON endpoints), never a 500.
* ``PROXY_FIX`` (e.g. ``x_for=1,x_proto=1``; unset: off): wraps the WSGI app in werkzeug's
  ``ProxyFix`` trusting that many proxies for each header, so ``request.remote_addr`` (audit rows)
  and the scheme are the client's. Set it only behind a proxy that overwrites those headers.
"""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import Flask, current_app, g, jsonify, request

REAL_STRIPE_API = "https://api.stripe.com"
HSTS = "max-age=31536000; includeSubDomains"
PROXY_FIX_KEYS = ("x_for", "x_proto", "x_host", "x_port", "x_prefix")


def csp_nonce() -> str:
    """This request's nonce (made on first use)."""
    nonce = g.get("csp_nonce")
    if nonce is None:
        nonce = g.csp_nonce = secrets.token_urlsafe(16)
    return nonce


def origin(url: str) -> str | None:
    """scheme://host[:port] of a URL (None when it has none)."""
    parts = urlsplit(url or "")
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _unique(values) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen


def stripe_sources(settings) -> dict[str, list[str]]:
    """The CSP sources Stripe.js needs, per directive, for these settings."""
    if (origin(settings.STRIPE_API_BASE) or "").rstrip("/") == REAL_STRIPE_API:
        return {"script-src": ["https://js.stripe.com"],
                "frame-src": ["https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"],
                "connect-src": ["https://api.stripe.com"]}
    own = _unique([origin(settings.STRIPE_JS_URL), origin(settings.STRIPE_API_BASE)])
    return {"script-src": own, "frame-src": own, "connect-src": own}


def policy(settings, nonce: str) -> str:
    stripe = stripe_sources(settings)
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", f"'nonce-{nonce}'", *stripe["script-src"]],
        "style-src": ["'self'", f"'nonce-{nonce}'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'", *stripe["connect-src"]],
        "frame-src": ["'self'", *stripe["frame-src"]],
        "object-src": ["'none'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
    }
    return "; ".join(f"{name} {' '.join(_unique(values))}" for name, values in directives.items())


def parse_proxy_fix(value: str | None) -> dict[str, int] | None:
    """``"x_for=1,x_proto=1"`` -> ProxyFix's keyword arguments; None/empty -> None (off)."""
    if not value or not value.strip():
        return None
    from app.settings import ConfigError

    result: dict[str, int] = {}
    for part in value.split(","):
        name, sep, count = part.strip().partition("=")
        name = name.strip()
        if not sep or name not in PROXY_FIX_KEYS or not count.strip().isdigit():
            raise ConfigError(f"PROXY_FIX must look like 'x_for=1,x_proto=1' (keys: {', '.join(PROXY_FIX_KEYS)}); "
                              f"got {value!r}")
        result[name] = int(count)
    return result


def _too_large(error):
    from app.blueprints.errors import wants_json
    from app.web import render

    limit = request.max_content_length or 0
    message = (f"That upload or form is too large (the limit is {limit // 1024} KiB). "
               "Please send less and try again.")
    if wants_json():
        return jsonify({"state": "error", "error": "request too large", "message": message}), 413
    return render("errors/error.html", status=413, code=413, title="That was too large", message=message)


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.config["MAX_CONTENT_LENGTH"] = settings.MAX_CONTENT_LENGTH
    app.add_template_global(csp_nonce, "csp_nonce")
    app.register_error_handler(413, _too_large)

    proxy_fix = parse_proxy_fix(settings.PROXY_FIX)
    if proxy_fix:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, **proxy_fix)

    app.after_request(apply)


def apply(response):
    """The CSP (with this request's nonce) and, in production, HSTS (an after_request hook)."""
    settings = current_app.config["SETTINGS"]
    if settings.is_production:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    from app import SESSIONLESS

    if request.blueprint in SESSIONLESS:       # server to server: no page
        return response
    response.headers["Content-Security-Policy"] = policy(settings, csp_nonce())
    return response
