"""Disputes (chargebacks), as Stripe's test mode makes them.

4000000000000259 (``pm_card_createDispute``): the charge succeeds and, shortly after (``ctx.later()``), a
``fraudulent`` dispute opens for the full amount: ``needs_response``, the amount plus the dispute fee withdrawn
from the balance, ``charge.disputed`` true.  Evidence with ``uncategorized_text`` ``winning_evidence`` /
``losing_evidence`` (submitted) makes the dispute ``won`` / ``lost`` later; closing it accepts it as lost; a
dispute nobody answers by ``evidence_details.due_by`` is lost.
"""
from __future__ import annotations

import copy

from .. import errors
from ..core import Ctx, created_filter, list_object
from ..store import new_id, public
from . import charges

DISPUTE_FEE = 1500                 # cents; Stripe's US dispute fee, charged on every currency here
RESPONSE_DAYS = 9                  # evidence_details.due_by: end of the day this many days after opening
OPEN = ("warning_needs_response", "warning_under_review", "needs_response", "under_review")
RESPONDABLE = ("warning_needs_response", "needs_response")
EVIDENCE_FIELDS = (
    "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
    "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
    "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation", "duplicate_charge_explanation",
    "duplicate_charge_id", "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
    "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address", "shipping_carrier",
    "shipping_date", "shipping_documentation", "shipping_tracking_number", "uncategorized_file",
    "uncategorized_text")


# -- opening ---------------------------------------------------------------------------------------

def on_capture(ctx: Ctx, ch: dict) -> None:
    """charges.CAPTURE_HOOKS: a charge made with the dispute card gets a dispute shortly after."""
    if charges.behaviour_of_charge(ctx, ch).name == "dispute_fraudulent":
        ctx.store.db.execute("INSERT INTO timers(obj_id, kind, due) VALUES(?,?,?)",
                             (ch["id"], "dispute_open", ctx.later()))


def open_dispute(ctx: Ctx, ch: dict, reason: str = "fraudulent") -> dict | None:
    if ch.get("disputed") or not ch.get("captured") or ch.get("status") != "succeeded":
        return None
    amount = ch["amount_captured"] - charges.refunded_amount(ctx, ch)
    if amount <= 0:                # a fully refunded charge cannot be disputed
        return None
    now = ctx.now()
    due = (now // 86400 + RESPONSE_DAYS + 1) * 86400 - 1
    card = (ch.get("payment_method_details") or {}).get("card") or {}
    dp = {
        "id": new_id("du"),
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": ch["id"],
        "created": now,
        "currency": ch["currency"],
        "enhanced_eligibility_types": [],
        "evidence": {**{f: None for f in EVIDENCE_FIELDS}, "enhanced_evidence": {}},
        "evidence_details": {"due_by": due, "enhanced_eligibility": {}, "has_evidence": False, "past_due": False,
                             "submission_count": 0},
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": ch.get("payment_intent"),
        "payment_method_details": {"card": {"brand": card.get("brand", "visa"), "case_type": "chargeback",
                                            "network_reason_code": "10.4",
                                            "network": card.get("network") or card.get("brand", "visa")},
                                   "type": "card"},
        "reason": reason,
        "status": "needs_response",
    }
    txn = charges.balance_transaction(
        ctx, ch, amount, type_="adjustment", source=dp["id"], sign=-1, fee=DISPUTE_FEE, fee_description="Dispute fee",
        reporting_category="dispute", description=f"Chargeback withdrawal for {ch['id']}")
    dp["balance_transactions"].append(public(txn))
    ctx.store.insert(dp)
    ch["disputed"] = True
    ch["dispute"] = dp["id"]
    ctx.store.save(ch)
    ctx.store.db.execute("INSERT INTO timers(obj_id, kind, due) VALUES(?,?,?)", (dp["id"], "dispute_due", due + 1))
    ctx.emit("charge.dispute.created", dp)
    ctx.emit("charge.dispute.funds_withdrawn", dp)
    return dp


# -- closing ---------------------------------------------------------------------------------------

def _close(ctx: Ctx, dp: dict, status: str, prev: dict | None = None) -> dict:
    prev = dict(prev or {})
    prev.setdefault("status", dp["status"])
    dp["status"] = status
    if status == "won":
        ch = ctx.load("charge", dp["charge"], "charge")
        txn = charges.balance_transaction(
            ctx, ch, dp["amount"], type_="adjustment", source=dp["id"], sign=1, fee=0,
            reporting_category="dispute_reversal", description=f"Chargeback reversal for {ch['id']}")
        prev["balance_transactions"] = copy.deepcopy(dp["balance_transactions"])
        dp["balance_transactions"].append(public(txn))
    ctx.store.save(dp)
    ctx.store.db.execute("DELETE FROM timers WHERE obj_id=?", (dp["id"],))
    if status == "won":
        ctx.emit("charge.dispute.funds_reinstated", dp)
    ctx.emit("charge.dispute.closed", dp, prev)
    return dp


def run_timers(ctx: Ctx) -> None:
    now = ctx.now()
    rows = ctx.store.db.execute(
        "SELECT rowid, obj_id, kind FROM timers WHERE kind IN ('dispute_open', 'dispute_outcome', 'dispute_due') "
        "AND due<=? ORDER BY due", (now,)).fetchall()
    for rowid, obj_id, kind in rows:
        ctx.store.db.execute("DELETE FROM timers WHERE rowid=?", (rowid,))
        if kind == "dispute_open":
            ch = ctx.store.get(obj_id, "charge")
            if ch is not None:
                open_dispute(ctx, ch)
            continue
        dp = ctx.store.get(obj_id, "dispute")
        if dp is None or dp["status"] not in OPEN:
            continue
        if kind == "dispute_due" and dp["status"] in RESPONDABLE:
            prev = {"evidence_details": dict(dp["evidence_details"])}
            dp["evidence_details"]["past_due"] = True
            _close(ctx, dp, "lost", prev)
        elif kind == "dispute_outcome" and dp["status"] in ("under_review", "warning_under_review"):
            text = dp["evidence"].get("uncategorized_text")
            if text == "winning_evidence":
                _close(ctx, dp, "won")
            elif text == "losing_evidence":
                _close(ctx, dp, "lost")


# -- the API ---------------------------------------------------------------------------------------

def retrieve(ctx: Ctx, id):
    ctx.allow()
    return ctx.load("dispute", id, "dispute")


def list_(ctx: Ctx):
    ctx.allow("charge", "payment_intent", "limit", "starting_after", "ending_before", "created")
    ch = ctx.str_("charge")
    pi = ctx.str_("payment_intent")
    cf = created_filter(ctx)
    return list_object(ctx, ctx.store.all("dispute", charge=ch, payment_intent=pi, where=cf), "/v1/disputes")


def update(ctx: Ctx, id):
    ctx.allow("evidence", "metadata", "submit")
    dp = ctx.load("dispute", id, "dispute")
    evidence = ctx.dict_("evidence")
    submit = ctx.bool_("submit", default=evidence is not None)   # Stripe: submit defaults to true
    if evidence:
        for k in evidence:
            if k not in EVIDENCE_FIELDS:
                raise errors.invalid(f"Received unknown parameter: evidence[{k}]", param=f"evidence[{k}]",
                                     code="parameter_unknown")
    if (evidence or submit) and dp["status"] not in RESPONDABLE:
        raise errors.invalid(
            f"This dispute is {dp['status'].replace('_', ' ')}; its evidence can no longer be updated or "
            "submitted.", param="evidence" if evidence else "submit")
    prev: dict = {}
    if ctx.has("metadata"):
        prev["metadata"] = dict(dp.get("metadata") or {})
        dp["metadata"] = ctx.metadata(dp.get("metadata"))
    if evidence:
        prev["evidence"] = copy.deepcopy(dp["evidence"])
        prev["evidence_details"] = dict(dp["evidence_details"])
        for k, v in evidence.items():
            if not isinstance(v, str):
                raise errors.invalid(f"Invalid string: evidence[{k}]", param=f"evidence[{k}]",
                                     code="parameter_invalid_string")
            dp["evidence"][k] = v or None
        dp["evidence_details"]["has_evidence"] = any(dp["evidence"].get(f) for f in EVIDENCE_FIELDS)
    if submit:
        prev.setdefault("evidence_details", dict(dp["evidence_details"]))
        prev["status"] = dp["status"]
        dp["evidence_details"]["submission_count"] += 1
        dp["status"] = "warning_under_review" if dp["status"] == "warning_needs_response" else "under_review"
        ctx.store.db.execute("DELETE FROM timers WHERE obj_id=? AND kind='dispute_due'", (dp["id"],))
        if dp["evidence"].get("uncategorized_text") in ("winning_evidence", "losing_evidence"):
            ctx.store.db.execute("INSERT INTO timers(obj_id, kind, due) VALUES(?,?,?)",
                                 (dp["id"], "dispute_outcome", ctx.later()))
    ctx.store.save(dp)
    ctx.emit("charge.dispute.updated", dp, prev)
    return dp


def close(ctx: Ctx, id):
    ctx.allow()
    dp = ctx.load("dispute", id, "dispute")
    if dp["status"] not in RESPONDABLE:
        raise errors.invalid(f"This dispute cannot be closed because it has a status of {dp['status']}.")
    return _close(ctx, dp, "lost")


# -- used by refunds.py ----------------------------------------------------------------------------

def check_refundable(ctx: Ctx, ch: dict) -> None:
    """A charge with an open dispute (unless ``is_charge_refundable``) or one lost to a dispute cannot be
    refunded: 400 ``charge_disputed``."""
    for dp in ctx.store.all("dispute", charge=ch["id"]):
        if (dp["status"] in OPEN and not dp["is_charge_refundable"]) or dp["status"] == "lost":
            raise errors.invalid(f"Charge {ch['id']} has been charged back; cannot issue a refund.",
                                 code="charge_disputed")


def register(r):
    if on_capture not in charges.CAPTURE_HOOKS:
        charges.CAPTURE_HOOKS.append(on_capture)
    r.add("GET", "/v1/disputes", list_)
    r.add("GET", "/v1/disputes/{id}", retrieve)
    r.add("POST", "/v1/disputes/{id}", update)
    r.add("POST", "/v1/disputes/{id}/close", close)
    r.timer(run_timers)
