"""Payouts from an account's available balance to its bank account.

``POST /v1/payouts`` (with ``Stripe-Account`` for a connected account) starts ``pending`` and later (``ctx.later()``:
a few seconds, or at once when the sandbox clock passes it) becomes ``paid``, or ``failed`` for Stripe's test bank
accounts 000111111116 (``no_account``) and 000111111113 (``account_closed``), the money returned to the balance.
"""
from __future__ import annotations

from .. import errors
from ..core import Ctx, created_filter, list_object
from ..store import new_id
from . import balance
from .accounts import acting, default_bank, emit, owner

INSUFFICIENT = ("You have insufficient funds in your Stripe account for this transfer. Your card balance is too "
                "low.  You can use the /v1/balance endpoint to view your Stripe balance (for more details, see "
                "stripe.com/docs/api#balance).")
FAILURES = {
    "no_account": "The bank account details on file are probably incorrect. No bank account could be located "
                  "with those details.",
    "account_closed": "The bank account has been closed.",
}
STATUSES = ("pending", "paid", "failed", "canceled", "in_transit")
PLATFORM_BANK = "ba_sandboxplatform000000000"


def _load(ctx: Ctx, id: str, account: str | None) -> dict:
    po = ctx.store.get(id, "payout")
    if po is None or owner(po) != account:
        raise errors.missing("payout", id)
    return po


def create(ctx: Ctx):
    ctx.allow("amount", "currency", "description", "destination", "metadata", "method", "source_type",
              "statement_descriptor")
    account = acting(ctx)
    amount = ctx.int_("amount", required=True, minimum=1)
    currency = ctx.str_("currency", required=True).lower()
    method = ctx.str_("method", choices=("standard", "instant")) or "standard"
    if method == "instant":
        raise errors.invalid("Instant payouts are not supported by the sandbox.", param="method",
                             code="instant_payouts_unsupported")
    outcome = "succeed"
    if account:
        acct = ctx.store.get(account, "account")
        dest_id = ctx.str_("destination")
        if dest_id:
            bank = next((b for b in acct["external_accounts"]["data"] if b["id"] == dest_id), None)
            if bank is None:
                raise errors.invalid(f"No such external account: '{dest_id}'", param="destination",
                                     code="resource_missing")
        else:
            bank = default_bank(acct, currency)
        if bank is None:
            raise errors.invalid(f"Sorry, you don't have any external accounts in that currency ({currency}).",
                                 param="currency")
        dest_id = bank["id"]
        outcome = (bank.get("_sandbox") or {}).get("payout", "succeed")
    else:
        dest_id = ctx.str_("destination") or PLATFORM_BANK
    if balance.available(ctx, account, currency) < amount:
        raise errors.invalid(INSUFFICIENT, code="balance_insufficient")
    po_id = new_id("po")
    # the available transactions this payout sweeps (GET /v1/balance_transactions?payout=po_...)
    for t in balance.transactions(ctx, account, lambda t: t["currency"] == currency and t["status"] == "available"
                                  and not (t.get("_sandbox") or {}).get("payout")):
        t.setdefault("_sandbox", {})["payout"] = po_id
        ctx.store.save(t)
    txn = balance.make_txn(ctx, account=account, amount=-amount, currency=currency, type_="payout", source=po_id,
                           description=ctx.str_("description") or "STRIPE PAYOUT", payout=po_id)
    due = ctx.later()
    po = {
        "id": po_id,
        "object": "payout",
        "amount": amount,
        "application_fee": None,
        "application_fee_amount": None,
        "arrival_date": due,
        "automatic": False,
        "balance_transaction": txn["id"],
        "created": ctx.now(),
        "currency": currency,
        "description": ctx.str_("description") or "STRIPE PAYOUT",
        "destination": dest_id,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": ctx.metadata(),
        "method": method,
        "original_payout": None,
        "payout_method": None,
        "reconciliation_status": "not_applicable",
        "reversed_by": None,
        "source_type": ctx.str_("source_type", choices=("bank_account", "card", "fpx")) or "card",
        "statement_descriptor": ctx.str_("statement_descriptor"),
        "status": "pending",
        "trace_id": {"status": "pending", "value": None},
        "type": "bank_account",
        "_sandbox": {"account": account, "outcome": outcome},
    }
    ctx.store.insert(po)
    ctx.store.db.execute("INSERT INTO timers(obj_id, kind, due) VALUES(?,?,?)", (po_id, "payout_arrival", due))
    emit(ctx, account, "payout.created", po)
    return po


def land(ctx: Ctx) -> None:
    """Timer: due payouts are paid, or fail for the failing test bank accounts (money back to the balance)."""
    rows = ctx.store.db.execute("SELECT obj_id FROM timers WHERE kind='payout_arrival' AND due<=?",
                                (ctx.now(),)).fetchall()
    for (po_id,) in rows:
        ctx.store.db.execute("DELETE FROM timers WHERE obj_id=? AND kind='payout_arrival'", (po_id,))
        po = ctx.store.get(po_id, "payout")
        if po is None or po["status"] != "pending":
            continue
        account = owner(po)
        code = (po.get("_sandbox") or {}).get("outcome", "succeed")
        if code in FAILURES:
            back = balance.make_txn(ctx, account=account, amount=po["amount"], currency=po["currency"],
                                    type_="payout_failure", source=po_id, reporting_category="payout_reversal",
                                    description="Payout failure", payout=po_id)
            po.update(status="failed", failure_code=code, failure_message=FAILURES[code],
                      failure_balance_transaction=back["id"], reconciliation_status="completed",
                      trace_id={"status": "unsupported", "value": None})
            ctx.store.save(po)
            emit(ctx, account, "payout.failed", po)
        else:
            po.update(status="paid", reconciliation_status="completed",
                      trace_id={"status": "supported", "value": "SANDBOX" + po_id[-10:].upper()})
            ctx.store.save(po)
            emit(ctx, account, "payout.paid", po)


def retrieve(ctx: Ctx, id):
    ctx.allow()
    return _load(ctx, id, acting(ctx))


def update(ctx: Ctx, id):
    ctx.allow("metadata")
    account = acting(ctx)
    po = _load(ctx, id, account)
    prev = {"metadata": po["metadata"]}
    po["metadata"] = ctx.metadata(po["metadata"])
    ctx.store.save(po)
    if po["metadata"] != prev["metadata"]:
        emit(ctx, account, "payout.updated", po, prev)
    return po


def list_(ctx: Ctx):
    ctx.allow("status", "destination", "arrival_date", "created", "limit", "starting_after", "ending_before")
    account = acting(ctx)
    status = ctx.str_("status", choices=STATUSES)
    dest = ctx.str_("destination")
    cf = created_filter(ctx)
    items = ctx.store.all("payout", where=lambda p: owner(p) == account and (status is None or
                          p["status"] == status) and (dest is None or p["destination"] == dest) and cf(p))
    return list_object(ctx, items, "/v1/payouts")


def register(r):
    r.add("POST", "/v1/payouts", create)
    r.add("GET", "/v1/payouts", list_)
    r.add("GET", "/v1/payouts/{id}", retrieve)
    r.add("POST", "/v1/payouts/{id}", update)
    r.timer(land)
