"""Connect accounts (``/v1/accounts``), their external bank accounts, and the ``Stripe-Account`` header.

Accounts start un-onboarded: ``details_submitted``, ``charges_enabled`` and ``payouts_enabled`` false, requested
capabilities ``inactive`` and ``requirements.currently_due`` listing what onboarding collects.  The onboarding
page of an account link (account_links.py) or ``POST /_sandbox/accounts/{id}/onboard`` completes it.
"""
from __future__ import annotations

import hashlib

from .. import errors
from ..core import Ctx, created_filter, list_object
from ..errors import StripeAPIError
from ..store import new_id, public

TYPES = ("custom", "express", "standard")
INTERVALS = ("manual", "daily", "weekly", "monthly")
BUSINESS_TYPES = ("company", "government_entity", "individual", "non_profit")
DUE = ["business_profile.product_description", "business_profile.support_phone", "business_profile.url",
       "external_account", "tos_acceptance.date", "tos_acceptance.ip"]

# Stripe's US test bank accounts (routing 110000000) and tokens -> what a payout to them does
BANK_ACCOUNTS = {"000123456789": "succeed", "000111111116": "no_account", "000111111113": "account_closed"}
BANK_TOKENS = {"btok_us": "000123456789", "btok_us_verified": "000123456789",
               "btok_us_verified_noAccount": "000111111116", "btok_us_verified_accountClosed": "000111111113"}
ROUTING_NUMBER = "110000000"


# -- acting as a connected account --------------------------------------------------------------
def no_access(ctx: Ctx, account_id: str) -> StripeAPIError:
    key = ctx.app.secret_key
    shown = key[:8] + "*" * max(len(key) - 12, 4) + key[-4:]
    return StripeAPIError(
        403, "invalid_request_error",
        f"The provided key '{shown}' does not have access to account '{account_id}' (or that account does not "
        "exist). Application access may have been revoked.", code="account_invalid")


def acting(ctx: Ctx) -> str | None:
    """The connected account the request acts as (``Stripe-Account``), checked; None for the platform."""
    if not ctx.account:
        return None
    if ctx.store.get(ctx.account, "account") is None:
        raise no_access(ctx, ctx.account)
    return ctx.account


def owner(obj: dict) -> str | None:
    """The account an object belongs to (None: the platform)."""
    return (obj.get("_sandbox") or {}).get("account")


def emit(ctx: Ctx, account: str | None, type_: str, obj: dict, previous_attributes: dict | None = None) -> dict:
    """An event; on a connected account's behalf it carries ``account`` as Stripe's Connect events do."""
    return ctx.emit(type_, obj, previous_attributes, account=account)


# -- objects ------------------------------------------------------------------------------------------
def _requirements(due: list[str]) -> dict:
    return {"alternatives": [], "current_deadline": None, "currently_due": list(due),
            "disabled_reason": "requirements.past_due" if due else None, "errors": [],
            "eventually_due": list(due), "past_due": list(due), "pending_verification": []}


def _controller(type_: str) -> dict:
    dashboard = {"express": "express", "standard": "full", "custom": "none"}.get(type_, "none")
    return {"fees": {"payer": "account" if type_ == "standard" else "application"}, "is_controller": True,
            "losses": {"payments": "stripe" if type_ == "standard" else "application"},
            "requirement_collection": "application" if type_ == "custom" else "stripe",
            "stripe_dashboard": {"type": dashboard}, "type": "application"}


def _type_from_controller(c: dict) -> str:
    dash = (c.get("stripe_dashboard") or {}).get("type") if isinstance(c.get("stripe_dashboard"), dict) else None
    if dash == "express":
        return "express"
    if dash == "full":
        return "standard"
    if dash == "none" and c.get("requirement_collection") == "application":
        return "custom"
    return "none"


def bank_account(ctx: Ctx, account_id: str, number: str, *, currency: str = "usd", country: str = "US",
                 holder_name: str | None = None, holder_type: str | None = None,
                 routing: str = ROUTING_NUMBER) -> dict:
    if not number.isdigit() or not 4 <= len(number) <= 17:
        raise errors.invalid("You must use a test bank account number in test mode. Try 000123456789 or see "
                             "more options at https://stripe.com/docs/connect/testing#account-numbers.",
                             param="external_account[account_number]", code="account_number_invalid")
    return {
        "id": new_id("ba"),
        "object": "bank_account",
        "account": account_id,
        "account_holder_name": holder_name,
        "account_holder_type": holder_type,
        "account_type": None,
        "available_payout_methods": ["standard"],
        "bank_name": "STRIPE TEST BANK",
        "country": country,
        "currency": currency,
        "default_for_currency": True,
        "fingerprint": hashlib.sha256((ctx.app.fingerprint_salt + routing + number).encode()).hexdigest()[:16],
        "last4": number[-4:],
        "metadata": {},
        "routing_number": routing,
        "status": "new",
        "_sandbox": {"payout": BANK_ACCOUNTS.get(number, "succeed")},
    }


def _external_account_param(ctx: Ctx, acct: dict) -> dict | None:
    if "external_account" not in ctx.params:
        return None
    v = ctx.params["external_account"]
    cur = acct.get("default_currency") or "usd"
    if isinstance(v, str):
        if v not in BANK_TOKENS:
            raise errors.invalid(f"No such token: '{v}'", param="external_account", code="resource_missing")
        return bank_account(ctx, acct["id"], BANK_TOKENS[v], currency=cur, country=acct["country"])
    if not isinstance(v, dict):
        raise errors.invalid("Invalid object: external_account", param="external_account")
    if v.get("object", "bank_account") != "bank_account":
        raise errors.invalid("The sandbox supports bank_account external accounts only.",
                             param="external_account[object]")
    number = ctx.str_("account_number", src=v, required=True, label="external_account[account_number]")
    return bank_account(ctx, acct["id"], number, currency=(v.get("currency") or cur).lower(),
                        country=v.get("country") or acct["country"], holder_name=v.get("account_holder_name"),
                        holder_type=v.get("account_holder_type"),
                        routing=v.get("routing_number") or ROUTING_NUMBER)


def set_external_account(acct: dict, ba: dict) -> None:
    """The new bank account becomes the default for its currency (replacing the previous one, as an update
    with ``external_account`` does)."""
    data = [b for b in acct["external_accounts"]["data"] if b["currency"] != ba["currency"]]
    acct["external_accounts"] = {"object": "list", "data": [ba] + data, "has_more": False,
                                 "total_count": len(data) + 1,
                                 "url": f"/v1/accounts/{acct['id']}/external_accounts"}
    due = acct["requirements"]["currently_due"]
    if "external_account" in due:
        acct["requirements"] = _requirements([d for d in due if d != "external_account"])
        acct["future_requirements"] = _requirements([])
        acct["future_requirements"]["disabled_reason"] = None


def default_bank(acct: dict, currency: str) -> dict | None:
    for b in acct.get("external_accounts", {}).get("data", []):
        if b["currency"] == currency and b.get("default_for_currency"):
            return b
    return None


def _business_profile(ctx: Ctx, current: dict) -> dict:
    bp = ctx.dict_("business_profile")
    if bp is None:
        return current
    out = dict(current)
    for k in ("mcc", "name", "product_description", "support_email", "support_phone", "support_url", "url"):
        if k in bp:
            out[k] = ctx.str_(k, src=bp, label=f"business_profile[{k}]")
    return out


def _capabilities(ctx: Ctx, current: dict, onboarded: bool) -> dict:
    caps = ctx.dict_("capabilities")
    if caps is None:
        return current
    out = dict(current)
    for name, v in caps.items():
        if not isinstance(v, dict) or "requested" not in v:
            raise errors.invalid(f"Missing required param: capabilities[{name}][requested].",
                                 param=f"capabilities[{name}][requested]", code="parameter_missing")
        if ctx.bool_("requested", src=v):
            out[name] = "active" if onboarded else out.get(name, "inactive")
        else:
            out.pop(name, None)
    return out


def _payout_settings(ctx: Ctx, current: dict) -> dict:
    settings = ctx.dict_("settings")
    if not settings:
        return current
    unknown = set(settings) - {"payouts", "payments", "branding", "card_payments", "dashboard"}
    if unknown:
        k = unknown.pop()
        raise errors.invalid(f"Received unknown parameter: settings[{k}]", param=f"settings[{k}]",
                             code="parameter_unknown")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in current.items()}
    po = ctx.dict_("payouts", src=settings)
    if po:
        payouts = dict(out["payouts"])
        if "debit_negative_balances" in po:
            payouts["debit_negative_balances"] = ctx.bool_("debit_negative_balances", src=po)
        if "statement_descriptor" in po:
            payouts["statement_descriptor"] = ctx.str_("statement_descriptor", src=po)
        sch = ctx.dict_("schedule", src=po)
        if sch:
            schedule = dict(payouts["schedule"])
            if "interval" in sch:
                schedule["interval"] = ctx.str_("interval", src=sch, choices=INTERVALS,
                                                label="settings[payouts][schedule][interval]")
            if "delay_days" in sch:
                schedule["delay_days"] = 2 if sch["delay_days"] == "minimum" else ctx.int_(
                    "delay_days", src=sch, minimum=0, label="settings[payouts][schedule][delay_days]")
            for anchor in ("weekly_anchor", "monthly_anchor"):
                if anchor in sch:
                    schedule[anchor] = sch[anchor] if anchor == "weekly_anchor" else ctx.int_(
                        anchor, src=sch, label=f"settings[payouts][schedule][{anchor}]")
            payouts["schedule"] = schedule
        out["payouts"] = payouts
    for section in ("payments", "branding", "card_payments", "dashboard"):
        sub = ctx.dict_(section, src=settings)
        if sub:
            merged = dict(out.get(section) or {})
            merged.update({k: v for k, v in sub.items() if isinstance(v, str)})
            out[section] = merged
    return out


def _settings() -> dict:
    return {
        "bacs_debit_payments": {"display_name": None, "service_user_number": None},
        "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
        "card_issuing": {"tos_acceptance": {"date": None, "ip": None}},
        "card_payments": {"decline_on": {"avs_failure": False, "cvc_failure": False},
                          "statement_descriptor_prefix": None, "statement_descriptor_prefix_kana": None,
                          "statement_descriptor_prefix_kanji": None},
        "dashboard": {"display_name": None, "timezone": "Etc/UTC"},
        "invoices": {"default_account_tax_ids": None, "hosted_payment_method_save": "offer"},
        "payments": {"statement_descriptor": None, "statement_descriptor_kana": None,
                     "statement_descriptor_kanji": None, "statement_descriptor_prefix_kana": None,
                     "statement_descriptor_prefix_kanji": None},
        "payouts": {"debit_negative_balances": True, "schedule": {"delay_days": 2, "interval": "daily"},
                    "statement_descriptor": None},
        "sepa_debit_payments": {},
    }


PARAMS = ("type", "controller", "country", "email", "business_type", "business_profile", "capabilities",
          "metadata", "settings", "external_account", "default_currency", "tos_acceptance", "individual",
          "company")


# -- handlers -------------------------------------------------------------------------------------------
def create(ctx: Ctx):
    ctx.allow(*PARAMS)
    if ctx.account:
        raise errors.invalid("You cannot create connected accounts on behalf of a connected account "
                             "(Stripe-Account header).")
    type_ = ctx.str_("type", choices=TYPES)
    controller = ctx.dict_("controller")
    if type_ and controller:
        raise errors.invalid("You cannot specify both `type` and `controller`.", param="controller")
    if not type_:
        type_ = _type_from_controller(controller) if controller else "standard"
    country = (ctx.str_("country") or "US").upper()
    acct_id = "acct_" + new_id("x", 16)[2:]
    bp = _business_profile(ctx, {
        "annual_revenue": None, "estimated_worker_count": None, "mcc": None,
        "minority_owned_business_designation": None, "name": None, "product_description": None,
        "support_address": None, "support_email": None, "support_phone": None, "support_url": None, "url": None})
    caps = (_capabilities(ctx, {}, False) if ctx.has("capabilities")
            else {"card_payments": "inactive", "transfers": "inactive"})
    acct = {
        "id": acct_id,
        "object": "account",
        "business_profile": bp,
        "business_type": ctx.str_("business_type", choices=BUSINESS_TYPES),
        "capabilities": caps,
        "charges_enabled": False,
        "controller": _controller(type_),
        "country": country,
        "created": ctx.now(),
        "default_currency": (ctx.str_("default_currency") or "usd").lower(),
        "details_submitted": False,
        "email": ctx.str_("email"),
        "external_accounts": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                              "url": f"/v1/accounts/{acct_id}/external_accounts"},
        "future_requirements": _requirements([]),
        "metadata": ctx.metadata(),
        "payouts_enabled": False,
        "requirements": _requirements(DUE),
        "settings": _settings(),
        "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
        "type": type_,
    }
    acct["settings"] = _payout_settings(ctx, acct["settings"])
    ba = _external_account_param(ctx, acct)
    if ba is not None:
        set_external_account(acct, ba)
    ctx.store.insert(acct)
    return acct


def _load(ctx: Ctx, id: str) -> dict:
    acct = ctx.store.get(id, "account")
    if acct is None:
        raise no_access(ctx, id)
    return acct


def retrieve(ctx: Ctx, id):
    ctx.allow()
    return _load(ctx, id)


def retrieve_self(ctx: Ctx):
    """GET /v1/account: the account the request acts as (a connected account with Stripe-Account)."""
    ctx.allow()
    aid = acting(ctx)
    if aid is None:
        raise errors.invalid("The sandbox platform account has no Account object; pass a Stripe-Account "
                             "header to retrieve a connected account.")
    return _load(ctx, aid)


def update(ctx: Ctx, id):
    ctx.allow("email", "business_type", "business_profile", "capabilities", "metadata", "settings",
              "external_account", "default_currency", "tos_acceptance", "individual", "company")
    acct = _load(ctx, id)
    before = {k: acct[k] for k in ("business_profile", "business_type", "capabilities", "email", "metadata",
                                   "settings", "external_accounts", "requirements", "future_requirements",
                                   "default_currency")}
    if ctx.has("email"):
        acct["email"] = ctx.str_("email")
    if ctx.has("business_type"):
        acct["business_type"] = ctx.str_("business_type", choices=BUSINESS_TYPES)
    if ctx.has("default_currency"):
        acct["default_currency"] = (ctx.str_("default_currency") or acct["default_currency"]).lower()
    acct["business_profile"] = _business_profile(ctx, acct["business_profile"])
    acct["capabilities"] = _capabilities(ctx, acct["capabilities"], acct["details_submitted"])
    acct["metadata"] = ctx.metadata(acct["metadata"])
    acct["settings"] = _payout_settings(ctx, acct["settings"])
    ba = _external_account_param(ctx, acct)
    if ba is not None:
        set_external_account(acct, ba)
    ctx.store.save(acct)
    prev = {k: v for k, v in before.items() if acct[k] != v}
    if prev:
        emit(ctx, acct["id"], "account.updated", acct, public(prev))
    return acct


def list_(ctx: Ctx):
    ctx.allow("limit", "starting_after", "ending_before", "created")
    cf = created_filter(ctx)
    return list_object(ctx, ctx.store.all("account", where=cf), "/v1/accounts")


def list_external_accounts(ctx: Ctx, id):
    ctx.allow("object", "limit", "starting_after", "ending_before")
    acct = _load(ctx, id)
    return list_object(ctx, acct["external_accounts"]["data"], f"/v1/accounts/{id}/external_accounts")


# -- onboarding ------------------------------------------------------------------------------------------
def complete_onboarding(ctx: Ctx, acct: dict, form: dict | None = None) -> dict:
    """What submitting Stripe's onboarding form does: details submitted, charges and payouts enabled,
    requested capabilities active, requirements emptied; ``account.updated`` with previous_attributes."""
    form = form or {}
    keys = ("business_profile", "business_type", "capabilities", "charges_enabled", "details_submitted",
            "external_accounts", "future_requirements", "payouts_enabled", "requirements", "tos_acceptance")
    before = {k: acct[k] for k in keys}
    bp = dict(acct["business_profile"])
    bp["name"] = form.get("business_name") or bp.get("name") or "Sandbox Test Provider"
    bp["url"] = form.get("url") or bp.get("url") or "https://accessible.stripe.com"
    bp["product_description"] = (form.get("product_description") or bp.get("product_description")
                                 or "Health care services")
    bp["support_phone"] = form.get("phone") or bp.get("support_phone") or "0000000000"
    bp["mcc"] = bp.get("mcc") or "8099"
    acct["business_profile"] = bp
    acct["business_type"] = form.get("business_type") or acct.get("business_type") or "individual"
    number = form.get("account_number")
    if number or not acct["external_accounts"]["data"]:
        ba = bank_account(ctx, acct["id"], number or "000123456789", currency=acct["default_currency"],
                          country=acct["country"], holder_name=form.get("account_holder_name") or
                          " ".join(x for x in (form.get("first_name"), form.get("last_name")) if x) or None,
                          holder_type="individual" if acct["business_type"] == "individual" else "company",
                          routing=form.get("routing_number") or ROUTING_NUMBER)
        set_external_account(acct, ba)
    acct["capabilities"] = {k: "active" for k in (acct["capabilities"] or {"transfers": "inactive"})}
    acct["details_submitted"] = True
    acct["charges_enabled"] = True
    acct["payouts_enabled"] = True
    acct["requirements"] = _requirements([])
    acct["future_requirements"] = _requirements([])
    acct["tos_acceptance"] = {"date": ctx.now(), "ip": form.get("ip") or "127.0.0.1",
                              "user_agent": form.get("user_agent")}
    ctx.store.save(acct)
    prev = {k: v for k, v in before.items() if acct[k] != v}
    emit(ctx, acct["id"], "account.updated", acct, public(prev))
    return acct


def admin_onboard(ctx: Ctx, data: dict, id):
    acct = _load(ctx, id)
    form = {k: str(v) for k, v in (data or {}).items() if v is not None}
    return complete_onboarding(ctx, acct, form)


def register(r):
    r.add("POST", "/v1/accounts", create)
    r.add("GET", "/v1/accounts", list_)
    r.add("GET", "/v1/account", retrieve_self)
    r.add("GET", "/v1/accounts/{id}", retrieve)
    r.add("POST", "/v1/accounts/{id}", update)
    r.add("GET", "/v1/accounts/{id}/external_accounts", list_external_accounts)
    r.admin("POST", "/accounts/{id}/onboard", admin_onboard)
