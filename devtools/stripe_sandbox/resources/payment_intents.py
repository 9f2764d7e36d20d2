from __future__ import annotations

import secrets

from .. import cards, errors
from ..core import Ctx, created_filter, list_object
from ..errors import StripeAPIError
from ..store import new_id, public
from . import charges
from .payment_methods import (attach_to, behaviour, card_error, card_state_decline, check_not_detached,
                              from_payment_method_data, resolve)

AUTH_WINDOW = 7 * 86400
CANCEL_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
AUTH_REQUIRED = cards.AUTHENTICATION_REQUIRED
AUTH_FAILED_MSG = ("The provided PaymentMethod has failed authentication. You can provide payment_method_data "
                   "or a new PaymentMethod to attempt to fulfill this PaymentIntent again.")
UPDATABLE_STATES = ("requires_payment_method", "requires_confirmation", "requires_action")
ALWAYS_UPDATABLE = ("metadata", "description", "receipt_email", "shipping")

PARAMS = ("amount", "currency", "customer", "payment_method", "capture_method", "setup_future_usage",
          "off_session", "confirm", "metadata", "description", "receipt_email", "statement_descriptor",
          "statement_descriptor_suffix", "automatic_payment_methods", "application_fee_amount",
          "transfer_data", "on_behalf_of", "transfer_group", "payment_method_types", "return_url",
          "payment_method_data", "shipping", "confirmation_method", "error_on_requires_action",
          "payment_method_options", "use_stripe_sdk", "mandate_data")


def next_action(ctx: Ctx, obj: dict) -> dict:
    return {"type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect",
                               "stripe_js": f"{ctx.api_base}/v3/authorize?intent={obj['id']}",
                               "source": new_id("src")}}


def _currency(ctx: Ctx, required: bool) -> str | None:
    cur = ctx.str_("currency", required=required)
    if cur is None:
        return None
    cur = cur.lower()
    if len(cur) != 3 or not cur.isalpha():
        raise errors.invalid(f"Invalid currency: {cur}.", param="currency")
    return cur


def _amount(ctx: Ctx, currency: str, required: bool) -> int | None:
    amount = ctx.int_("amount", required=required)
    if amount is None:
        return None
    minimum = 50 if currency in ("usd", "eur", "gbp", "cad", "aud", "chf") else 1
    if amount < minimum:
        raise errors.invalid(f"Amount must be at least {minimum} cents", param="amount", code="amount_too_small")
    if amount > 99999999:
        raise errors.invalid("Amount must be no more than $999,999.99", param="amount", code="amount_too_large")
    return amount


def _apply_common(ctx: Ctx, pi: dict) -> None:
    for f in ("description", "receipt_email", "statement_descriptor", "statement_descriptor_suffix",
              "transfer_group"):
        if ctx.has(f):
            pi[f] = ctx.str_(f)
    if pi.get("statement_descriptor_suffix") and len(pi["statement_descriptor_suffix"]) > 22:
        raise errors.invalid("statement_descriptor_suffix must be at most 22 characters",
                             param="statement_descriptor_suffix")
    if ctx.has("capture_method"):
        pi["capture_method"] = ctx.str_("capture_method", choices=("automatic", "automatic_async", "manual"))
    if ctx.has("setup_future_usage"):
        pi["setup_future_usage"] = ctx.str_("setup_future_usage", choices=("on_session", "off_session"))
    if ctx.has("application_fee_amount"):
        pi["application_fee_amount"] = ctx.int_("application_fee_amount", minimum=0)
    if ctx.has("on_behalf_of"):
        pi["on_behalf_of"] = ctx.str_("on_behalf_of")
    if ctx.has("transfer_data"):
        td = ctx.dict_("transfer_data")
        if td:
            dest = ctx.str_("destination", required=True, src=td, label="transfer_data[destination]")
            pi["transfer_data"] = {"destination": dest}
            if "amount" in td:
                pi["transfer_data"]["amount"] = ctx.int_("amount", src=td, label="transfer_data[amount]")
        else:
            pi["transfer_data"] = None
    if ctx.has("shipping"):
        sh = ctx.params["shipping"]
        pi["shipping"] = sh if isinstance(sh, dict) else None
    if ctx.has("customer"):
        cid = ctx.str_("customer")
        if cid:
            ctx.load("customer", cid, "customer", "customer")
        pi["customer"] = cid
    if ctx.has("automatic_payment_methods"):
        apm = ctx.dict_("automatic_payment_methods") or {}
        if "enabled" not in apm:   # Stripe requires it; together with payment_method_types it is refused
            raise errors.invalid("Missing required param: automatic_payment_methods[enabled].",
                                 param="automatic_payment_methods[enabled]", code="parameter_missing")
        if ctx.has("payment_method_types"):
            raise errors.invalid("You may only specify one of these parameters: automatic_payment_methods, "
                                 "payment_method_types.", param="automatic_payment_methods")
        enabled = ctx.bool_("enabled", False, src=apm)
        pi["automatic_payment_methods"] = {"allow_redirects": ctx.str_(
            "allow_redirects", src=apm, label="automatic_payment_methods[allow_redirects]",
            choices=("always", "never")) or "always", "enabled": enabled}
    if ctx.has("payment_method_types"):
        pmt = ctx.params["payment_method_types"]
        if not isinstance(pmt, list) or pmt != ["card"]:
            raise errors.invalid("The sandbox only supports payment_method_types=['card'].",
                                 param="payment_method_types")
    pi["metadata"] = ctx.metadata(pi.get("metadata"))


def _set_payment_method(ctx: Ctx, pi: dict) -> None:
    if ctx.has("payment_method_data"):
        pm = from_payment_method_data(ctx, ctx.params["payment_method_data"])
        pi["payment_method"] = pm["id"]
    elif ctx.has("payment_method"):
        pm_id = ctx.str_("payment_method")
        if pm_id:
            pm = resolve(ctx, pm_id)
            _check_pm_customer(pi, pm)
            pi["payment_method"] = pm["id"]
        else:
            pi["payment_method"] = None


def _check_pm_customer(pi: dict, pm: dict) -> None:
    check_not_detached(pm)   # a detached PaymentMethod may never be used again, customer given or not
    if pm.get("customer") and pm["customer"] != pi.get("customer"):
        if pi.get("customer"):
            raise errors.invalid(
                f"The provided PaymentMethod {pm['id']} does not belong to the Customer {pi['customer']}.",
                param="payment_method")
        raise errors.invalid(
            f"The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, "
            f"shared with a connected account without Customer attachment, or was detached from a Customer. "
            f"It may not be used again. To use a PaymentMethod multiple times, you must attach it to a Customer "
            f"first. (The PaymentMethod {pm['id']} is attached to a Customer: pass customer={pm['customer']}.)",
            param="payment_method")


def create(ctx: Ctx):
    ctx.allow(*PARAMS)
    currency = _currency(ctx, True)
    amount = _amount(ctx, currency, True)
    pid = new_id("pi")
    pi = {
        "id": pid,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{pid}_secret_{secrets.token_urlsafe(18).replace('-', 'x').replace('_', 'y')}",
        "confirmation_method": "automatic",
        "created": ctx.now(),
        "currency": currency,
        "customer": None,
        "customer_account": None,
        "description": None,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "managed_payments": {"enabled": False},
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"installments": None, "mandate_options": None, "network": None,
                                            "request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
    }
    _apply_common(ctx, pi)
    off_session = ctx.bool_("off_session", False) if ctx.params.get("off_session") not in (
        "one_off", "recurring") else True
    confirm = ctx.bool_("confirm", False)
    if off_session and not confirm:
        raise errors.invalid("You can only pass in off_session when confirm is set to true.", param="off_session")
    _set_payment_method(ctx, pi)
    if pi["payment_method"]:
        pi["status"] = "requires_confirmation"
    ctx.store.insert(pi)
    ctx.emit("payment_intent.created", pi)
    if confirm:
        return _confirm(ctx, pi, off_session)
    return pi


def retrieve(ctx: Ctx, id):
    ctx.allow()
    pi = ctx.load("payment_intent", id, "payment_intent")
    ctx.check_client_secret(pi)
    return pi


def update(ctx: Ctx, id):
    ctx.allow(*[p for p in PARAMS if p not in ("confirm", "off_session", "return_url", "confirmation_method",
                                               "error_on_requires_action", "use_stripe_sdk", "mandate_data")])
    pi = ctx.load("payment_intent", id, "payment_intent")
    if pi["status"] not in UPDATABLE_STATES:
        for k in ctx.params:
            if k not in ALWAYS_UPDATABLE and k not in ("expand",):
                raise errors.unexpected_state(pi, "update")
    before = dict(pi)
    if ctx.has("currency"):
        pi["currency"] = _currency(ctx, False) or pi["currency"]
    if ctx.has("amount"):
        pi["amount"] = _amount(ctx, pi["currency"], False) or pi["amount"]
    _apply_common(ctx, pi)
    if ctx.has("payment_method") or ctx.has("payment_method_data"):
        _set_payment_method(ctx, pi)
        if pi["payment_method"] and pi["status"] in UPDATABLE_STATES:
            pi["status"] = "requires_confirmation"
            pi["next_action"] = None
    ctx.store.save(pi)
    return pi if before == pi else pi


def confirm(ctx: Ctx, id):
    ctx.allow("payment_method", "payment_method_data", "off_session", "return_url", "setup_future_usage",
              "receipt_email", "shipping", "capture_method", "error_on_requires_action", "mandate_data",
              "payment_method_options", "payment_method_types", "use_stripe_sdk", "expected_payment_method_type")
    pi = ctx.load("payment_intent", id, "payment_intent")
    ctx.check_client_secret(pi)
    if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise errors.unexpected_state(pi, "confirm")
    if ctx.key_kind == "publishable":
        # Stripe.js may not change the amount-related settings
        for k in ("capture_method",):
            if ctx.has(k):
                raise errors.invalid(f"Received unknown parameter: {k}", param=k)
    _set_payment_method(ctx, pi)
    for f in ("receipt_email",):
        if ctx.has(f):
            pi[f] = ctx.str_(f)
    if ctx.has("setup_future_usage"):
        pi["setup_future_usage"] = ctx.str_("setup_future_usage", choices=("on_session", "off_session"))
    if ctx.has("capture_method"):
        pi["capture_method"] = ctx.str_("capture_method", choices=("automatic", "automatic_async", "manual"))
    off = ctx.params.get("off_session")
    off_session = True if off in ("one_off", "recurring") else bool(ctx.bool_("off_session", False))
    return _confirm(ctx, pi, off_session)


def _confirm(ctx: Ctx, pi: dict, off_session: bool) -> dict:
    if not pi.get("payment_method"):
        raise errors.invalid(
            "You cannot confirm this PaymentIntent because it's missing a payment method. To confirm the "
            "PaymentIntent with a new payment method, pass payment_method or payment_method_data.",
            code="payment_intent_unexpected_state", extra={"payment_intent": public(pi)})
    pm = ctx.load("payment_method", pi["payment_method"], "PaymentMethod", "payment_method")
    _check_pm_customer(pi, pm)
    pi["last_payment_error"] = None
    pi["next_action"] = None
    pi["_sandbox"] = {"off_session": off_session,
                      "error_on_requires_action": bool(ctx.bool_("error_on_requires_action", False))}
    return attempt(ctx, pi, pm, off_session=off_session, authenticated=False)


def attempt(ctx: Ctx, pi: dict, pm: dict, *, off_session: bool, authenticated: bool) -> dict:
    b = behaviour(pm)
    set_up = bool(pm.get("_sandbox", {}).get("setup"))
    state_decline = card_state_decline(ctx, pm)   # expired (clock or admin) or marked lost
    if state_decline:
        return _fail(ctx, pi, pm, state_decline, authenticated=authenticated)
    if b.decline:
        return _fail(ctx, pi, pm, b.decline)
    needs_auth = False
    if not authenticated:
        if b.auth == "always":
            needs_auth = True
        elif b.auth == "unless_setup":
            needs_auth = not set_up
        elif b.auth == "on_session_only":
            needs_auth = not off_session
    if needs_auth:
        if off_session or pi.get("_sandbox", {}).get("error_on_requires_action"):
            # the issuer soft-declines: a failed charge, the intent back in requires_payment_method
            return _fail(ctx, pi, pm, AUTH_REQUIRED)
        pi["status"] = "requires_action"
        pi["next_action"] = next_action(ctx, pi)
        pi["payment_method"] = pm["id"]
        ctx.store.save(pi)
        ctx.emit("payment_intent.requires_action", pi)
        return pi
    if b.charge_decline:
        return _fail(ctx, pi, pm, b.charge_decline, authenticated=authenticated)
    if b.decline_after_auth:
        return _fail(ctx, pi, pm, b.decline_after_auth, authenticated=authenticated)
    return _succeed(ctx, pi, pm, authenticated=authenticated)


def _fail(ctx: Ctx, pi: dict, pm: dict, decline: cards.Decline, *, charge: bool = True,
          authenticated: bool = False) -> dict:
    ch = None
    if charge:
        ch = charges.create_charge(ctx, pi, pm, captured=False, decline=decline, authenticated=authenticated)
        pi["latest_charge"] = ch["id"]
    err = {"code": decline.code, "doc_url": f"https://stripe.com/docs/error-codes/{decline.code.replace('_', '-')}",
           "message": decline.message, "payment_method": public(pm), "type": "card_error"}
    if decline.decline_code:
        err["decline_code"] = decline.decline_code
    if decline.advice_code:
        err["advice_code"] = decline.advice_code
    if ch:
        err["charge"] = ch["id"]
    pi["status"] = "requires_payment_method"
    pi["last_payment_error"] = err
    pi["next_action"] = None
    pi["payment_method"] = None
    ctx.store.save(pi)
    if ch:
        ctx.emit("charge.failed", ch)
    ctx.emit("payment_intent.payment_failed", pi)
    extra = {"payment_intent": public(pi), "payment_method": public(pm)}
    if ch:
        extra["charge"] = ch["id"]
    if decline.advice_code:
        extra["advice_code"] = decline.advice_code
    raise card_error(decline, extra=extra, keep=True)


def _succeed(ctx: Ctx, pi: dict, pm: dict, *, authenticated: bool) -> dict:
    manual = pi["capture_method"] == "manual"
    ch = charges.create_charge(ctx, pi, pm, captured=not manual, authenticated=authenticated)
    pi["latest_charge"] = ch["id"]
    pi["payment_method"] = pm["id"]
    pi["last_payment_error"] = None
    pi["next_action"] = None
    if pi.get("setup_future_usage") and pi.get("customer"):
        cus = ctx.store.get(pi["customer"], "customer")
        if cus is not None:
            attach_to(ctx, pm, cus)
        pm = ctx.store.get(pm["id"], "payment_method") or pm
        pm.setdefault("_sandbox", {})["setup"] = True
        ctx.store.save(pm)
    if manual:
        pi["status"] = "requires_capture"
        pi["amount_capturable"] = pi["amount"]
        pi.setdefault("_sandbox", {})["authorized_at"] = ctx.now()
        ctx.store.db.execute("INSERT INTO timers(obj_id, kind, due) VALUES(?,?,?)",
                             (pi["id"], "authorization_expiry", ctx.now() + AUTH_WINDOW))
    else:
        pi["status"] = "succeeded"
        pi["amount_received"] = pi["amount"]
    ctx.store.save(pi)
    ctx.emit("charge.succeeded", ch)
    if manual:
        ctx.emit("payment_intent.amount_capturable_updated", pi)
    else:
        ctx.emit("payment_intent.succeeded", pi)
    return pi


def authenticate(ctx: Ctx, pi: dict, success: bool) -> dict:
    """Outcome of the 3-D Secure challenge (Stripe.js modal or the admin route)."""
    if pi["status"] != "requires_action":
        raise errors.unexpected_state(pi, "authenticate")
    pm = ctx.load("payment_method", pi["payment_method"], "PaymentMethod")
    off_session = bool(pi.get("_sandbox", {}).get("off_session"))
    if not success:
        pi["status"] = "requires_payment_method"
        pi["next_action"] = None
        pi["payment_method"] = None
        pi["last_payment_error"] = {
            "code": "payment_intent_authentication_failure",
            "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
            "message": AUTH_FAILED_MSG, "payment_method": public(pm), "type": "invalid_request_error"}
        ctx.store.save(pi)
        ctx.emit("payment_intent.payment_failed", pi)
        return pi
    try:
        return attempt(ctx, pi, pm, off_session=off_session, authenticated=True)
    except StripeAPIError as e:
        if e.status == 402:
            return ctx.store.get(pi["id"], "payment_intent")
        raise


def capture(ctx: Ctx, id):
    ctx.allow("amount_to_capture", "metadata", "application_fee_amount", "statement_descriptor",
              "statement_descriptor_suffix", "final_capture", "transfer_data")
    pi = ctx.load("payment_intent", id, "payment_intent")
    if pi["status"] != "requires_capture":
        raise errors.unexpected_state(pi, "capture")
    amt = ctx.int_("amount_to_capture", minimum=1)
    if amt is None:
        amt = pi["amount_capturable"]
    if amt > pi["amount_capturable"]:
        raise errors.invalid(
            f"The amount to capture ({amt}) must be less than or equal to the amount capturable "
            f"({pi['amount_capturable']}).", param="amount_to_capture", code="amount_too_large",
            extra={"payment_intent": public(pi)})
    pi["metadata"] = ctx.metadata(pi.get("metadata"))
    if ctx.has("application_fee_amount"):
        pi["application_fee_amount"] = ctx.int_("application_fee_amount", minimum=0)
    ch = ctx.load("charge", pi["latest_charge"], "charge")
    ch["captured"] = True
    ch["amount_captured"] = amt
    ch["amount_refunded"] = ch["amount"] - amt
    ch["balance_transaction"] = charges.balance_transaction(ctx, ch, amt)["id"]
    ctx.store.save(ch)
    pi["status"] = "succeeded"
    pi["amount_received"] = amt
    pi["amount_capturable"] = 0
    ctx.store.save(pi)
    ctx.store.db.execute("DELETE FROM timers WHERE obj_id=?", (pi["id"],))
    ctx.emit("charge.captured", ch)
    ctx.emit("payment_intent.succeeded", pi)
    return pi


def cancel_intent(ctx: Ctx, pi: dict, reason: str | None) -> dict:
    if pi["status"] not in ("requires_payment_method", "requires_capture", "requires_confirmation",
                            "requires_action", "processing"):
        raise errors.unexpected_state(pi, "cancel")
    if pi["status"] == "requires_capture" and pi.get("latest_charge"):
        ch = ctx.store.get(pi["latest_charge"], "charge")
        if ch:
            ch["refunded"] = True
            ch["amount_refunded"] = ch["amount"]
            ctx.store.save(ch)
    pi["status"] = "canceled"
    pi["cancellation_reason"] = reason
    pi["canceled_at"] = ctx.now()
    pi["amount_capturable"] = 0
    pi["next_action"] = None
    ctx.store.save(pi)
    ctx.store.db.execute("DELETE FROM timers WHERE obj_id=?", (pi["id"],))
    ctx.emit("payment_intent.canceled", pi)
    return pi


def cancel(ctx: Ctx, id):
    ctx.allow("cancellation_reason")
    pi = ctx.load("payment_intent", id, "payment_intent")
    reason = ctx.str_("cancellation_reason", choices=CANCEL_REASONS)
    return cancel_intent(ctx, pi, reason)


def list_(ctx: Ctx):
    ctx.allow("customer", "limit", "starting_after", "ending_before", "created")
    cus = ctx.str_("customer")
    cf = created_filter(ctx)
    items = ctx.store.all("payment_intent", customer=cus, where=cf)
    return list_object(ctx, items, "/v1/payment_intents")


def expire_authorizations(ctx: Ctx) -> None:
    rows = ctx.store.db.execute("SELECT obj_id FROM timers WHERE kind='authorization_expiry' AND due<=?",
                                (ctx.now(),)).fetchall()
    for (pid,) in rows:
        pi = ctx.store.get(pid, "payment_intent")
        if pi and pi["status"] == "requires_capture":
            cancel_intent(ctx, pi, "automatic")
        ctx.store.db.execute("DELETE FROM timers WHERE obj_id=?", (pid,))


def register(r):
    r.add("POST", "/v1/payment_intents", create)
    r.add("GET", "/v1/payment_intents", list_)
    r.add("GET", "/v1/payment_intents/{id}", retrieve, publishable=True)
    r.add("POST", "/v1/payment_intents/{id}", update)
    r.add("POST", "/v1/payment_intents/{id}/confirm", confirm, publishable=True)
    r.add("POST", "/v1/payment_intents/{id}/capture", capture)
    r.add("POST", "/v1/payment_intents/{id}/cancel", cancel)
    r.timer(expire_authorizations)
