from __future__ import annotations

from .. import errors
from ..core import Ctx, created_filter, list_object
from ..store import new_id
from . import charges

REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def create(ctx: Ctx):
    ctx.allow("payment_intent", "charge", "amount", "reason", "metadata", "instructions_email",
              "refund_application_fee", "reverse_transfer")
    pi_id = ctx.str_("payment_intent")
    ch_id = ctx.str_("charge")
    if not pi_id and not ch_id:
        raise errors.invalid("One of the following params should be provided for this request: payment_intent "
                             "or charge.", code="parameter_missing")
    pi = None
    if pi_id:
        pi = ctx.load("payment_intent", pi_id, "payment_intent", "payment_intent")
        if pi["status"] != "succeeded" or not pi.get("latest_charge"):
            raise errors.invalid(
                f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                param="payment_intent", code="charge_not_refundable" if pi["status"] != "succeeded" else None)
        ch = ctx.load("charge", pi["latest_charge"], "charge", "charge")
    else:
        ch = ctx.load("charge", ch_id, "charge", "charge")
        if ch.get("payment_intent"):
            pi = ctx.store.get(ch["payment_intent"], "payment_intent")
    if ch["status"] != "succeeded" or not ch["captured"]:
        raise errors.invalid(f"Charge {ch['id']} has not been captured; it cannot be refunded.",
                             param="charge", code="charge_not_refundable")
    reason = ctx.str_("reason", choices=REASONS)
    existing = ctx.store.all("refund", charge=ch["id"], where=lambda r: r["status"] in
                             ("pending", "succeeded", "requires_action"))
    refunded = sum(r["amount"] for r in existing)
    remaining = ch["amount_captured"] - refunded
    if remaining <= 0:
        raise errors.invalid(f"Charge {ch['id']} has already been refunded.", code="charge_already_refunded")
    amount = ctx.int_("amount")
    if amount is None:
        amount = remaining
    if amount <= 0:
        raise errors.invalid("Invalid positive integer", param="amount", code="parameter_invalid_integer")
    if amount > remaining:
        raise errors.invalid(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
            param="amount", code="amount_too_large")
    re = {
        "id": new_id("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": None,
        "charge": ch["id"],
        "created": ctx.now(),
        "currency": ch["currency"],
        "customer": ch.get("customer"),
        "customer_account": None,
        "destination_details": {"card": {"reference": None, "reference_status": "pending",
                                         "reference_type": "acquirer_reference_number", "type": "refund"},
                                "type": "card"},
        "metadata": ctx.metadata(),
        "payment_intent": ch.get("payment_intent"),
        "payment_method": ch.get("payment_method"),
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    re["balance_transaction"] = charges.balance_transaction(ctx, ch, amount, type_="refund", source=re["id"],
                                                            sign=-1)["id"]
    ctx.store.insert(re)
    prev = {"amount_refunded": ch["amount_refunded"], "refunded": ch["refunded"]}
    ch["amount_refunded"] += amount
    ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
    ctx.store.save(ch)
    ctx.emit("refund.created", re)
    ctx.emit("charge.refunded", charges.with_refunds(ctx, ch), prev)
    return re


def retrieve(ctx: Ctx, id):
    ctx.allow()
    return ctx.load("refund", id, "refund")


def update(ctx: Ctx, id):
    ctx.allow("metadata")
    re = ctx.load("refund", id, "refund")
    prev = {"metadata": re.get("metadata")}
    re["metadata"] = ctx.metadata(re.get("metadata"))
    ctx.store.save(re)
    ctx.emit("refund.updated", re, prev)
    return re


def list_(ctx: Ctx):
    ctx.allow("payment_intent", "charge", "limit", "starting_after", "ending_before", "created")
    pi = ctx.str_("payment_intent")
    ch = ctx.str_("charge")
    cf = created_filter(ctx)
    items = ctx.store.all("refund", payment_intent=pi, charge=ch, where=cf)
    return list_object(ctx, items, "/v1/refunds")


def register(r):
    r.add("POST", "/v1/refunds", create)
    r.add("GET", "/v1/refunds", list_)
    r.add("GET", "/v1/refunds/{id}", retrieve)
    r.add("POST", "/v1/refunds/{id}", update)
