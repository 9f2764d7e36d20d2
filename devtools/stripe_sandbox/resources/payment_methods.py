from __future__ import annotations

import datetime
import hashlib

from .. import cards, errors
from ..core import Ctx, list_object
from ..errors import StripeAPIError
from ..store import new_id
from .customers import address

BILLING_KEYS = ("address", "email", "name", "phone", "tax_id")


def card_error(decline: cards.Decline, *, param: str | None = None, extra: dict | None = None,
               keep: bool = False) -> StripeAPIError:
    return StripeAPIError(402, "card_error", decline.message, code=decline.code,
                          decline_code=decline.decline_code, param=param, extra=extra, keep=keep)


def billing_details(ctx: Ctx, raw) -> dict:
    bd = {"address": {k: None for k in ("city", "country", "line1", "line2", "postal_code", "state")},
          "email": None, "name": None, "phone": None, "tax_id": None}
    if raw in (None, ""):
        return bd
    if not isinstance(raw, dict):
        raise errors.invalid("Invalid object: billing_details", param="billing_details")
    for k, v in raw.items():
        if k not in BILLING_KEYS:
            raise errors.invalid(f"Received unknown parameter: billing_details[{k}]", param=f"billing_details[{k}]")
        if k == "address":
            bd["address"] = address(ctx, v, "billing_details[address]") or bd["address"]
        else:
            bd[k] = v or None
    return bd


# Sandbox wallets (Apple Pay / Google Pay): the sandbox's Stripe.js wallet sheet sends the chosen test card
# with the internal ``card[wallet]`` (only on POST /v1/payment_methods); it shows as ``card.wallet``.
WALLETS = ("apple_pay", "google_pay")


def _wallet(ctx: Ctx, card: dict, prefix: str) -> str | None:
    return ctx.str_("wallet", src=card, label=f"{prefix}[wallet]", choices=WALLETS) if "wallet" in card else None


def wallet_details(wallet: str | None, last4: str) -> dict | None:
    """Stripe's ``card.wallet`` hash: ``type``, ``dynamic_last4`` and a sub-hash named after the type."""
    return {"dynamic_last4": last4, "type": wallet, wallet: {}} if wallet else None


def build_card_pm(ctx: Ctx, card: dict | None, billing, metadata: dict | None = None, prefix: str = "card",
                  wallet_ok: bool = False) -> dict:
    """Validate raw card data and build a PaymentMethod.  The full number and CVC are dropped here."""
    if not isinstance(card, dict):
        raise errors.invalid(f"Missing required param: {prefix}.", param=prefix, code="parameter_missing")
    for k in card:
        if k not in ("number", "exp_month", "exp_year", "cvc", "networks") and not (k == "wallet" and wallet_ok):
            raise errors.invalid(f"Received unknown parameter: {prefix}[{k}]", param=f"{prefix}[{k}]")
    wallet = _wallet(ctx, card, prefix) if wallet_ok else None
    number = ctx.str_("number", required=True, src=card, label=f"{prefix}[number]").replace(" ", "")
    exp_month = ctx.int_("exp_month", required=True, src=card, label=f"{prefix}[exp_month]")
    exp_year = ctx.int_("exp_year", required=True, src=card, label=f"{prefix}[exp_year]")
    cvc = ctx.str_("cvc", src=card, label=f"{prefix}[cvc]")
    if not cards.luhn_ok(number):
        raise StripeAPIError(402, "card_error", "Your card number is incorrect.", code="incorrect_number",
                             param=f"{prefix}[number]")
    if not 1 <= exp_month <= 12:
        raise StripeAPIError(402, "card_error", "Your card's expiration month is invalid.",
                             code="invalid_expiry_month", param=f"{prefix}[exp_month]")
    if exp_year < 100:
        exp_year += 2000
    today = datetime.datetime.fromtimestamp(ctx.now(), datetime.timezone.utc)
    if exp_year < today.year or exp_year > today.year + 50:
        raise StripeAPIError(402, "card_error", "Your card's expiration year is invalid.",
                             code="invalid_expiry_year", param=f"{prefix}[exp_year]")
    if exp_year == today.year and exp_month < today.month:
        raise StripeAPIError(402, "card_error", "Your card's expiration date is in the past.",
                             code="invalid_expiry_month", param=f"{prefix}[exp_month]")
    if cvc is not None and not (cvc.isdigit() and 3 <= len(cvc) <= 4):
        raise StripeAPIError(402, "card_error", "Your card's security code is invalid.", code="invalid_cvc",
                             param=f"{prefix}[cvc]")
    brand = cards.brand_of(number)
    behaviour = cards.behaviour_of(number)
    fingerprint = hashlib.sha256((ctx.app.fingerprint_salt + number).encode()).hexdigest()[:16]
    last4 = number[-4:]
    del number, cvc
    return {
        "id": new_id("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": billing_details(ctx, billing),
        "card": {
            "brand": brand,
            "checks": {"address_line1_check": None, "address_postal_code_check": None,
                       "cvc_check": "pass" if card.get("cvc") else None},
            "country": "US",
            "display_brand": brand,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": fingerprint,
            "funding": "credit",
            "generated_from": None,
            "last4": last4,
            "networks": {"available": [brand], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": wallet_details(wallet, last4),
            "regulated_status": "unregulated",
        },
        "created": ctx.now(),
        "customer": None,
        "customer_account": None,
        "livemode": False,
        "metadata": metadata or {},
        "type": "card",
        "_sandbox": {"behaviour": behaviour, "setup": False},
    }


def resolve(ctx: Ctx, pm_id: str, param: str = "payment_method") -> dict:
    """A stored PaymentMethod, or a fresh one for one of Stripe's pm_card_* test ids."""
    if pm_id in cards.TEST_PAYMENT_METHODS:
        pm = build_card_pm(ctx, {"number": cards.TEST_PAYMENT_METHODS[pm_id], "exp_month": "12",
                                 "exp_year": str(datetime.datetime.fromtimestamp(ctx.now()).year + 3),
                                 "cvc": "123"}, None)
        ctx.store.insert(pm)
        return pm
    return ctx.load("payment_method", pm_id, "PaymentMethod", param)


def from_payment_method_data(ctx: Ctx, data) -> dict:
    if not isinstance(data, dict):
        raise errors.invalid("Invalid object: payment_method_data", param="payment_method_data")
    if data.get("type") != "card":
        raise errors.invalid("The sandbox only supports payment_method_data[type]=card.",
                             param="payment_method_data[type]")
    pm = build_card_pm(ctx, data.get("card"), data.get("billing_details"), prefix="payment_method_data[card]")
    ctx.store.insert(pm)
    return pm


def behaviour(pm: dict) -> cards.Behaviour:
    return cards.BEHAVIOURS[pm.get("_sandbox", {}).get("behaviour", "success")]


DETACHED_ATTACH_MSG = ("This PaymentMethod was previously used without being attached to a Customer or was detached "
                      "from a Customer, and may not be used again.")
DETACHED_USE_MSG = ("The provided PaymentMethod was previously used with a PaymentIntent without Customer attachment, "
                    "shared with a connected account without Customer attachment, or was detached from a Customer. "
                    "It may not be used again. To use a PaymentMethod multiple times, you must attach it to a "
                    "Customer first.")


def is_detached(pm: dict) -> bool:
    """Detached from a Customer: Stripe never lets it be used (attached, set up, charged) again."""
    return bool(pm.get("_sandbox", {}).get("detached"))


def check_not_detached(pm: dict, message: str = DETACHED_USE_MSG) -> None:
    if is_detached(pm):
        raise errors.invalid(message, param="payment_method")


def card_state_decline(ctx: Ctx, pm: dict) -> cards.Decline | None:
    """The decline a saved card gets from its state now: marked lost or expired (admin API), or its expiry
    month passed on the sandbox clock (a card is valid through the end of its expiry month)."""
    state = pm.get("_sandbox", {}).get("state")
    if state == "lost":
        return cards.LOST
    if state == "expired":
        return cards.EXPIRED
    c = pm.get("card") or {}
    if c.get("exp_month") and c.get("exp_year") and cards.card_expired(c["exp_month"], c["exp_year"], ctx.now()):
        return cards.EXPIRED
    return None


def attach_to(ctx: Ctx, pm: dict, cus: dict) -> dict:
    check_not_detached(pm, DETACHED_ATTACH_MSG)
    if pm.get("customer") and pm["customer"] != cus["id"]:
        raise errors.invalid("The payment method you provided has already been attached to a customer.",
                             param="payment_method", code="payment_method_unexpected_state")
    if pm.get("customer") == cus["id"]:
        return pm
    b = behaviour(pm)
    if b.decline:
        raise card_error(b.decline, extra={"payment_method": None})
    pm["customer"] = cus["id"]
    ctx.store.save(pm)
    ctx.emit("payment_method.attached", pm)
    return pm


def create(ctx: Ctx):
    ctx.allow("type", "card", "billing_details", "metadata", "allow_redisplay", "guid", "muid", "sid",
              "payment_user_agent", "time_on_page", "referrer")
    t = ctx.str_("type", required=True)
    if t != "card":
        raise errors.invalid("The sandbox only supports type=card.", param="type")
    pm = build_card_pm(ctx, ctx.params.get("card"), ctx.params.get("billing_details"),
                       metadata=ctx.metadata() if ctx.key_kind == "secret" else {}, wallet_ok=True)
    ctx.store.insert(pm)
    return pm


def retrieve(ctx: Ctx, id):
    ctx.allow()
    return resolve(ctx, id, "id") if id in cards.TEST_PAYMENT_METHODS else ctx.load(
        "payment_method", id, "PaymentMethod")


def update(ctx: Ctx, id):
    ctx.allow("metadata", "billing_details", "allow_redisplay", "card")
    pm = ctx.load("payment_method", id, "PaymentMethod")
    pm["metadata"] = ctx.metadata(pm.get("metadata"))
    if ctx.has("billing_details"):
        pm["billing_details"] = billing_details(ctx, ctx.params["billing_details"])
    card = ctx.dict_("card")
    if card:
        if "exp_month" in card:
            pm["card"]["exp_month"] = ctx.int_("exp_month", src=card, label="card[exp_month]")
        if "exp_year" in card:
            pm["card"]["exp_year"] = ctx.int_("exp_year", src=card, label="card[exp_year]")
    if ctx.has("allow_redisplay"):
        pm["allow_redisplay"] = ctx.str_("allow_redisplay", choices=("always", "limited", "unspecified"))
    ctx.store.save(pm)
    ctx.emit("payment_method.updated", pm)
    return pm


def attach(ctx: Ctx, id):
    ctx.allow("customer")
    pm = resolve(ctx, id, "id")
    cus_id = ctx.str_("customer", required=True)
    cus = ctx.load("customer", cus_id, "customer", "customer")
    return attach_to(ctx, pm, cus)


def detach(ctx: Ctx, id):
    ctx.allow()
    pm = ctx.load("payment_method", id, "PaymentMethod")
    if not pm.get("customer"):
        raise errors.invalid("The payment method you provided is not attached to a customer so detachment is "
                             "impossible.", code="payment_method_unexpected_state")
    cus = ctx.store.get(pm["customer"], "customer")
    pm["customer"] = None
    pm["_sandbox"]["setup"] = False
    pm["_sandbox"]["detached"] = True
    ctx.store.save(pm)
    if cus and cus["invoice_settings"].get("default_payment_method") == id:
        cus["invoice_settings"]["default_payment_method"] = None
        ctx.store.save(cus)
    ctx.emit("payment_method.detached", pm, {"customer": cus["id"] if cus else None})
    return pm


def list_(ctx: Ctx):
    ctx.allow("customer", "type", "limit", "starting_after", "ending_before")
    cus = ctx.str_("customer")
    t = ctx.str_("type")
    items = ctx.store.all("payment_method", customer=cus, where=lambda o: t is None or o["type"] == t)
    return list_object(ctx, items, "/v1/payment_methods")


def _mark(state: str):
    def handler(ctx: Ctx, data, pm_id):
        """Admin: mark a saved card expired / lost now; its later charges fail expired_card / lost_card."""
        pm = ctx.load("payment_method", pm_id, "PaymentMethod")
        pm.setdefault("_sandbox", {})["state"] = state
        ctx.store.save(pm)
        return pm
    return handler


def register(r):
    r.admin("POST", "/payment_methods/{pm_id}/expire", _mark("expired"))
    r.admin("POST", "/payment_methods/{pm_id}/lost", _mark("lost"))
    r.add("POST", "/v1/payment_methods", create, publishable=True)
    r.add("GET", "/v1/payment_methods", list_)
    r.add("GET", "/v1/payment_methods/{id}", retrieve)
    r.add("POST", "/v1/payment_methods/{id}", update)
    r.add("POST", "/v1/payment_methods/{id}/attach", attach)
    r.add("POST", "/v1/payment_methods/{id}/detach", detach)
