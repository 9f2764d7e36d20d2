"""The one module that imports ``stripe``.

A thin gateway over the official SDK's ``StripeClient``: the API base comes
from settings (real Stripe or our sandbox; the gateway cannot tell), every
POST carries an idempotency key derived from the payment attempt's own UUID
and the operation, and answers come back as small plain objects, so services
never see SDK types.

After a 500 or a network failure that outlasts the SDK's own retries, the
gateway reconciles before trying again: it re-reads the intent (by its stored
id, or finds it among the customer's intents by our metadata), because Stripe
replays a saved 500 for the same key. Only when the work was really not done
does it retry, with the next key of a deterministic series (``<key>#2``), so a
retry after a crash is still idempotent.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import requests
import stripe

from app.integrations.stripe_common import (GatewayError, GatewayUnavailable, _describe, _id_of,  # noqa: F401
                                            _transient)
from app.integrations.stripe_disputes import DisputesMixin
from app.integrations.stripe_ledger import LedgerMixin
from app.integrations.stripe_money import MoneyMixin

log = logging.getLogger(__name__)
RECONCILE_ROUNDS = 3


@dataclass(frozen=True)
class PaymentError:
    code: str | None
    decline_code: str | None
    message: str | None
    type: str | None
    charge: str | None
    payment_method: str | None
    # Stripe's advice on an issuer decline (try_again_later, do_not_try_again, confirm_card_data), if any.
    advice_code: str | None = None

    @classmethod
    def of(cls, data: Any) -> "PaymentError | None":
        if not data:
            return None
        get = data.get if hasattr(data, "get") else (lambda k, d=None: getattr(data, k, d))
        pm = get("payment_method")
        pm_id = pm.get("id") if hasattr(pm, "get") else pm
        return cls(get("code"), get("decline_code"), get("message"), get("type"), get("charge"), pm_id,
                   get("advice_code"))


@dataclass(frozen=True)
class Intent:
    id: str
    status: str
    amount: int
    amount_capturable: int
    amount_received: int
    currency: str
    client_secret: str | None
    customer: str | None
    payment_method: str | None
    setup_future_usage: str | None
    capture_method: str | None
    metadata: dict = field(default_factory=dict)
    last_error: PaymentError | None = None
    next_action_type: str | None = None
    card_brand: str | None = None
    card_last4: str | None = None
    card_exp_month: int | None = None
    card_exp_year: int | None = None
    # Known only when the payment method came expanded (``retrieve_intent``): the customer it is
    # attached to (None: not saved to any customer).
    payment_method_expanded: bool = False
    payment_method_customer: str | None = None

    @classmethod
    def of(cls, obj: Any) -> "Intent":
        data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        pm = data.get("payment_method")
        card = pm.get("card") if isinstance(pm, dict) else None
        next_action = data.get("next_action") or {}
        return cls(
            id=data["id"], status=data["status"], amount=data.get("amount") or 0,
            amount_capturable=data.get("amount_capturable") or 0,
            amount_received=data.get("amount_received") or 0, currency=data.get("currency") or "usd",
            client_secret=data.get("client_secret"),
            customer=data.get("customer") if isinstance(data.get("customer"), (str, type(None)))
            else data["customer"].get("id"),
            payment_method=pm.get("id") if isinstance(pm, dict) else pm,
            setup_future_usage=data.get("setup_future_usage"), capture_method=data.get("capture_method"),
            metadata=dict(data.get("metadata") or {}), last_error=PaymentError.of(data.get("last_payment_error")),
            next_action_type=next_action.get("type") if isinstance(next_action, dict) else None,
            card_brand=card.get("brand") if card else None, card_last4=card.get("last4") if card else None,
            card_exp_month=card.get("exp_month") if card else None,
            card_exp_year=card.get("exp_year") if card else None,
            payment_method_expanded=isinstance(pm, dict),
            payment_method_customer=_id_of(pm.get("customer")) if isinstance(pm, dict) else None,
        )


@dataclass(frozen=True)
class Card:
    id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None

    @classmethod
    def of(cls, obj: Any) -> "Card":
        data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        card = data.get("card") or {}
        return cls(data["id"], card.get("brand"), card.get("last4"), card.get("exp_month"), card.get("exp_year"))


@dataclass(frozen=True)
class Setup:
    """A SetupIntent as services see it (the card only when the payment method came expanded)."""
    id: str
    status: str
    client_secret: str | None
    customer: str | None
    payment_method: str | None
    usage: str | None
    metadata: dict = field(default_factory=dict)
    last_error: PaymentError | None = None
    latest_attempt: str | None = None
    next_action_type: str | None = None
    card_brand: str | None = None
    card_last4: str | None = None
    card_exp_month: int | None = None
    card_exp_year: int | None = None

    @classmethod
    def of(cls, obj: Any) -> "Setup":
        data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        pm = data.get("payment_method")
        card = (pm.get("card") or {}) if isinstance(pm, dict) else {}
        next_action = data.get("next_action") or {}
        return cls(
            id=data["id"], status=data["status"], client_secret=data.get("client_secret"),
            customer=_id_of(data.get("customer")), payment_method=_id_of(pm), usage=data.get("usage"),
            metadata=dict(data.get("metadata") or {}), last_error=PaymentError.of(data.get("last_setup_error")),
            latest_attempt=_id_of(data.get("latest_attempt")),
            next_action_type=next_action.get("type") if isinstance(next_action, dict) else None,
            card_brand=card.get("brand"), card_last4=card.get("last4"), card_exp_month=card.get("exp_month"),
            card_exp_year=card.get("exp_year"))


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str
    amount: int
    reason: str | None

    @classmethod
    def of(cls, obj: Any) -> "RefundResult":
        data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        return cls(data["id"], data.get("status") or "pending", data.get("amount") or 0, data.get("reason"))


@dataclass(frozen=True)
class ConnectedAccount:
    """A Connect account as services see it: the flags onboarding moves, and what Stripe still wants
    (the names of fields, never their values)."""
    id: str
    details_submitted: bool
    charges_enabled: bool
    payouts_enabled: bool
    transfers_active: bool
    requirements_due: tuple[str, ...]
    disabled_reason: str | None
    metadata: dict = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Any) -> "ConnectedAccount":
        data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
        requirements = data.get("requirements") or {}
        capabilities = data.get("capabilities") or {}
        due: list[str] = []
        for name in (requirements.get("past_due") or []) + (requirements.get("currently_due") or []):
            if isinstance(name, str) and name not in due:
                due.append(name)
        return cls(id=data["id"], details_submitted=bool(data.get("details_submitted")),
                   charges_enabled=bool(data.get("charges_enabled")),
                   payouts_enabled=bool(data.get("payouts_enabled")),
                   transfers_active=capabilities.get("transfers") == "active",
                   requirements_due=tuple(due[:50]), disabled_reason=requirements.get("disabled_reason"),
                   metadata=dict(data.get("metadata") or {}))


@dataclass(frozen=True)
class AccountLink:
    url: str
    expires_at: int


class _RequestsClient(stripe.RequestsClient):
    """The SDK's requests client, with sessions that read the environment (proxy variables, netrc,
    CA bundle) once, when the gateway is built, instead of on every call: requests re-reads all of
    ``os.environ`` per request otherwise, a few milliseconds of every Stripe call. A proxy set in
    the environment (HTTPS_PROXY, NO_PROXY) is still used: it is passed on explicitly."""

    def __init__(self, *, api_base: str, timeout: float):
        proxies = requests.utils.get_environ_proxies(api_base)
        super().__init__(timeout=timeout, proxy=proxies.get("https") or proxies.get("http") or None)

    def _request_internal(self, *args, **kwargs):
        if getattr(self._thread_local, "session", None) is None:
            session = requests.Session()
            session.trust_env = False
            self._thread_local.session = session
        return super()._request_internal(*args, **kwargs)


class StripeGateway(MoneyMixin, DisputesMixin, LedgerMixin):
    """Payments, cards, refunds and Connect accounts here; transfers, reversals, payouts and balances in
    ``MoneyMixin`` (stripe_money.py), disputes in ``DisputesMixin`` (stripe_disputes.py), balance
    transactions and the Stripe side of ledger postings in ``LedgerMixin`` (stripe_ledger.py)."""

    def __init__(self, *, api_key: str, api_base: str, max_network_retries: int = 2, timeout: float = 10.0,
                 http_client: Any | None = None):
        self._http = http_client or _RequestsClient(api_base=api_base, timeout=timeout)
        self.client = stripe.StripeClient(api_key, base_addresses={"api": api_base},
                                          max_network_retries=max_network_retries, http_client=self._http)

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "StripeGateway":
        return cls(api_key=settings.STRIPE_SECRET_KEY, api_base=settings.STRIPE_API_BASE, **kwargs)

    def close(self) -> None:
        close = getattr(self._http, "close", None)
        if close:
            close()

    # -- customers ---------------------------------------------------------------------------

    def create_customer(self, *, key: str, metadata: dict) -> str:
        """A Customer carrying only opaque ids (no name, email or phone: PHI stays home)."""
        customer = self._post(lambda k: self.client.v1.customers.create(
            params={"metadata": metadata}, options={"idempotency_key": k}), key,
            reconcile=lambda: None)
        return customer["id"]

    # -- payment intents ---------------------------------------------------------------------

    def create_intent(self, *, key: str, amount: int, currency: str, customer: str, metadata: dict,
                      description: str, save_card: bool, statement_descriptor_suffix: str | None = None,
                      capture_method: str = "manual") -> Intent:
        """``capture_method``: manual (a deposit: authorized, captured once the booking is confirmed)
        or automatic (a visit already given: the patient paying a balance on-session)."""
        params: dict[str, Any] = {
            "amount": amount, "currency": currency, "customer": customer, "capture_method": capture_method,
            "metadata": metadata, "description": description,
            "automatic_payment_methods": {"enabled": True},
        }
        if save_card:
            params["setup_future_usage"] = "off_session"
        if statement_descriptor_suffix:
            params["statement_descriptor_suffix"] = statement_descriptor_suffix
        found = self._post(
            lambda k: self.client.v1.payment_intents.create(params=params, options={"idempotency_key": k}),
            key, reconcile=lambda: self.find_intent(customer=customer, metadata_key="attempt_uuid",
                                                     metadata_value=metadata["attempt_uuid"]))
        return found if isinstance(found, Intent) else Intent.of(found)

    def retrieve_intent(self, intent_id: str) -> Intent:
        try:
            return Intent.of(self.client.v1.payment_intents.retrieve(
                intent_id, params={"expand": ["payment_method"]}))
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"retrieve {intent_id}: {error.__class__.__name__}") from error

    def find_intent(self, *, customer: str, metadata_key: str, metadata_value: str) -> Intent | None:
        """Our intent among the customer's, by our own metadata (after a failure mid-create)."""
        found = self.find_intents(customer=customer, metadata_key=metadata_key, metadata_value=metadata_value)
        return found[0] if found else None

    def find_intents(self, *, customer: str, metadata_key: str | None = None,
                     metadata_value: str | None = None) -> list[Intent]:
        """The customer's intents (newest first), those whose metadata key has the value when given."""
        found = []
        try:
            page = self.client.v1.payment_intents.list(params={"customer": customer, "limit": 100})
            for obj in page.auto_paging_iter():
                data = obj.to_dict()         # SDK objects are not dicts: .get() raises AttributeError
                if metadata_key is None or (data.get("metadata") or {}).get(metadata_key) == metadata_value:
                    found.append(Intent.of(data))
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"list intents: {error.__class__.__name__}") from error
        return found

    def update_intent(self, intent_id: str, *, key: str, setup_future_usage: str | None) -> Intent:
        params = {"setup_future_usage": setup_future_usage or ""}
        found = self._post(lambda k: self.client.v1.payment_intents.update(
            intent_id, params=params, options={"idempotency_key": k}), key,
            reconcile=lambda: None)
        return Intent.of(found)

    def capture(self, intent_id: str, *, key: str, amount: int | None = None) -> Intent:
        params = {"amount_to_capture": amount} if amount is not None else {}

        def done():
            intent = self.retrieve_intent(intent_id)
            return intent if intent.status in ("succeeded", "canceled") else None

        found = self._post(lambda k: self.client.v1.payment_intents.capture(
            intent_id, params=params, options={"idempotency_key": k}), key, reconcile=done)
        return found if isinstance(found, Intent) else Intent.of(found)

    def cancel(self, intent_id: str, *, key: str, reason: str = "abandoned") -> Intent:
        def done():
            intent = self.retrieve_intent(intent_id)
            return intent if intent.status in ("succeeded", "canceled") else None

        try:
            found = self._post(lambda k: self.client.v1.payment_intents.cancel(
                intent_id, params={"cancellation_reason": reason}, options={"idempotency_key": k}), key,
                reconcile=done)
        except GatewayError:
            current = self.retrieve_intent(intent_id)
            if current.status in ("succeeded", "canceled"):
                return current          # already final: nothing to cancel
            raise
        return found if isinstance(found, Intent) else Intent.of(found)

    def confirm_intent(self, intent_id: str, *, key: str, payment_method: str, return_url: str) -> Intent:
        """Confirm on-session with a saved card (the patient is present: 3-D Secure may be asked).

        A decline is not an exception here: the intent comes back in
        requires_payment_method with its last_error, like any failed confirmation."""
        try:
            found = self._post(lambda k: self.client.v1.payment_intents.confirm(
                intent_id, params={"payment_method": payment_method, "return_url": return_url},
                options={"idempotency_key": k}), key, reconcile=lambda: None)
        except GatewayError as error:
            if isinstance(error.__cause__, stripe.CardError):
                return self.retrieve_intent(intent_id)
            raise
        return Intent.of(found)

    # -- off-session charges (a post-visit charge on the card saved at booking) ----------------

    def create_offsession_intent(self, *, key: str, amount: int, currency: str, customer: str,
                                 payment_method: str, metadata: dict, description: str) -> Intent:
        """Create and confirm, off-session, a PaymentIntent captured at once with a saved card.

        A decline (402: ``card_declined``, ``authentication_required``...) is not an exception: the
        intent is re-read (from the error, or found by our metadata) and comes back in
        requires_payment_method with its last_error. After a 500 or a timeout it reconciles like
        ``create_intent`` (our intent found by its ``attempt_uuid``), then retries with the next key."""
        params: dict[str, Any] = {
            "amount": amount, "currency": currency, "customer": customer, "payment_method": payment_method,
            "capture_method": "automatic", "confirm": True, "off_session": True,
            "payment_method_types": ["card"], "metadata": metadata, "description": description,
        }

        def ours():
            return self.find_intent(customer=customer, metadata_key="attempt_uuid",
                                    metadata_value=metadata["attempt_uuid"])

        try:
            found = self._post(lambda k: self.client.v1.payment_intents.create(
                params=params, options={"idempotency_key": k}), key, reconcile=ours)
        except GatewayError as error:
            if isinstance(error.__cause__, stripe.CardError):
                intent_id = _intent_of_error(error.__cause__)
                found = self.retrieve_intent(intent_id) if intent_id else ours()
                if found is not None:
                    return found
            raise
        return found if isinstance(found, Intent) else Intent.of(found)

    def confirm_offsession(self, intent_id: str, *, key: str, payment_method: str) -> Intent:
        """Confirm the same PaymentIntent again, off-session, with a saved card (a scheduled retry).
        A decline comes back as the re-read intent, as in ``create_offsession_intent``."""
        def done():
            intent = self.retrieve_intent(intent_id)
            return intent if intent.status in ("succeeded", "processing", "canceled") else None

        try:
            found = self._post(lambda k: self.client.v1.payment_intents.confirm(
                intent_id, params={"payment_method": payment_method, "off_session": True},
                options={"idempotency_key": k}), key, reconcile=done)
        except GatewayError as error:
            if isinstance(error.__cause__, stripe.CardError):
                return self.retrieve_intent(intent_id)
            raise
        return found if isinstance(found, Intent) else Intent.of(found)

    # -- setup intents (a card saved and verified, nothing charged) --------------------------

    def create_setup_intent(self, *, key: str, customer: str, metadata: dict) -> "Setup":
        """A SetupIntent for later off-session charges; ``metadata`` carries only opaque ids, among them
        ``card_setup_uuid`` (found again by it after a failure mid-create, like ``create_intent``)."""
        params = {"customer": customer, "usage": "off_session", "metadata": metadata,
                  "automatic_payment_methods": {"enabled": True}}

        def reconcile():
            found = self.find_setup_intents(customer, "card_setup_uuid", metadata["card_setup_uuid"])
            return found[0] if found else None

        found = self._post(lambda k: self.client.v1.setup_intents.create(
            params=params, options={"idempotency_key": k}), key, reconcile=reconcile)
        return found if isinstance(found, Setup) else Setup.of(found)

    def retrieve_setup_intent(self, setup_intent_id: str) -> "Setup":
        try:
            return Setup.of(self.client.v1.setup_intents.retrieve(
                setup_intent_id, params={"expand": ["payment_method"]}))
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"retrieve {setup_intent_id}: {error.__class__.__name__}") from error

    def confirm_setup_intent(self, setup_intent_id: str, *, key: str, payment_method: str,
                             return_url: str) -> "Setup":
        """Confirm on-session with a saved card (3-D Secure may be asked). A card error is not an
        exception: the SetupIntent is read again (requires_payment_method with its last error)."""
        try:
            self._post(lambda k: self.client.v1.setup_intents.confirm(
                setup_intent_id, params={"payment_method": payment_method, "return_url": return_url},
                options={"idempotency_key": k}), key, reconcile=lambda: None)
        except GatewayError as error:
            if not isinstance(error.__cause__, stripe.CardError):
                raise
        return self.retrieve_setup_intent(setup_intent_id)

    def find_setup_intents(self, customer: str, metadata_key: str, value: str) -> list["Setup"]:
        """The customer's SetupIntents (newest first) whose metadata key has the value."""
        found = []
        try:
            page = self.client.v1.setup_intents.list(params={"customer": customer, "limit": 100})
            for obj in page.auto_paging_iter():
                data = obj.to_dict()
                if (data.get("metadata") or {}).get(metadata_key) == value:
                    found.append(Setup.of(data))
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"list setup intents: {error.__class__.__name__}") from error
        return found

    # -- saved cards -------------------------------------------------------------------------

    def list_cards(self, customer: str) -> list["Card"]:
        try:
            page = self.client.v1.customers.payment_methods.list(customer, params={"type": "card", "limit": 20})
            return [Card.of(obj) for obj in page.data]
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"list cards: {error.__class__.__name__}") from error

    def detach_card(self, payment_method: str, *, key: str) -> None:
        self._post(lambda k: self.client.v1.payment_methods.detach(payment_method, options={"idempotency_key": k}),
                   key, reconcile=lambda: None)

    # -- refunds -----------------------------------------------------------------------------

    def create_refund(self, *, key: str, payment_intent: str, amount: int, reason: str, metadata: dict
                      ) -> "RefundResult":
        """A refund with one of Stripe's three reasons; ``metadata`` carries only opaque ids."""
        found = self._post(lambda k: self.client.v1.refunds.create(params={
            "payment_intent": payment_intent, "amount": amount, "reason": reason, "metadata": metadata},
            options={"idempotency_key": k}), key,
            reconcile=lambda: self.find_refund(payment_intent=payment_intent, metadata_key="refund_uuid",
                                               metadata_value=metadata["refund_uuid"]))
        return found if isinstance(found, RefundResult) else RefundResult.of(found)

    def find_refund(self, *, payment_intent: str, metadata_key: str, metadata_value: str) -> "RefundResult | None":
        try:
            page = self.client.v1.refunds.list(params={"payment_intent": payment_intent, "limit": 100})
            for obj in page.auto_paging_iter():
                data = obj.to_dict()
                if (data.get("metadata") or {}).get(metadata_key) == metadata_value:
                    return RefundResult.of(data)
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"list refunds: {error.__class__.__name__}") from error
        return None

    # -- Connect: the providers' Express accounts ---------------------------------------------

    def create_express_account(self, *, key: str, metadata: dict) -> ConnectedAccount:
        """An Express account for a provider, paid out on a manual schedule (the platform's weekly job
        pays out), able to receive transfers. ``metadata`` carries only opaque ids (among them
        ``provider_account_uuid``); no email, name or specialty is sent: Stripe's onboarding asks the
        provider. After a 500 or a timeout it reconciles by listing accounts for ours (by the UUID)."""
        params = {"type": "express", "country": "US", "metadata": metadata,
                  "capabilities": {"transfers": {"requested": True}},
                  "settings": {"payouts": {"schedule": {"interval": "manual"}}}}
        found = self._post(lambda k: self.client.v1.accounts.create(params=params, options={"idempotency_key": k}),
                           key, reconcile=lambda: self.find_account("provider_account_uuid",
                                                                     metadata["provider_account_uuid"]))
        return found if isinstance(found, ConnectedAccount) else ConnectedAccount.of(found)

    def retrieve_account(self, account_id: str) -> ConnectedAccount:
        try:
            return ConnectedAccount.of(self.client.v1.accounts.retrieve(account_id))
        except stripe.StripeError as error:
            if _transient(error):
                raise GatewayUnavailable(f"retrieve {account_id}: {error.__class__.__name__}") from error
            raise GatewayError(_describe(error)) from error

    def find_account(self, metadata_key: str, value: str) -> ConnectedAccount | None:
        """The platform's connected account whose metadata key has the value (newest first)."""
        try:
            page = self.client.v1.accounts.list(params={"limit": 100})
            for obj in page.auto_paging_iter():
                data = obj.to_dict()
                if (data.get("metadata") or {}).get(metadata_key) == value:
                    return ConnectedAccount.of(data)
        except stripe.StripeError as error:
            raise GatewayUnavailable(f"list accounts: {error.__class__.__name__}") from error
        return None

    def create_account_link(self, account_id: str, *, refresh_url: str, return_url: str) -> AccountLink:
        """A single-use onboarding link (it expires within minutes: made when the provider asks).
        Not idempotent on purpose: every call is a fresh link."""
        try:
            link = self.client.v1.account_links.create(params={
                "account": account_id, "type": "account_onboarding",
                "refresh_url": refresh_url, "return_url": return_url})
        except stripe.StripeError as error:
            if _transient(error):
                raise GatewayUnavailable(f"account link: {error.__class__.__name__}") from error
            raise GatewayError(_describe(error)) from error
        data = link.to_dict() if hasattr(link, "to_dict") else dict(link)
        return AccountLink(url=data["url"], expires_at=data.get("expires_at") or 0)

    # -- the retry discipline ----------------------------------------------------------------

    def _post(self, call, key: str, *, reconcile):
        """Run ``call(idempotency_key)``; after a transient failure, reconcile, then retry with the next key."""
        last: Exception | None = None
        for round_ in range(1, RECONCILE_ROUNDS + 1):
            attempt_key = key if round_ == 1 else f"{key}#{round_}"
            try:
                return call(attempt_key)
            except stripe.StripeError as error:
                if not _transient(error):
                    raise GatewayError(_describe(error)) from error
                last = error
                log.warning("stripe %s failed (%s); reconciling", attempt_key.split(":")[-1],
                            error.__class__.__name__)
            done = reconcile()
            if done is not None:
                return done
        raise GatewayUnavailable(f"Stripe unavailable after {RECONCILE_ROUNDS} rounds: "
                                 f"{last.__class__.__name__ if last else ''}")


def _intent_of_error(error: stripe.StripeError) -> str | None:
    """The id of the PaymentIntent a card error speaks of (Stripe puts it in the error body)."""
    body = (getattr(error, "json_body", None) or {}).get("error") or {}
    intent = body.get("payment_intent") if isinstance(body, dict) else None
    return _id_of(intent) if intent else None
