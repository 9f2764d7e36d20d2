"""PaymentAttempt mirrors a PaymentIntent: whatever Stripe reports is applied, except a repeat
or a report after a final status (succeeded, canceled), which are ignored."""
import pytest

from app.models import PaymentAttempt
from app.models.payment import INTENT_MIRROR
from app.models.state import InvalidTransition

STRIPE = ["requires_payment_method", "requires_confirmation", "requires_action", "processing",
          "requires_capture", "succeeded", "canceled"]
FINAL = {"succeeded", "canceled"}


def attempt(status):
    return PaymentAttempt(charge_id=1, number=1, amount_cents=5000, currency="usd", status=status)


def test_every_pair(mirror_check):
    checked = mirror_check(attempt, FINAL, {"creating"}, STRIPE, never=["creating", "requires_payment", "paid"])
    assert checked == (len(STRIPE) + 1) * (len(STRIPE) + 3)


def test_the_table_has_every_status_and_only_succeeded_and_canceled_are_final():
    table = INTENT_MIRROR.table
    assert set(table) == set(STRIPE) | {"creating"}
    assert {state for state, targets in table.items() if not targets} == FINAL
    assert table["creating"] == frozenset(STRIPE)
    assert "creating" not in set().union(*table.values())        # nothing goes back to creating


@pytest.mark.parametrize("back_from", ["requires_action", "processing", "requires_confirmation"])
def test_a_decline_goes_back_to_requires_payment_method_and_may_be_confirmed_again(back_from):
    a = attempt(back_from)
    assert a.mirror("requires_payment_method") is True
    assert a.status == "requires_payment_method"
    assert a.mirror("requires_action") is True
    assert a.mirror("requires_capture") is True
    assert a.mirror("succeeded") is True and a.is_final


def test_creating_becomes_what_stripe_reports_or_is_canceled():
    a = attempt("creating")
    assert a.mirror("requires_payment_method") is True and a.status == "requires_payment_method"
    b = attempt("creating")
    assert b.mirror("canceled") is True and b.status == "canceled"


@pytest.mark.parametrize("final", sorted(FINAL))
def test_a_stale_report_after_a_final_status_is_ignored(final):
    a = attempt(final)
    for reported in STRIPE:
        assert a.mirror(reported) is False
        assert a.status == final


def test_a_repeat_is_ignored():
    a = attempt("requires_action")
    assert a.mirror("requires_action") is False
    assert a.status == "requires_action"


def test_a_status_stripe_never_reports_is_refused():
    with pytest.raises(InvalidTransition):
        attempt("processing").mirror("creating")
