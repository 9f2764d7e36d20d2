"""The Stripe gateway's part for issue 16: transfers (source_transaction, transfer_group), their reversals, connected
accounts' balances and payouts, and a charge's own figures (its balance transaction).

Mixed into ``StripeGateway`` (stripe_gateway.py): ``self.client`` is the SDK's StripeClient and
``self._post(call, key, reconcile=...)`` the retry discipline (idempotency key, reconcile after a
transient failure, then the next key). Answers come back as small plain objects, never SDK types.

Every POST here carries an idempotency key rooted in our row's UUID and metadata with opaque ids only
(our rows' ids and UUIDs); after a transient failure it reconciles by listing what Stripe holds for
that UUID (a transfer by its ``transfer_group``, a reversal among its transfer's reversals, a payout
among the connected account's payouts). Calls about a connected account pass ``stripe_account``
(the ``Stripe-Account`` header).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import stripe  # noqa: F401

from app.integrations.stripe_common import (BalanceTxn, GatewayError, GatewayUnavailable, _as, _code,  # noqa: F401
                                            _data, _describe, _id_of, _transient)


@dataclass(frozen=True)
class ChargeMoney:
    """A Stripe charge's money: what was captured and refunded, and its balance transaction (fee, net,
    when the funds are available). ``balance_transaction`` is None until the charge is captured."""
    id: str
    payment_intent: str | None
    amount: int
    amount_captured: int
    amount_refunded: int
    captured: bool
    status: str
    currency: str
    created: int | None
    disputed: bool
    balance_transaction: BalanceTxn | None

    @property
    def fee(self) -> int:
        return self.balance_transaction.fee if self.balance_transaction else 0

    @property
    def net(self) -> int:
        return self.balance_transaction.net if self.balance_transaction else 0

    @classmethod
    def of(cls, obj: Any) -> "ChargeMoney":
        d = _data(obj)
        bt = d.get("balance_transaction")
        return cls(id=d["id"], payment_intent=_id_of(d.get("payment_intent")), amount=d.get("amount") or 0,
                   amount_captured=d.get("amount_captured") or 0, amount_refunded=d.get("amount_refunded") or 0,
                   captured=bool(d.get("captured")), status=d.get("status") or "", currency=d.get("currency") or "usd",
                   created=d.get("created"), disputed=bool(d.get("disputed")),
                   balance_transaction=BalanceTxn.of(bt) if isinstance(bt, dict) else None)


@dataclass(frozen=True)
class RefundMoney:
    """A refund with its balance transaction (``-amount``) and, once it failed, the failure's (``+amount``)."""
    id: str
    status: str
    amount: int
    charge: str | None
    payment_intent: str | None
    created: int | None
    failure_reason: str | None
    balance_transaction: BalanceTxn | None
    failure_balance_transaction: BalanceTxn | None
    metadata: dict = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Any) -> "RefundMoney":
        d = _data(obj)
        bt, fbt = d.get("balance_transaction"), d.get("failure_balance_transaction")
        return cls(id=d["id"], status=d.get("status") or "pending", amount=d.get("amount") or 0,
                   charge=_id_of(d.get("charge")), payment_intent=_id_of(d.get("payment_intent")),
                   created=d.get("created"), failure_reason=d.get("failure_reason"),
                   balance_transaction=BalanceTxn.of(bt) if isinstance(bt, dict) else None,
                   failure_balance_transaction=BalanceTxn.of(fbt) if isinstance(fbt, dict) else None,
                   metadata=dict(d.get("metadata") or {}))


@dataclass(frozen=True)
class TransferResult:
    id: str
    amount: int
    amount_reversed: int
    currency: str
    destination: str | None
    destination_payment: str | None
    source_transaction: str | None
    transfer_group: str | None
    balance_transaction: str | None      # the platform's ``transfer`` balance transaction
    created: int | None
    metadata: dict = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Any) -> "TransferResult":
        d = _data(obj)
        return cls(id=d["id"], amount=d.get("amount") or 0, amount_reversed=d.get("amount_reversed") or 0,
                   currency=d.get("currency") or "usd", destination=_id_of(d.get("destination")),
                   destination_payment=_id_of(d.get("destination_payment")),
                   source_transaction=_id_of(d.get("source_transaction")), transfer_group=d.get("transfer_group"),
                   balance_transaction=_id_of(d.get("balance_transaction")), created=d.get("created"),
                   metadata=dict(d.get("metadata") or {}))


@dataclass(frozen=True)
class ReversalResult:
    id: str
    amount: int
    transfer: str | None
    balance_transaction: str | None          # the platform's ``transfer_refund`` balance transaction
    destination_payment_refund: str | None   # its ``payment_refund`` on the connected account is this source
    created: int | None
    metadata: dict = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Any) -> "ReversalResult":
        d = _data(obj)
        return cls(id=d["id"], amount=d.get("amount") or 0, transfer=_id_of(d.get("transfer")),
                   balance_transaction=_id_of(d.get("balance_transaction")),
                   destination_payment_refund=_id_of(d.get("destination_payment_refund")),
                   created=d.get("created"), metadata=dict(d.get("metadata") or {}))


@dataclass(frozen=True)
class PayoutResult:
    """A connected account's payout (``account``: the connected account it was read as)."""
    id: str
    status: str
    amount: int
    currency: str
    arrival_date: int | None
    balance_transaction: str | None           # the connected account's ``payout`` balance transaction
    failure_balance_transaction: str | None   # its ``payout_failure`` (money back), once it failed
    failure_code: str | None
    created: int | None
    account: str | None
    metadata: dict = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Any, account: str | None = None) -> "PayoutResult":
        d = _data(obj)
        return cls(id=d["id"], status=d.get("status") or "pending", amount=d.get("amount") or 0,
                   currency=d.get("currency") or "usd", arrival_date=d.get("arrival_date"),
                   balance_transaction=_id_of(d.get("balance_transaction")),
                   failure_balance_transaction=_id_of(d.get("failure_balance_transaction")),
                   failure_code=d.get("failure_code"), created=d.get("created"), account=account,
                   metadata=dict(d.get("metadata") or {}))


@dataclass(frozen=True)
class ConnectedBalance:
    available: int
    pending: int


class MoneyMixin:
    """Transfers, reversals, connected balances and payouts; a charge's and a refund's money."""

    # -- reads ------------------------------------------------------------------------------

    def _read(self, what: str, call: Callable[[], Any]) -> Any:
        """A GET: transient failures are GatewayUnavailable, refusals (404, 403) GatewayError."""
        try:
            return call()
        except stripe.StripeError as error:
            if _transient(error):
                raise GatewayUnavailable(f"{what}: {error.__class__.__name__}") from error
            raise GatewayError(_describe(error)) from error

    def _list(self, what: str, call: Callable[[], Any]) -> list[dict]:
        def everything():
            return [obj.to_dict() for obj in call().auto_paging_iter()]
        return self._read(what, everything)

    def charge_of_intent(self, payment_intent_id: str) -> ChargeMoney | None:
        """The charge behind a PaymentIntent (its latest), with its balance transaction; None when the
        intent has no charge yet."""
        intent = _data(self._read(f"retrieve {payment_intent_id}", lambda: self.client.v1.payment_intents.retrieve(
            payment_intent_id, params={"expand": ["latest_charge.balance_transaction"]})))
        charge = intent.get("latest_charge")
        if charge is None:
            return None
        if isinstance(charge, str):
            return self.retrieve_charge_money(charge)
        return ChargeMoney.of(charge)

    def retrieve_charge_money(self, charge_id: str) -> ChargeMoney:
        return ChargeMoney.of(self._read(f"retrieve {charge_id}", lambda: self.client.v1.charges.retrieve(
            charge_id, params={"expand": ["balance_transaction"]})))

    def retrieve_refund_money(self, refund_id: str) -> RefundMoney:
        """A refund with its balance transaction and, once it failed, its failure's."""
        data = _data(self._read(f"retrieve {refund_id}", lambda: self.client.v1.refunds.retrieve(
            refund_id, params={"expand": ["balance_transaction"]})))
        failure = data.get("failure_balance_transaction")
        if isinstance(failure, str):        # expanded only when there is one (the key is absent before)
            data["failure_balance_transaction"] = _data(self._read(
                f"retrieve {failure}", lambda: self.client.v1.balance_transactions.retrieve(failure)))
        return RefundMoney.of(data)

    def retrieve_balance_transaction(self, txn_id: str, *, account: str | None = None) -> BalanceTxn:
        return BalanceTxn.of(self._read(f"retrieve {txn_id}", lambda: self.client.v1.balance_transactions.retrieve(
            txn_id, options=_as(account))), account)

    def connected_balance(self, account: str, currency: str = "usd") -> ConnectedBalance:
        """A connected account's balance in ``currency``: available and pending."""
        data = _data(self._read(f"balance of {account}", lambda: self.client.v1.balance.retrieve(
            options=_as(account))))
        available = sum(x.get("amount") or 0 for x in data.get("available") or [] if x.get("currency") == currency)
        pending = sum(x.get("amount") or 0 for x in data.get("pending") or [] if x.get("currency") == currency)
        return ConnectedBalance(available=available, pending=pending)

    # -- transfers ----------------------------------------------------------------------------

    def create_transfer(self, *, key: str, amount: int, currency: str, destination: str,
                        source_transaction: str | None, transfer_group: str, metadata: dict) -> TransferResult:
        """A transfer to a connected account (separate charges and transfers). ``metadata`` carries only
        opaque ids, among them ``transfer_uuid``: after a transient failure it is found again among the
        group's transfers."""
        params: dict[str, Any] = {"amount": amount, "currency": currency, "destination": destination,
                                  "transfer_group": transfer_group, "metadata": metadata}
        if source_transaction:
            params["source_transaction"] = source_transaction
        found = self._post(lambda k: self.client.v1.transfers.create(params=params, options={"idempotency_key": k}),
                           key, reconcile=lambda: self.find_transfer(transfer_group=transfer_group,
                                                                     metadata_key="transfer_uuid",
                                                                     metadata_value=metadata["transfer_uuid"]))
        return found if isinstance(found, TransferResult) else TransferResult.of(found)

    def transfers_in_group(self, transfer_group: str) -> list[TransferResult]:
        rows = self._list("list transfers", lambda: self.client.v1.transfers.list(
            params={"transfer_group": transfer_group, "limit": 100}))
        return [TransferResult.of(row) for row in rows]

    def find_transfer(self, *, transfer_group: str, metadata_key: str, metadata_value: str) -> TransferResult | None:
        """Our transfer among the group's, by our metadata (after a failure mid-create, or a crash)."""
        for transfer in self.transfers_in_group(transfer_group):
            if transfer.metadata.get(metadata_key) == metadata_value:
                return transfer
        return None

    def retrieve_transfer(self, transfer_id: str) -> TransferResult:
        return TransferResult.of(self._read(f"retrieve {transfer_id}",
                                            lambda: self.client.v1.transfers.retrieve(transfer_id)))

    # -- transfer reversals ---------------------------------------------------------------------

    def create_transfer_reversal(self, transfer_id: str, *, key: str, amount: int, metadata: dict) -> ReversalResult:
        """Pull ``amount`` back from a transfer (``metadata``: opaque ids, among them ``reversal_uuid``)."""
        params = {"amount": amount, "metadata": metadata}
        found = self._post(lambda k: self.client.v1.transfers.reversals.create(
            transfer_id, params=params, options={"idempotency_key": k}), key,
            reconcile=lambda: self.find_transfer_reversal(transfer_id, metadata_key="reversal_uuid",
                                                          metadata_value=metadata["reversal_uuid"]))
        return found if isinstance(found, ReversalResult) else ReversalResult.of(found)

    def find_transfer_reversal(self, transfer_id: str, *, metadata_key: str, metadata_value: str
                               ) -> ReversalResult | None:
        rows = self._list("list reversals", lambda: self.client.v1.transfers.reversals.list(
            transfer_id, params={"limit": 100}))
        for row in rows:
            if (row.get("metadata") or {}).get(metadata_key) == metadata_value:
                return ReversalResult.of(row)
        return None

    def retrieve_transfer_reversal(self, transfer_id: str, reversal_id: str) -> ReversalResult:
        return ReversalResult.of(self._read(f"retrieve {reversal_id}", lambda: self.client.v1.transfers.reversals
                                            .retrieve(transfer_id, reversal_id)))

    # -- connected accounts' payouts --------------------------------------------------------------

    def create_payout(self, account: str, *, key: str, amount: int, currency: str, metadata: dict) -> PayoutResult:
        """A payout of a connected account's available balance to its bank account (``Stripe-Account``).
        ``metadata`` carries only opaque ids, among them ``payout_uuid``."""
        params = {"amount": amount, "currency": currency, "metadata": metadata}
        found = self._post(lambda k: self.client.v1.payouts.create(
            params=params, options=_as(account, idempotency_key=k)), key,
            reconcile=lambda: self.find_payout(account, metadata_key="payout_uuid",
                                               metadata_value=metadata["payout_uuid"]))
        return found if isinstance(found, PayoutResult) else PayoutResult.of(found, account)

    def find_payout(self, account: str, *, metadata_key: str, metadata_value: str) -> PayoutResult | None:
        rows = self._list("list payouts", lambda: self.client.v1.payouts.list(
            params={"limit": 100}, options=_as(account)))
        for row in rows:
            if (row.get("metadata") or {}).get(metadata_key) == metadata_value:
                return PayoutResult.of(row, account)
        return None

    def retrieve_payout(self, account: str, payout_id: str) -> PayoutResult:
        return PayoutResult.of(self._read(f"retrieve {payout_id}", lambda: self.client.v1.payouts.retrieve(
            payout_id, options=_as(account))), account)
