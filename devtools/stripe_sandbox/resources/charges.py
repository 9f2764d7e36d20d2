from __future__ import annotations

from .. import cards
from ..core import Ctx, created_filter, list_object
from ..store import new_id
from . import balance   # issue 13 Connect
from . import payment_methods


def _card_details(pm: dict, amount: int) -> dict:
    c = pm["card"]
    return {
        "amount_authorized": amount,
        "brand": c["brand"],
        "checks": dict(c["checks"]),
        "country": c["country"],
        "exp_month": c["exp_month"],
        "exp_year": c["exp_year"],
        "extended_authorization": {"status": "disabled"},
        "fingerprint": c["fingerprint"],
        "funding": c["funding"],
        "incremental_authorization": {"status": "unavailable"},
        "installments": None,
        "last4": c["last4"],
        "mandate": None,
        "multicapture": {"status": "unavailable"},
        "network": c["brand"],
        "network_token": {"used": False},
        "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
        "three_d_secure": None,
        "wallet": {**c["wallet"], c["wallet"]["type"]: {}} if c.get("wallet") else None,   # sandbox wallets
        "authorization_code": None,
        "regulated_status": "unregulated",
        "network_transaction_id": None,
        "transaction_link_id": None,
    }


def create_charge(ctx: Ctx, pi: dict, pm: dict, *, captured: bool, decline: cards.Decline | None = None,
                  authenticated: bool = False) -> dict:
    amount = pi["amount"]
    failed = decline is not None
    ch = {
        "id": new_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if (captured and not failed) else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": pi.get("application_fee_amount"),
        "balance_transaction": None,
        "billing_details": pm["billing_details"],
        "calculated_statement_descriptor": "SANDBOX",
        "captured": captured and not failed,
        "created": ctx.now(),
        "currency": pi["currency"],
        "customer": pi.get("customer"),
        "description": pi.get("description"),
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": decline.code if failed else None,
        "failure_message": decline.message if failed else None,
        "fraud_details": {},
        "livemode": False,
        "metadata": dict(pi.get("metadata") or {}),
        "on_behalf_of": pi.get("on_behalf_of"),
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "declined_by_network" if failed else "approved_by_network",
            "reason": (decline.decline_code or decline.code) if failed else None,
            "risk_level": "normal",
            "risk_score": 20,
            "seller_message": cards.seller_message(decline) if failed else "Payment complete.",
            "type": "issuer_declined" if failed else "authorized",
        },
        "paid": not failed,
        "payment_intent": pi["id"],
        "payment_method": pm["id"],
        "payment_method_details": {"card": _card_details(pm, amount), "type": "card"},
        "receipt_email": pi.get("receipt_email"),
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "refunds": {"object": "list", "data": [], "has_more": False, "url": None},
        "review": None,
        "shipping": pi.get("shipping"),
        "source": None,
        "source_transfer": None,
        "statement_descriptor": pi.get("statement_descriptor"),
        "statement_descriptor_suffix": pi.get("statement_descriptor_suffix"),
        "status": "failed" if failed else "succeeded",
        "transfer_data": pi.get("transfer_data"),
        "transfer_group": pi.get("transfer_group"),
    }
    ch["refunds"]["url"] = f"/v1/charges/{ch['id']}/refunds"
    if authenticated:
        ch["payment_method_details"]["card"]["three_d_secure"] = {
            "authentication_flow": "challenge", "electronic_commerce_indicator": "05",
            "exemption_indicator": None, "result": "authenticated", "result_reason": None,
            "transaction_id": new_id("3ds"), "version": "2.2.0"}
    if ch["captured"]:
        ch["balance_transaction"] = balance_transaction(ctx, ch, amount)["id"]
    ctx.store.insert(ch)
    return ch


def balance_transaction(ctx: Ctx, ch: dict, amount: int, *, type_: str = "charge", source: str | None = None,
                        sign: int = 1, fee: int | None = None, fee_description: str = "Stripe processing fees",
                        reporting_category: str | None = None, description: str | None = None) -> dict:
    if fee is None:
        fee = int(round(amount * 0.029)) + 30 if type_ == "charge" else 0
    txn = {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": sign * amount,
        "available_on": ctx.now() + 2 * 86400,
        "created": ctx.now(),
        "currency": ch["currency"],
        "description": description,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": [{"amount": fee, "application": None, "currency": ch["currency"],
                         "description": fee_description, "type": "stripe_fee"}] if fee else [],
        "net": sign * amount - fee,
        "reporting_category": reporting_category or type_,
        "source": source or ch["id"],
        "status": "pending",
        "type": type_,
    }
    balance.settle_at_once(ctx, ch, txn)   # issue 13 Connect: 4000000000000077 funds are available at once
    ctx.store.insert(txn)
    if type_ == "charge":
        for hook in CAPTURE_HOOKS:   # e.g. disputes.py: the dispute card opens a dispute later
            hook(ctx, ch)
    return txn


def behaviour_of_charge(ctx: Ctx, ch: dict) -> cards.Behaviour:
    """The test-card behaviour of the PaymentMethod a charge was made with ("success" without one)."""
    pm = ctx.store.get(ch.get("payment_method") or "", "payment_method")
    return payment_methods.behaviour(pm) if pm else cards.BEHAVIOURS["success"]


# refunds that count against a charge's refundable amount (failed and canceled ones do not)
REFUND_COUNTED = ("pending", "succeeded", "requires_action")


def refunded_amount(ctx: Ctx, ch: dict) -> int:
    """The amount of a charge already refunded, or being refunded."""
    return sum(r["amount"] for r in ctx.store.all("refund", charge=ch["id"])
               if r["status"] in REFUND_COUNTED)


# fn(ctx, charge) called when a charge's funds are recorded (capture); modules register themselves here
CAPTURE_HOOKS: list = []


def with_refunds(ctx: Ctx, ch: dict) -> dict:
    refunds = ctx.store.all("refund", charge=ch["id"])
    ch = dict(ch)
    ch["refunds"] = {"object": "list", "data": refunds[:10], "has_more": len(refunds) > 10,
                     "url": f"/v1/charges/{ch['id']}/refunds"}
    return ch


def retrieve(ctx: Ctx, id):
    ctx.allow()
    return with_refunds(ctx, ctx.load("charge", id, "charge"))


def list_(ctx: Ctx):
    ctx.allow("customer", "payment_intent", "limit", "starting_after", "ending_before", "created",
              "transfer_group")
    cus = ctx.str_("customer")
    pi = ctx.str_("payment_intent")
    tg = ctx.str_("transfer_group")
    cf = created_filter(ctx)
    items = ctx.store.all("charge", customer=cus, payment_intent=pi,
                          where=lambda o: (tg is None or o.get("transfer_group") == tg) and cf(o))
    return list_object(ctx, [with_refunds(ctx, c) for c in items], "/v1/charges")


def register(r):
    r.add("GET", "/v1/charges", list_)
    r.add("GET", "/v1/charges/{id}", retrieve)
    # GET /v1/balance_transactions/{id} lives in balance.py (issue 13 Connect)
