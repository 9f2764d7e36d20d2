"""The Stripe test cards the sandbox knows, and what each one does.

Only the behaviour name, last 4, brand and expiry of a card are ever stored;
the full number and CVC are looked at once, when the PaymentMethod is created,
and then forgotten.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str | None
    message: str
    # Stripe's ``advice_code`` on an issuer decline (how to proceed), where Stripe gives one.
    advice_code: str | None = None


GENERIC = Decline("card_declined", "generic_decline", "Your card was declined.")
INSUFFICIENT = Decline("card_declined", "insufficient_funds", "Your card has insufficient funds.", "try_again_later")
LOST = Decline("card_declined", "lost_card", "Your card was declined.", "do_not_try_again")
STOLEN = Decline("card_declined", "stolen_card", "Your card was declined.", "do_not_try_again")
EXPIRED = Decline("expired_card", None, "Your card has expired.")
INCORRECT_CVC = Decline("incorrect_cvc", None, "Your card's security code is incorrect.")
PROCESSING = Decline("processing_error", None,
                     "An error occurred while processing your card. Try again in a little bit.")
VELOCITY = Decline("card_declined", "card_velocity_exceeded",
                   "Your card was declined for making repeated attempts too frequently or exceeding its amount limit.",
                   "try_again_later")


@dataclass(frozen=True)
class Behaviour:
    name: str
    # decline on attach / SetupIntent and on every charge
    decline: Decline | None = None
    # attaches fine, every charge fails
    charge_decline: Decline | None = None
    # 3-D Secure: "never", "unless_setup" (on- and off-session, waived once set up),
    # "always", "on_session_only"
    auth: str = "never"
    # decline on payments after authentication (or after being set up)
    decline_after_auth: Decline | None = None
    three_d_secure_supported: bool = True
    extra: dict = field(default_factory=dict)


BEHAVIOURS: dict[str, Behaviour] = {b.name: b for b in [
    Behaviour("success"),
    Behaviour("decline_generic", decline=GENERIC),
    Behaviour("decline_insufficient_funds", decline=INSUFFICIENT),
    Behaviour("decline_lost_card", decline=LOST),
    Behaviour("decline_stolen_card", decline=STOLEN),
    Behaviour("decline_expired_card", decline=EXPIRED),
    Behaviour("decline_incorrect_cvc", decline=INCORRECT_CVC),
    Behaviour("decline_processing_error", decline=PROCESSING),
    Behaviour("decline_velocity", decline=VELOCITY),
    Behaviour("attach_then_decline", charge_decline=GENERIC),
    Behaviour("auth_unless_setup", auth="unless_setup"),
    Behaviour("auth_always", auth="always"),
    Behaviour("auth_on_session_only", auth="on_session_only"),
    Behaviour("auth_then_insufficient_funds", auth="unless_setup", decline_after_auth=INSUFFICIENT),
    Behaviour("auth_3ds2_required", auth="unless_setup"),
    Behaviour("auth_then_declined", auth="unless_setup", decline_after_auth=GENERIC),
    Behaviour("auth_supported_not_required"),
    # refund timing (resources/refunds.py) and disputes (resources/disputes.py): the charge itself succeeds
    Behaviour("refund_pending_then_succeeded", extra={"refund": "pending_then_succeeded"}),
    Behaviour("refund_succeeded_then_failed", extra={"refund": "succeeded_then_failed"}),
    Behaviour("dispute_fraudulent", extra={"dispute": "fraudulent"}),
]}

# number -> behaviour name.  Any other Luhn-valid number behaves like "success".
TEST_CARDS: dict[str, str] = {
    "4242424242424242": "success",
    "5555555555554444": "success",
    "4000000000000002": "decline_generic",
    "4000000000009995": "decline_insufficient_funds",
    "4000000000009987": "decline_lost_card",
    "4000000000009979": "decline_stolen_card",
    "4000000000000069": "decline_expired_card",
    "4000000000000127": "decline_incorrect_cvc",
    "4000000000000119": "decline_processing_error",
    "4000000000006975": "decline_velocity",
    "4000000000000341": "attach_then_decline",
    "4000002500003155": "auth_unless_setup",
    "4000002760003184": "auth_always",
    "4000003800000446": "auth_on_session_only",
    "4000008260003178": "auth_then_insufficient_funds",
    "4000000000003220": "auth_3ds2_required",
    "4000008400001629": "auth_then_declined",
    "4000000000003055": "auth_supported_not_required",
    "4000000000007726": "refund_pending_then_succeeded",
    "4000000000005126": "refund_succeeded_then_failed",
    "4000000000000259": "dispute_fraudulent",
}

# Stripe's test PaymentMethod ids (pm_card_*) -> card number
TEST_PAYMENT_METHODS: dict[str, str] = {
    "pm_card_visa": "4242424242424242",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedLostCard": "4000000000009987",
    "pm_card_chargeDeclinedStolenCard": "4000000000009979",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_authenticationRequiredSetupForOffSession": "4000002500003155",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_authenticationRequiredOnSetup": "4000002500003155",
    "pm_card_threeDSecure2Required": "4000000000003220",
}


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or (len(number) >= 4 and 2221 <= int(number[:4]) <= 2720):
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    if number.startswith(("6011", "65")):
        return "discover"
    if number[:2] in {"35"}:
        return "jcb"
    if number[:2] in {"36", "30", "38"}:
        return "diners"
    return "unknown"


def behaviour_of(number: str) -> str:
    return TEST_CARDS.get(number, "success")


# --- issue 13: off-session and saved cards (card ageing, cards marked lost) -------------------------
# A card is valid through the end of its expiry month; after that every charge fails ``expired_card``.
# The admin API can also mark a saved PaymentMethod expired or lost now (PaymentMethod ``_sandbox.state``).
AUTHENTICATION_REQUIRED = Decline("authentication_required", "authentication_required",
                                  "Your card was declined. This transaction requires authentication.")


def card_expired(exp_month: int, exp_year: int, now: int) -> bool:
    """True once the sandbox time ``now`` (unix seconds, UTC) is past the end of the expiry month."""
    import datetime
    today = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    return (today.year, today.month) > (int(exp_year), int(exp_month))


def seller_message(decline: Decline) -> str:
    """Stripe's charge ``outcome.seller_message`` for a card declined by the issuer."""
    reason = decline.decline_code or decline.code
    if reason == "generic_decline":
        return "The bank did not return any further details with this decline."
    return f"The bank returned the decline code `{reason}`."
# --- end issue 13 off-session block ---------------------------------------------------------------------


# --- issue 13: Connect (balance) ----------------------------------------------------------------------
# 4000000000000077: the charge succeeds and its funds are added to the available balance at once
# (available_on = now), bypassing the pending balance (Stripe's "available balance" test card).
BEHAVIOURS["available_balance"] = Behaviour("available_balance", extra={"balance": "available"})
TEST_CARDS["4000000000000077"] = "available_balance"
TEST_PAYMENT_METHODS["pm_card_bypassPending"] = "4000000000000077"
# --- end issue 13 Connect block -------------------------------------------------------------------------


# --- issue 13: refund timing and disputes -----------------------------------------------------------
# 4000000000007726: a refund starts ``pending`` and succeeds later; 4000000000005126: a refund starts
# ``succeeded`` and fails later (``expired_or_canceled_card``), see resources/refunds.py.
# 4000000000000259: the charge succeeds, then a ``fraudulent`` dispute opens, see resources/disputes.py.
TEST_PAYMENT_METHODS["pm_card_pendingRefund"] = "4000000000007726"
TEST_PAYMENT_METHODS["pm_card_refundFail"] = "4000000000005126"
TEST_PAYMENT_METHODS["pm_card_createDispute"] = "4000000000000259"
# --- end issue 13 refund timing and disputes block -----------------------------------------------------
