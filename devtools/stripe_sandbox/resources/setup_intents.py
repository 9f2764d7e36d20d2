from __future__ import annotations

import secrets

from .. import errors
from ..core import Ctx, created_filter, list_object
from ..store import new_id, public
from .payment_intents import AUTH_FAILED_MSG, next_action
from .payment_methods import (DETACHED_ATTACH_MSG, attach_to, behaviour, card_error, card_state_decline,
                              check_not_detached, from_payment_method_data, resolve)


def _set_pm(ctx: Ctx, si: dict) -> None:
    if ctx.has("payment_method_data"):
        si["payment_method"] = from_payment_method_data(ctx, ctx.params["payment_method_data"])["id"]
    elif ctx.has("payment_method"):
        pm_id = ctx.str_("payment_method")
        if pm_id:
            pm = resolve(ctx, pm_id)
            check_not_detached(pm, DETACHED_ATTACH_MSG)
            if pm.get("customer") and pm["customer"] != si.get("customer"):
                raise errors.invalid(f"The provided PaymentMethod {pm['id']} does not belong to the Customer.",
                                     param="payment_method")
            si["payment_method"] = pm["id"]
        else:
            si["payment_method"] = None


def create(ctx: Ctx):
    ctx.allow("customer", "usage", "payment_method", "payment_method_data", "confirm", "metadata",
              "description", "payment_method_types", "return_url", "automatic_payment_methods", "on_behalf_of",
              "use_stripe_sdk", "mandate_data", "payment_method_options", "single_use")
    sid = new_id("seti")
    si = {
        "id": sid,
        "object": "setup_intent",
        "application": None,
        "automatic_payment_methods": None,
        "cancellation_reason": None,
        "client_secret": f"{sid}_secret_{secrets.token_urlsafe(24).replace('-', 'x').replace('_', 'y')}",
        "created": ctx.now(),
        "customer": None,
        "description": ctx.str_("description"),
        "excluded_payment_method_types": None,
        "flow_directions": None,
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "mandate": None,
        "metadata": ctx.metadata(),
        "next_action": None,
        "on_behalf_of": ctx.str_("on_behalf_of"),
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"mandate_options": None, "network": None,
                                            "request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "single_use_mandate": None,
        "status": "requires_payment_method",
        "usage": ctx.str_("usage", choices=("on_session", "off_session")) or "off_session",
    }
    cid = ctx.str_("customer")
    if cid:
        ctx.load("customer", cid, "customer", "customer")
        si["customer"] = cid
    if ctx.has("automatic_payment_methods"):
        apm = ctx.dict_("automatic_payment_methods") or {}
        si["automatic_payment_methods"] = {"allow_redirects": apm.get("allow_redirects", "always"),
                                           "enabled": ctx.bool_("enabled", False, src=apm)}
    _set_pm(ctx, si)
    if si["payment_method"]:
        si["status"] = "requires_confirmation"
    ctx.store.insert(si)
    ctx.emit("setup_intent.created", si)
    if ctx.bool_("confirm", False):
        return _confirm(ctx, si)
    return si


def retrieve(ctx: Ctx, id):
    ctx.allow()
    si = ctx.load("setup_intent", id, "setup_intent")
    ctx.check_client_secret(si)
    return si


def update(ctx: Ctx, id):
    ctx.allow("customer", "payment_method", "metadata", "description", "payment_method_types",
              "payment_method_data")
    si = ctx.load("setup_intent", id, "setup_intent")
    if si["status"] in ("succeeded", "canceled") and any(k not in ("metadata", "description") for k in ctx.params
                                                          if k != "expand"):
        raise errors.unexpected_state(si, "update")
    if ctx.has("customer"):
        cid = ctx.str_("customer")
        if cid:
            ctx.load("customer", cid, "customer", "customer")
        si["customer"] = cid
    if ctx.has("description"):
        si["description"] = ctx.str_("description")
    si["metadata"] = ctx.metadata(si.get("metadata"))
    _set_pm(ctx, si)
    if si["payment_method"] and si["status"] == "requires_payment_method":
        si["status"] = "requires_confirmation"
    ctx.store.save(si)
    return si


def confirm(ctx: Ctx, id):
    ctx.allow("payment_method", "payment_method_data", "return_url", "mandate_data", "use_stripe_sdk",
              "payment_method_options", "expected_payment_method_type")
    si = ctx.load("setup_intent", id, "setup_intent")
    ctx.check_client_secret(si)
    if si["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise errors.unexpected_state(si, "confirm")
    _set_pm(ctx, si)
    return _confirm(ctx, si)


def _confirm(ctx: Ctx, si: dict) -> dict:
    if not si.get("payment_method"):
        raise errors.invalid("You cannot confirm this SetupIntent because it's missing a payment method.",
                             code="setup_intent_unexpected_state", extra={"setup_intent": public(si)})
    pm = ctx.load("payment_method", si["payment_method"], "PaymentMethod", "payment_method")
    check_not_detached(pm, DETACHED_ATTACH_MSG)
    si["last_setup_error"] = None
    si["next_action"] = None
    si["latest_attempt"] = new_id("setatt")
    return attempt(ctx, si, pm, authenticated=False)


def attempt(ctx: Ctx, si: dict, pm: dict, *, authenticated: bool) -> dict:
    b = behaviour(pm)
    decline = card_state_decline(ctx, pm) or b.decline   # a saved card marked lost / expired fails too
    if decline:
        err = {"code": decline.code, "message": decline.message, "payment_method": public(pm),
               "type": "card_error",
               "doc_url": f"https://stripe.com/docs/error-codes/{decline.code.replace('_', '-')}"}
        if decline.decline_code:
            err["decline_code"] = decline.decline_code
        si["status"] = "requires_payment_method"
        si["payment_method"] = None
        si["last_setup_error"] = err
        ctx.store.save(si)
        ctx.emit("setup_intent.setup_failed", si)
        raise card_error(decline, extra={"setup_intent": public(si), "payment_method": public(pm)}, keep=True)
    set_up = bool(pm.get("_sandbox", {}).get("setup"))
    needs_auth = not authenticated and (b.auth in ("always", "on_session_only")
                                        or (b.auth == "unless_setup" and not set_up))
    if needs_auth:
        si["status"] = "requires_action"
        si["next_action"] = next_action(ctx, si)
        si["payment_method"] = pm["id"]
        ctx.store.save(si)
        ctx.emit("setup_intent.requires_action", si)
        return si
    if si.get("customer"):
        cus = ctx.store.get(si["customer"], "customer")
        if cus:
            attach_to(ctx, pm, cus)
            pm = ctx.store.get(pm["id"], "payment_method")
    pm.setdefault("_sandbox", {})["setup"] = True
    ctx.store.save(pm)
    si["status"] = "succeeded"
    si["payment_method"] = pm["id"]
    si["last_setup_error"] = None
    si["next_action"] = None
    ctx.store.save(si)
    ctx.emit("setup_intent.succeeded", si)
    return si


def authenticate(ctx: Ctx, si: dict, success: bool) -> dict:
    if si["status"] != "requires_action":
        raise errors.unexpected_state(si, "authenticate")
    pm = ctx.load("payment_method", si["payment_method"], "PaymentMethod")
    if success:
        return attempt(ctx, si, pm, authenticated=True)
    si["status"] = "requires_payment_method"
    si["next_action"] = None
    si["payment_method"] = None
    si["last_setup_error"] = {
        "code": "setup_intent_authentication_failure",
        "doc_url": "https://stripe.com/docs/error-codes/setup-intent-authentication-failure",
        "message": AUTH_FAILED_MSG.replace("PaymentIntent", "SetupIntent"), "payment_method": public(pm),
        "type": "invalid_request_error"}
    ctx.store.save(si)
    ctx.emit("setup_intent.setup_failed", si)
    return si


def cancel(ctx: Ctx, id):
    ctx.allow("cancellation_reason")
    si = ctx.load("setup_intent", id, "setup_intent")
    if si["status"] in ("succeeded", "canceled", "processing"):
        raise errors.unexpected_state(si, "cancel")
    si["cancellation_reason"] = ctx.str_("cancellation_reason",
                                         choices=("abandoned", "requested_by_customer", "duplicate"))
    si["status"] = "canceled"
    si["next_action"] = None
    ctx.store.save(si)
    ctx.emit("setup_intent.canceled", si)
    return si


def list_(ctx: Ctx):
    ctx.allow("customer", "payment_method", "limit", "starting_after", "ending_before", "created")
    cus = ctx.str_("customer")
    pm = ctx.str_("payment_method")
    cf = created_filter(ctx)
    items = ctx.store.all("setup_intent", customer=cus,
                          where=lambda o: (pm is None or o.get("payment_method") == pm) and cf(o))
    return list_object(ctx, items, "/v1/setup_intents")


def register(r):
    r.add("POST", "/v1/setup_intents", create)
    r.add("GET", "/v1/setup_intents", list_)
    r.add("GET", "/v1/setup_intents/{id}", retrieve, publishable=True)
    r.add("POST", "/v1/setup_intents/{id}", update)
    r.add("POST", "/v1/setup_intents/{id}/confirm", confirm, publishable=True)
    r.add("POST", "/v1/setup_intents/{id}/cancel", cancel)
