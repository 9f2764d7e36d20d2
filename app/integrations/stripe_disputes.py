"""The Stripe gateway's part for issue 16: disputes: retrieve, list recent, stage or submit evidence.

Mixed into ``StripeGateway`` (stripe_gateway.py): ``self.client`` is the SDK's StripeClient and
``self._post(call, key, reconcile=...)`` the retry discipline (idempotency key, reconcile after a
transient failure, then the next key). Answers come back as small plain objects, never SDK types.

Stripe's dispute carries its balance transactions whole (``balance_transactions``): the withdrawal
(reporting category ``dispute``: ``-amount``, the dispute fee, net ``-(amount + fee)``) when it
opens, and the reinstatement (``dispute_reversal``: ``+amount``) when it is won. Evidence is a set
of text fields Stripe names (``EVIDENCE_FIELDS``); ``submit=false`` stages it, ``submit=true`` sends
it to the bank, after which it can no longer change.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import stripe  # noqa: F401

from app.integrations.stripe_common import (BalanceTxn, GatewayError, GatewayUnavailable, _code,  # noqa: F401
                                            _data, _describe, _id_of, _transient)

# The text evidence fields Stripe accepts (files are not sent by the clinic).
EVIDENCE_FIELDS = (
    "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
    "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
    "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation", "duplicate_charge_explanation",
    "duplicate_charge_id", "product_description", "receipt", "refund_policy", "refund_policy_disclosure",
    "refund_refusal_explanation", "service_date", "service_documentation", "shipping_address", "shipping_carrier",
    "shipping_date", "shipping_documentation", "shipping_tracking_number", "uncategorized_file",
    "uncategorized_text")


@dataclass(frozen=True)
class StripeDispute:
    """A dispute as services see it. ``evidence``: the text fields Stripe holds (None left out)."""
    id: str
    charge: str | None
    payment_intent: str | None
    amount: int
    currency: str
    reason: str
    status: str
    is_charge_refundable: bool
    due_by: int | None
    balance_transactions: tuple[BalanceTxn, ...]
    created: int
    evidence: dict = field(default_factory=dict)
    submission_count: int = 0
    metadata: dict = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Any) -> "StripeDispute":
        data = _data(obj)
        details = data.get("evidence_details") or {}
        evidence = {k: v for k, v in (data.get("evidence") or {}).items()
                    if k in EVIDENCE_FIELDS and isinstance(v, str) and v}
        # expanded whole (an id alone carries nothing to post from)
        bts = tuple(BalanceTxn.of(b) for b in data.get("balance_transactions") or [] if isinstance(b, dict))
        return cls(id=data["id"], charge=_id_of(data.get("charge")), payment_intent=_id_of(data.get("payment_intent")),
                   amount=int(data.get("amount") or 0), currency=data.get("currency") or "usd",
                   reason=data.get("reason") or "general", status=data["status"],
                   is_charge_refundable=bool(data.get("is_charge_refundable")), due_by=details.get("due_by"),
                   balance_transactions=bts, created=int(data.get("created") or 0), evidence=evidence,
                   submission_count=int(details.get("submission_count") or 0),
                   metadata=dict(data.get("metadata") or {}))

    def balance_transaction(self, reporting_category: str) -> BalanceTxn | None:
        """The first balance transaction of the category: ``dispute`` (the withdrawal) or
        ``dispute_reversal`` (the reinstatement of a won dispute)."""
        return next((bt for bt in self.balance_transactions if bt.reporting_category == reporting_category), None)

    @property
    def withdrawal(self) -> BalanceTxn | None:
        return self.balance_transaction("dispute")

    @property
    def reinstatement(self) -> BalanceTxn | None:
        return self.balance_transaction("dispute_reversal")


class DisputesMixin:
    def retrieve_dispute(self, dispute_id: str) -> StripeDispute:
        try:
            return StripeDispute.of(self.client.v1.disputes.retrieve(dispute_id))
        except stripe.StripeError as error:
            if _transient(error):
                raise GatewayUnavailable(f"retrieve {dispute_id}: {error.__class__.__name__}") from error
            raise GatewayError(_describe(error)) from error

    def list_disputes(self, *, created_gte: int | None = None, charge: str | None = None,
                      payment_intent: str | None = None, limit: int = 1000) -> list[StripeDispute]:
        """Disputes (newest first), created at or after ``created_gte`` and/or of one charge or
        PaymentIntent; every page is read (``starting_after``), up to ``limit`` disputes."""
        params: dict[str, Any] = {"limit": 100}
        if created_gte is not None:
            params["created"] = {"gte": int(created_gte)}
        if charge:
            params["charge"] = charge
        if payment_intent:
            params["payment_intent"] = payment_intent
        found: list[StripeDispute] = []
        try:
            for obj in self.client.v1.disputes.list(params=params).auto_paging_iter():
                found.append(StripeDispute.of(obj))
                if len(found) >= limit:
                    break
        except stripe.StripeError as error:
            if _transient(error):
                raise GatewayUnavailable(f"list disputes: {error.__class__.__name__}") from error
            raise GatewayError(_describe(error)) from error
        return found

    def update_dispute_evidence(self, dispute_id: str, *, evidence: dict[str, str], submit: bool,
                                key: str) -> StripeDispute:
        """Stage (``submit=False``) or submit the evidence. Only Stripe's text fields are sent. After a
        transient failure the dispute is re-read: a submission Stripe recorded (the dispute no longer
        needs a response, its submission count grew, our metadata key is on it) is not sent again.
        A refusal (the dispute is closed, a field unknown) raises GatewayError with Stripe's words."""
        unknown = set(evidence) - set(EVIDENCE_FIELDS)
        if unknown:
            raise GatewayError(f"unknown evidence field(s): {', '.join(sorted(unknown))}")
        params: dict[str, Any] = {"evidence": dict(evidence), "submit": bool(submit),
                                  "metadata": {"evidence_key": key[:500]}}

        def reconcile():
            current = self.retrieve_dispute(dispute_id)
            return current if current.metadata.get("evidence_key") == key[:500] else None

        found = self._post(lambda k: self.client.v1.disputes.update(
            dispute_id, params=params, options={"idempotency_key": k}), key, reconcile=reconcile)
        return found if isinstance(found, StripeDispute) else StripeDispute.of(found)


def refusal_message(error: GatewayError) -> str:
    """Stripe's own words for a refusal of a dispute update (never PHI: it names the dispute's state)."""
    cause = error.__cause__
    body = getattr(cause, "error", None)
    message = getattr(body, "message", None) if body else None
    return message or str(error)
