"""Refund mirrors a Stripe Refund: a succeeded refund can still fail; only failed and canceled
are final. A repeat or a report after a final status is ignored."""
import pytest

from app.models import Refund
from app.models.payment import REFUND_MIRROR
from app.models.state import InvalidTransition

STRIPE = ["pending", "succeeded", "failed", "canceled"]
FINAL = {"failed", "canceled"}


def refund(status):
    return Refund(charge_id=1, attempt_id=1, amount_cents=2500, stripe_reason="requested_by_customer",
                  clinical_reason="test", policy="billing", status=status)


def test_every_pair(mirror_check):
    checked = mirror_check(refund, FINAL, {"creating"}, STRIPE, never=["creating", "refunded", "partial"])
    assert checked == (len(STRIPE) + 1) * (len(STRIPE) + 3)


def test_the_table():
    table = REFUND_MIRROR.table
    assert table == {
        "creating": frozenset(STRIPE),
        "pending": frozenset({"succeeded", "failed", "canceled"}),
        "succeeded": frozenset({"pending", "failed", "canceled"}),
        "failed": frozenset(),
        "canceled": frozenset(),
    }


def test_a_succeeded_refund_can_fail():
    r = refund("succeeded")
    assert not r.is_final
    assert r.mirror("failed") is True
    assert r.status == "failed" and r.is_final


def test_requires_action_is_stored_as_pending():
    r = refund("creating")
    assert r.mirror("requires_action") is True
    assert r.status == "pending"
    assert r.mirror("requires_action") is False            # a repeat (pending again)


@pytest.mark.parametrize("final", sorted(FINAL))
def test_a_stale_report_after_a_final_status_is_ignored(final):
    r = refund(final)
    for reported in STRIPE + ["requires_action"]:
        assert r.mirror(reported) is False
        assert r.status == final


def test_a_status_stripe_never_reports_is_refused():
    with pytest.raises(InvalidTransition):
        refund("pending").mirror("creating")
