from __future__ import annotations

from .. import errors
from ..core import Ctx, created_filter, list_object
from ..store import new_id
from . import charges, disputes

REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# Stripe's refund test cards (cards.py): how a refund of a charge made with them settles, later
TIMING = {"refund_pending_then_succeeded": ("pending", "refund_settle"),
          "refund_succeeded_then_failed": ("succeeded", "refund_fail")}
FAILURE_REASON = "expired_or_canceled_card"


def _emit_updated(ctx: Ctx, re: dict, prev: dict) -> None:
    """A refund's change, as Stripe reports it: charge.refund.updated, then refund.updated."""
    ctx.emit("charge.refund.updated", re, prev)
    ctx.emit("refund.updated", re, prev)


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
    # Connect: reverse_transfer / refund_application_fee apply to destination charges and application fees only;
    # with separate charges and transfers the platform reverses its transfers itself.
    if ctx.bool_("reverse_transfer") and not ch.get("transfer_data"):
        raise errors.invalid("reverse_transfer can only be used with destination charges (charges with "
                             "transfer_data[destination]); this charge has no transfer to reverse.",
                             param="reverse_transfer")
    if ctx.bool_("refund_application_fee") and not (ch.get("application_fee_amount") or ch.get("application_fee")):
        raise errors.invalid("refund_application_fee can only be used with charges that have an application fee; "
                             "this charge has none.", param="refund_application_fee")
    disputes.check_refundable(ctx, ch)
    remaining = ch["amount_captured"] - charges.refunded_amount(ctx, ch)
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
    timing = TIMING.get(charges.behaviour_of_charge(ctx, ch).name)
    if timing:
        re["status"] = timing[0]
        ctx.store.db.execute("INSERT INTO timers(obj_id, kind, due) VALUES(?,?,?)", (re["id"], timing[1], ctx.later()))
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


def cancel(ctx: Ctx, id):
    ctx.allow()
    re = ctx.load("refund", id, "refund")
    if re["status"] != "requires_action":
        raise errors.invalid(f"You cannot cancel this refund because it has a status of {re['status']}. Only "
                             "refunds with a status of requires_action can be canceled.")   # card refunds never do
    ch = ctx.load("charge", re["charge"], "charge")
    prev = {"status": re["status"]}
    re["status"] = "canceled"
    re["failure_reason"] = "merchant_request"
    re["failure_balance_transaction"] = charges.balance_transaction(
        ctx, ch, re["amount"], type_="refund_failure", source=re["id"], sign=1)["id"]
    _give_back(ctx, ch, re["amount"])
    ctx.store.save(re)
    ctx.store.db.execute("DELETE FROM timers WHERE obj_id=?", (re["id"],))
    _emit_updated(ctx, re, prev)
    return re


def _give_back(ctx: Ctx, ch: dict, amount: int) -> None:
    """A refund that failed or was canceled no longer counts against the charge."""
    ch["amount_refunded"] = max(0, ch["amount_refunded"] - amount)
    ch["refunded"] = ch["amount_refunded"] >= ch["amount"]
    ctx.store.save(ch)


def run_timers(ctx: Ctx) -> None:
    """Refunds of Stripe's refund test cards settle later: 7726 pending -> succeeded, 5126 succeeded -> failed."""
    rows = ctx.store.db.execute(
        "SELECT rowid, obj_id, kind FROM timers WHERE kind IN ('refund_settle', 'refund_fail') AND due<=? "
        "ORDER BY due", (ctx.now(),)).fetchall()
    for rowid, obj_id, kind in rows:
        ctx.store.db.execute("DELETE FROM timers WHERE rowid=?", (rowid,))
        re = ctx.store.get(obj_id, "refund")
        if re is None:
            continue
        if kind == "refund_settle" and re["status"] == "pending":
            prev = {"status": "pending", "destination_details": {"card": dict(re["destination_details"]["card"])}}
            re["status"] = "succeeded"
            re["destination_details"]["card"]["reference"] = obj_id[-12:].upper()
            re["destination_details"]["card"]["reference_status"] = "available"
            ctx.store.save(re)
            _emit_updated(ctx, re, prev)
        elif kind == "refund_fail" and re["status"] in ("pending", "succeeded"):
            ch = ctx.store.get(re["charge"], "charge")
            if ch is None:
                continue
            prev = {"status": re["status"], "failure_reason": None, "failure_balance_transaction": None}
            re["status"] = "failed"
            re["failure_reason"] = FAILURE_REASON
            re["failure_balance_transaction"] = charges.balance_transaction(
                ctx, ch, re["amount"], type_="refund_failure", source=re["id"], sign=1,
                description=f"Refund failure for {re['id']}")["id"]
            ctx.store.save(re)
            _give_back(ctx, ch, re["amount"])
            _emit_updated(ctx, re, prev)
            ctx.emit("refund.failed", re)


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
    r.add("POST", "/v1/refunds/{id}/cancel", cancel)
    r.timer(run_timers)
