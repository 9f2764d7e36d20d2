"""Transfers to connected accounts (separate charges and transfers) and transfer reversals."""
from __future__ import annotations

from .. import errors
from ..core import Ctx, created_filter, list_object
from ..errors import StripeAPIError
from ..store import new_id
from . import balance
from .accounts import acting, owner

INSUFFICIENT = ("You have insufficient available funds in your Stripe account. Try adding funds directly to your "
                "available balance by creating Charges using the 4000000000000077 test card. See: "
                "https://stripe.com/docs/testing#available-balance")
NO_CAPABILITY = ("Your destination account needs to have at least one of the following capabilities enabled: "
                 "transfers, crypto_transfers, legacy_payments")


def with_reversals(ctx: Ctx, tr: dict) -> dict:
    revs = ctx.store.all("transfer_reversal", where=lambda r: r["transfer"] == tr["id"])
    tr = dict(tr)
    tr["reversals"] = {"object": "list", "data": revs[:10], "has_more": len(revs) > 10, "total_count": len(revs),
                       "url": f"/v1/transfers/{tr['id']}/reversals"}
    return tr


def _load(ctx: Ctx, id: str, account: str | None) -> dict:
    tr = ctx.store.get(id, "transfer")
    if tr is None or owner(tr) != account:
        raise errors.missing("transfer", id)
    return tr


def _source_remaining(ctx: Ctx, ch: dict) -> int:
    txn = ctx.store.get(ch.get("balance_transaction") or "", "balance_transaction")
    net = txn["net"] if txn else ch["amount_captured"]
    used = sum(t["amount"] - t["amount_reversed"] for t in ctx.store.all(
        "transfer", where=lambda t: t.get("source_transaction") == ch["id"]))
    return net - ch.get("amount_refunded", 0) - used


def create(ctx: Ctx):
    ctx.allow("amount", "currency", "destination", "transfer_group", "source_transaction", "description",
              "metadata", "source_type")
    if acting(ctx):
        raise errors.invalid("Transfers to connected accounts are created by the platform: send this request "
                             "without the Stripe-Account header.")
    amount = ctx.int_("amount", required=True, minimum=1)
    currency = ctx.str_("currency", required=True).lower()
    dest_id = ctx.str_("destination", required=True)
    source_type = ctx.str_("source_type", choices=("bank_account", "card", "fpx")) or "card"
    dest = ctx.store.get(dest_id, "account")
    if dest is None:
        raise errors.invalid(f"No such destination: '{dest_id}'", param="destination", code="resource_missing")
    if (dest.get("capabilities") or {}).get("transfers") != "active":
        raise StripeAPIError(400, "invalid_request_error", NO_CAPABILITY,
                             code="insufficient_capabilities_for_transfer")
    src_id = ctx.str_("source_transaction")
    available_on = None
    if src_id:
        ch = ctx.store.get(src_id, "charge")
        if ch is None:
            raise errors.invalid(f"No such charge: '{src_id}'", param="source_transaction",
                                 code="resource_missing")
        if ch["status"] != "succeeded" or not ch.get("captured"):
            raise errors.invalid(f"The source_transaction {src_id} must be a succeeded, captured charge.",
                                 param="source_transaction")
        if ch["currency"] != currency:
            raise errors.invalid(
                f"The currency of source_transaction's balance transaction ({ch['currency']}) must be the same as "
                f"the transfer currency ({currency}).", param="currency")
        remaining = _source_remaining(ctx, ch)
        if amount > remaining:
            raise errors.invalid(
                f"The transfer amount ({amount}) exceeds the remaining amount of the source transaction "
                f"{src_id} ({max(remaining, 0)}).", param="amount", code="balance_insufficient")
        txn = ctx.store.get(ch.get("balance_transaction") or "", "balance_transaction")
        available_on = txn["available_on"] if txn else None
    elif balance.available(ctx, None, currency) < amount:
        raise errors.invalid(INSUFFICIENT, code="balance_insufficient")
    tr_id = new_id("tr")
    py_id = new_id("py")
    platform_txn = balance.make_txn(ctx, account=None, amount=-amount, currency=currency, type_="transfer",
                                    source=tr_id, available_on=available_on)
    balance.make_txn(ctx, account=dest_id, amount=amount, currency=currency, type_="payment", source=py_id,
                     available_on=available_on, reporting_category="charge")
    tr = {
        "id": tr_id,
        "object": "transfer",
        "amount": amount,
        "amount_reversed": 0,
        "balance_transaction": platform_txn["id"],
        "created": ctx.now(),
        "currency": currency,
        "description": ctx.str_("description"),
        "destination": dest_id,
        "destination_payment": py_id,
        "livemode": False,
        "metadata": ctx.metadata(),
        "reversals": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                      "url": f"/v1/transfers/{tr_id}/reversals"},
        "reversed": False,
        "source_transaction": src_id,
        "source_type": source_type,
        "transfer_group": ctx.str_("transfer_group"),
        "_sandbox": {"account": None, "available_on": available_on},
    }
    ctx.store.insert(tr)
    ctx.emit("transfer.created", tr)
    return tr


def retrieve(ctx: Ctx, id):
    ctx.allow()
    return with_reversals(ctx, _load(ctx, id, acting(ctx)))


def update(ctx: Ctx, id):
    ctx.allow("description", "metadata")
    tr = _load(ctx, id, acting(ctx))
    prev = {"description": tr["description"], "metadata": tr["metadata"]}
    if ctx.has("description"):
        tr["description"] = ctx.str_("description")
    tr["metadata"] = ctx.metadata(tr["metadata"])
    ctx.store.save(tr)
    prev = {k: v for k, v in prev.items() if tr[k] != v}
    tr = with_reversals(ctx, tr)
    if prev:
        ctx.emit("transfer.updated", tr, prev)
    return tr


def list_(ctx: Ctx):
    ctx.allow("destination", "transfer_group", "created", "limit", "starting_after", "ending_before")
    account = acting(ctx)
    dest = ctx.str_("destination")
    tg = ctx.str_("transfer_group")
    cf = created_filter(ctx)
    items = ctx.store.all("transfer", where=lambda t: owner(t) == account and (dest is None or
                          t["destination"] == dest) and (tg is None or t.get("transfer_group") == tg) and cf(t))
    return list_object(ctx, [with_reversals(ctx, t) for t in items], "/v1/transfers")


# -- reversals ------------------------------------------------------------------------------------------
def create_reversal(ctx: Ctx, id):
    ctx.allow("amount", "description", "metadata", "refund_application_fee")
    tr = _load(ctx, id, acting(ctx))
    remaining = tr["amount"] - tr["amount_reversed"]
    if remaining <= 0:
        raise errors.invalid(f"Transfer {id} has already been fully reversed.", param="amount")
    amount = ctx.int_("amount", minimum=1)
    if amount is None:
        amount = remaining
    if amount > remaining:
        raise errors.invalid(
            f"You cannot reverse more than the remaining amount of the transfer: the amount ({amount}) is greater "
            f"than the unreversed amount ({remaining}).", param="amount")
    available_on = (tr.get("_sandbox") or {}).get("available_on")
    if available_on is not None and available_on <= ctx.now():
        available_on = None
    trr_id = new_id("trr")
    pyr_id = new_id("pyr")
    platform_txn = balance.make_txn(ctx, account=None, amount=amount, currency=tr["currency"],
                                    type_="transfer_refund", source=trr_id, available_on=available_on,
                                    reporting_category="transfer_reversal")
    balance.make_txn(ctx, account=tr["destination"], amount=-amount, currency=tr["currency"],
                     type_="payment_refund", source=pyr_id, available_on=available_on,
                     reporting_category="refund")
    trr = {
        "id": trr_id,
        "object": "transfer_reversal",
        "amount": amount,
        "balance_transaction": platform_txn["id"],
        "created": ctx.now(),
        "currency": tr["currency"],
        "destination_payment_refund": pyr_id,
        "metadata": ctx.metadata(),
        "source_refund": None,
        "transfer": tr["id"],
    }
    ctx.store.insert(trr)
    tr["amount_reversed"] += amount
    tr["reversed"] = tr["amount_reversed"] >= tr["amount"]
    ctx.store.save(tr)
    ctx.emit("transfer.reversed", with_reversals(ctx, tr))
    return trr


def _load_reversal(ctx: Ctx, id: str, rid: str) -> dict:
    trr = ctx.store.get(rid, "transfer_reversal")
    if trr is None or trr["transfer"] != id:
        raise errors.missing("transfer_reversal", rid)
    return trr


def retrieve_reversal(ctx: Ctx, id, rid):
    ctx.allow()
    _load(ctx, id, acting(ctx))
    return _load_reversal(ctx, id, rid)


def update_reversal(ctx: Ctx, id, rid):
    ctx.allow("metadata")
    _load(ctx, id, acting(ctx))
    trr = _load_reversal(ctx, id, rid)
    trr["metadata"] = ctx.metadata(trr["metadata"])
    ctx.store.save(trr)
    return trr


def list_reversals(ctx: Ctx, id):
    ctx.allow("limit", "starting_after", "ending_before")
    _load(ctx, id, acting(ctx))
    items = ctx.store.all("transfer_reversal", where=lambda r: r["transfer"] == id)
    return list_object(ctx, items, f"/v1/transfers/{id}/reversals")


def register(r):
    r.add("POST", "/v1/transfers", create)
    r.add("GET", "/v1/transfers", list_)
    r.add("GET", "/v1/transfers/{id}", retrieve)
    r.add("POST", "/v1/transfers/{id}", update)
    r.add("POST", "/v1/transfers/{id}/reversals", create_reversal)
    r.add("GET", "/v1/transfers/{id}/reversals", list_reversals)
    r.add("GET", "/v1/transfers/{id}/reversals/{rid}", retrieve_reversal)
    r.add("POST", "/v1/transfers/{id}/reversals/{rid}", update_reversal)
