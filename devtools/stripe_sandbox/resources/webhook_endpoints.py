"""Webhook endpoints (Stripe's /v1/webhook_endpoints) and the 3-D Secure challenge outcome
that the sandbox's Stripe.js posts when the customer clicks the modal's buttons."""
from __future__ import annotations

import secrets

from ..core import Ctx, list_object
from ..store import new_id
from . import payment_intents, setup_intents


def make_endpoint(ctx_or_store_now: int, url: str, secret: str, events=None, description=None) -> dict:
    return {
        "id": new_id("we"),
        "object": "webhook_endpoint",
        "api_version": None,
        "application": None,
        "created": ctx_or_store_now,
        "description": description,
        "enabled_events": events or ["*"],
        "livemode": False,
        "metadata": {},
        "secret": secret,
        "status": "enabled",
        "url": url,
    }


def create(ctx: Ctx):
    ctx.allow("url", "enabled_events", "description", "metadata", "api_version", "connect")
    url = ctx.str_("url", required=True)
    ev = ctx.params.get("enabled_events") or ["*"]
    if isinstance(ev, str):
        ev = [ev]
    we = make_endpoint(ctx.now(), url, "whsec_" + secrets.token_hex(16), ev, ctx.str_("description"))
    we["metadata"] = ctx.metadata()
    ctx.store.insert(we)
    return we


def retrieve(ctx: Ctx, id):
    ctx.allow()
    we = ctx.load("webhook_endpoint", id, "webhook endpoint")
    we.pop("secret", None)
    return we


def list_(ctx: Ctx):
    ctx.allow("limit", "starting_after", "ending_before")
    items = ctx.store.all("webhook_endpoint")
    for we in items:
        we.pop("secret", None)
    return list_object(ctx, items, "/v1/webhook_endpoints")


def delete(ctx: Ctx, id):
    ctx.allow()
    ctx.load("webhook_endpoint", id, "webhook endpoint")
    ctx.store.db.execute("DELETE FROM objects WHERE id=?", (id,))
    return {"id": id, "object": "webhook_endpoint", "deleted": True}


def challenge_complete(ctx: Ctx):
    """POST /v1/3ds2/challenge_complete  intent=pi_...|seti_..., client_secret, outcome=succeeded|failed."""
    ctx.allow("intent", "outcome")
    intent_id = ctx.str_("intent", required=True)
    outcome = ctx.str_("outcome", required=True, choices=("succeeded", "failed"))
    if intent_id.startswith("seti_"):
        si = ctx.load("setup_intent", intent_id, "setup_intent", "intent")
        ctx.check_client_secret(si)
        return setup_intents.authenticate(ctx, si, outcome == "succeeded")
    pi = ctx.load("payment_intent", intent_id, "payment_intent", "intent")
    ctx.check_client_secret(pi)
    return payment_intents.authenticate(ctx, pi, outcome == "succeeded")


def register(r):
    r.add("POST", "/v1/webhook_endpoints", create)
    r.add("GET", "/v1/webhook_endpoints", list_)
    r.add("GET", "/v1/webhook_endpoints/{id}", retrieve)
    r.add("DELETE", "/v1/webhook_endpoints/{id}", delete)
    r.add("POST", "/v1/3ds2/challenge_complete", challenge_complete, publishable=True)
