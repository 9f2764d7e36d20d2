"""Balance (``GET /v1/balance``) and balance transactions, per account.

A balance transaction belongs to the platform, or (``_sandbox.account``) to a connected account.  It is
``pending`` until its ``available_on`` (charges: 2 days on the sandbox clock, 4000000000000077 at once), then
``available``; the balance is the sum of the ``net`` amounts by status and currency.
"""
from __future__ import annotations

import json

from .. import errors
from ..core import Ctx, created_filter, list_object
from ..store import new_id
from .accounts import acting, owner

DEFAULT_CURRENCY = "usd"
TYPES = ("adjustment", "advance", "advance_funding", "application_fee", "application_fee_refund", "charge",
         "connect_collection_transfer", "contribution", "issuing_authorization_hold", "issuing_authorization_release",
         "issuing_dispute", "issuing_transaction", "payment", "payment_failure_refund", "payment_refund",
         "payment_reversal", "payout", "payout_cancel", "payout_failure", "refund", "refund_failure",
         "reserve_transaction", "reserved_funds", "stripe_fee", "stripe_fx_fee", "tax_fee", "topup",
         "topup_reversal", "transfer", "transfer_cancel", "transfer_failure", "transfer_refund")


def settle_at_once(ctx: Ctx, ch: dict, txn: dict) -> None:
    """Called by charges.balance_transaction before a charge's transaction is stored: Stripe's
    4000000000000077 puts the funds in the available balance at once."""
    txn.setdefault("balance_type", "payments")
    if txn.get("type") != "charge" or txn.get("amount", 0) <= 0:
        return
    from .charges import behaviour_of_charge   # charges imports this module
    if behaviour_of_charge(ctx, ch).extra.get("balance") == "available":
        txn["available_on"] = ctx.now()
        txn["status"] = "available"


def make_txn(ctx: Ctx, *, account: str | None, amount: int, currency: str, type_: str, source: str | None,
             available_on: int | None = None, fee: int = 0, description: str | None = None,
             reporting_category: str | None = None, payout: str | None = None) -> dict:
    now = ctx.now()
    avail = now if available_on is None else int(available_on)
    txn = {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": amount,
        "available_on": avail,
        "balance_type": "payments",
        "created": now,
        "currency": currency,
        "description": description,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": [{"amount": fee, "application": None, "currency": currency,
                         "description": "Stripe processing fees", "type": "stripe_fee"}] if fee else [],
        "net": amount - fee,
        "reporting_category": reporting_category or type_,
        "source": source,
        "status": "available" if avail <= now else "pending",
        "type": type_,
        "_sandbox": {"account": account, "payout": payout},
    }
    ctx.store.insert(txn)
    return txn


def transactions(ctx: Ctx, account: str | None, where=None) -> list[dict]:
    """An account's balance transactions (None: the platform's), newest first."""
    rows = ctx.store.db.execute(
        "SELECT data FROM objects WHERE type='balance_transaction' AND json_extract(data, '$._sandbox.account') IS ? "
        "ORDER BY created DESC, seq DESC", (account,)).fetchall()
    out = (json.loads(r[0]) for r in rows)
    return [t for t in out if where is None or where(t)]


def totals(ctx: Ctx, account: str | None) -> dict[str, dict[str, int]]:
    """{currency: {"available": n, "pending": n}} from the account's balance transactions (net)."""
    out: dict[str, dict[str, int]] = {}
    now = ctx.now()
    for t in transactions(ctx, account):
        cur = out.setdefault(t["currency"], {"available": 0, "pending": 0})
        cur["available" if t["available_on"] <= now else "pending"] += t["net"]
    return out


def available(ctx: Ctx, account: str | None, currency: str) -> int:
    return totals(ctx, account).get(currency, {}).get("available", 0)


def settle(ctx: Ctx) -> None:
    """Timer: pending balance transactions whose available_on has come become available."""
    ctx.store.db.execute(
        "UPDATE objects SET data=json_set(data, '$.status', 'available') WHERE type='balance_transaction' "
        "AND json_extract(data, '$.status')='pending' AND json_extract(data, '$.available_on')<=?", (ctx.now(),))


# -- handlers -------------------------------------------------------------------------------------------
def retrieve_balance(ctx: Ctx):
    ctx.allow()
    account = acting(ctx)
    t = totals(ctx, account)
    if not t:
        acct = ctx.store.get(account, "account") if account else None
        t = {(acct or {}).get("default_currency") or DEFAULT_CURRENCY: {"available": 0, "pending": 0}}
    currencies = sorted(t)
    bal = {
        "object": "balance",
        "available": [{"amount": t[c]["available"], "currency": c, "source_types": {"card": t[c]["available"]}}
                      for c in currencies],
        "connect_reserved": [{"amount": 0, "currency": c} for c in currencies],
        "livemode": False,
        "pending": [{"amount": t[c]["pending"], "currency": c, "source_types": {"card": t[c]["pending"]}}
                    for c in currencies],
    }
    if account:
        bal["instant_available"] = [{"amount": 0, "currency": c, "source_types": {"card": 0}} for c in currencies]
    return bal


def retrieve_txn(ctx: Ctx, id):
    ctx.allow()
    account = acting(ctx)
    txn = ctx.store.get(id, "balance_transaction")
    if txn is None or owner(txn) != account:
        raise errors.missing("balance transaction", id)
    return txn


def list_txns(ctx: Ctx):
    ctx.allow("payout", "source", "type", "currency", "created", "limit", "starting_after", "ending_before")
    account = acting(ctx)
    payout = ctx.str_("payout")
    source = ctx.str_("source")
    type_ = ctx.str_("type", choices=TYPES)
    currency = (ctx.str_("currency") or "").lower() or None
    if payout and ctx.store.get(payout, "payout") is None:
        raise errors.missing("payout", payout, param="payout")
    cf = created_filter(ctx)

    def ok(t):
        return ((payout is None or (t.get("_sandbox") or {}).get("payout") == payout)
                and (source is None or t.get("source") == source)
                and (type_ is None or t["type"] == type_)
                and (currency is None or t["currency"] == currency) and cf(t))
    return list_object(ctx, transactions(ctx, account, ok), "/v1/balance_transactions")


def register(r):
    r.add("GET", "/v1/balance", retrieve_balance)
    r.add("GET", "/v1/balance_transactions", list_txns)
    r.add("GET", "/v1/balance_transactions/{id}", retrieve_txn)
    r.timer(settle)
