from __future__ import annotations

import secrets

from .. import errors
from ..core import Ctx, created_filter, list_object
from ..store import new_id

ADDRESS_KEYS = ("city", "country", "line1", "line2", "postal_code", "state")


def address(ctx: Ctx, raw, label: str):
    if raw is None:
        return None
    if raw == "":
        return None
    if not isinstance(raw, dict):
        raise errors.invalid(f"Invalid object: {label}", param=label)
    for k in raw:
        if k not in ADDRESS_KEYS:
            raise errors.invalid(f"Received unknown parameter: {label}[{k}]", param=f"{label}[{k}]")
    return {k: (raw.get(k) or None) for k in ADDRESS_KEYS}


def _apply(ctx: Ctx, cus: dict) -> None:
    for f in ("email", "name", "phone", "description"):
        if ctx.has(f):
            cus[f] = ctx.str_(f)
    if ctx.has("address"):
        cus["address"] = address(ctx, ctx.params["address"], "address")
    if ctx.has("shipping"):
        sh = ctx.params["shipping"]
        if sh == "":
            cus["shipping"] = None
        elif isinstance(sh, dict):
            cus["shipping"] = {"address": address(ctx, sh.get("address", {}), "shipping[address]"),
                               "name": sh.get("name"), "phone": sh.get("phone")}
        else:
            raise errors.invalid("Invalid object: shipping", param="shipping")
    if ctx.has("preferred_locales"):
        pl = ctx.params["preferred_locales"]
        cus["preferred_locales"] = [] if pl == "" else list(pl)
    cus["metadata"] = ctx.metadata(cus.get("metadata"))
    inv = ctx.dict_("invoice_settings")
    if inv is not None:
        if "default_payment_method" in inv:
            pm_id = inv["default_payment_method"] or None
            if pm_id:
                pm = ctx.load("payment_method", pm_id, "PaymentMethod", "invoice_settings[default_payment_method]")
                if pm.get("customer") != cus["id"]:
                    raise errors.invalid(
                        f"No such PaymentMethod: '{pm_id}'; It's possible this PaymentMethod exists on one of "
                        "your connected accounts, or it is not attached to this customer.",
                        param="invoice_settings[default_payment_method]", code="resource_missing")
            cus["invoice_settings"]["default_payment_method"] = pm_id


def create(ctx: Ctx):
    ctx.allow("email", "name", "phone", "description", "metadata", "address", "shipping",
              "preferred_locales", "payment_method", "invoice_settings")
    cus = {
        "id": new_id("cus", 14),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": ctx.now(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "invoice_prefix": secrets.token_hex(4).upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                             "rendering_options": {"amount_tax_display": None, "template": None}},
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
        "customer_account": None,
    }
    pm_id = ctx.str_("payment_method")
    if pm_id:
        from .payment_methods import attach_to
        pm = ctx.load("payment_method", pm_id, "PaymentMethod", "payment_method")
        ctx.store.insert(cus)
        attach_to(ctx, pm, cus)
    _apply(ctx, cus)
    ctx.store.save(cus)
    ctx.emit("customer.created", cus)
    return cus


def retrieve(ctx: Ctx, id):
    ctx.allow()
    cus = ctx.store.get(id, "customer")
    if cus is None:
        raise errors.missing("customer", id)
    return cus


def update(ctx: Ctx, id):
    ctx.allow("email", "name", "phone", "description", "metadata", "address", "shipping",
              "preferred_locales", "invoice_settings")
    cus = retrieve_raw(ctx, id)
    before = dict(cus)
    _apply(ctx, cus)
    ctx.store.save(cus)
    prev = {k: before[k] for k in cus if before.get(k) != cus.get(k)}
    ctx.emit("customer.updated", cus, prev)
    return cus


def retrieve_raw(ctx: Ctx, id):
    cus = ctx.store.get(id, "customer")
    if cus is None or cus.get("deleted"):
        raise errors.missing("customer", id)
    return cus


def delete(ctx: Ctx, id):
    ctx.allow()
    cus = retrieve_raw(ctx, id)
    ctx.store.db.execute("DELETE FROM objects WHERE id=?", (id,))
    ctx.emit("customer.deleted", cus)
    return {"id": id, "object": "customer", "deleted": True}


def list_(ctx: Ctx):
    ctx.allow("limit", "starting_after", "ending_before", "email", "created")
    email = ctx.str_("email")
    cf = created_filter(ctx)
    items = ctx.store.all("customer", lambda o: (email is None or o.get("email") == email) and cf(o))
    return list_object(ctx, items, "/v1/customers")


def list_payment_methods(ctx: Ctx, id):
    ctx.allow("limit", "starting_after", "ending_before", "type")
    retrieve_raw(ctx, id)
    t = ctx.str_("type")
    items = ctx.store.all("payment_method", customer=id, where=lambda o: t is None or o["type"] == t)
    return list_object(ctx, items, f"/v1/customers/{id}/payment_methods")


def register(r):
    r.add("POST", "/v1/customers", create)
    r.add("GET", "/v1/customers", list_)
    r.add("GET", "/v1/customers/{id}", retrieve)
    r.add("POST", "/v1/customers/{id}", update)
    r.add("DELETE", "/v1/customers/{id}", delete)
    r.add("GET", "/v1/customers/{id}/payment_methods", list_payment_methods)
