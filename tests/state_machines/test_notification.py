"""Notification: our own machine, on a loaded row and through the compare-and-swap UPDATE."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql

from app.models import Notification
from app.models.notification import TRANSITIONS
from app.models.state import Ignored, InvalidTransition
from app.services import notifications

STATES = ("queued", "sending", "sent", "delivered", "failed", "canceled")
ACTIONS = ("claim", "hand_off", "deliver", "retry", "expire", "fail", "cancel", "requeue")
EXPECTED = {
    ("queued", "claim"): "sending",
    ("sending", "hand_off"): "sent",
    ("sending", "deliver"): "delivered",
    ("sent", "deliver"): "delivered",
    ("sending", "retry"): "queued",
    ("sending", "expire"): "queued",
    ("sending", "fail"): "failed",
    ("sent", "fail"): "failed",
    ("queued", "cancel"): "canceled",
    ("canceled", "requeue"): "queued",
}


def notification(status):
    return Notification(dedupe_key="k", channel="sms", template="reminder", recipient="+15555550100",
                        status=status)


def test_the_table_is_the_one_reviewed_here():
    assert TRANSITIONS == EXPECTED


def test_every_pair(machine_check):
    checked = machine_check(notification, Notification.transition, EXPECTED, STATES, ACTIONS)
    assert checked == len(STATES) * len(ACTIONS)


def test_the_retry_loop_is_a_forward_edge_and_a_delivered_message_never_fails():
    n = notification("queued")
    for action, status in (("claim", "sending"), ("retry", "queued"), ("claim", "sending"), ("hand_off", "sent"),
                           ("deliver", "delivered")):
        assert n.transition(action) == status
    with pytest.raises(InvalidTransition):
        n.transition("fail")
    with pytest.raises(Ignored):
        n.transition("deliver")
    assert n.status == "delivered"


def _sql(statement) -> str:
    return str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def test_the_cas_takes_its_source_states_from_the_table():
    claim = _sql(Notification.transition_where("claim", Notification.id == 7))
    assert "SET status='sending'" in claim and "status IN ('queued')" in claim and "id = 7" in claim
    fail = _sql(Notification.transition_where("fail"))
    assert "SET status='failed'" in fail and "status IN ('sending', 'sent')" in fail
    with pytest.raises(ValueError):
        Notification.transition_where("nonexistent")          # no edge: nothing a CAS could do


# -- the compare-and-swap against the database -------------------------------------------------

def _row(db, factories, *, status="queued", due_in=timedelta(0), template="reminder", now):
    user = factories.patient().user
    row = Notification(dedupe_key=f"sm:{status}:{template}:{user.id}", channel="email", template=template,
                       recipient=user.email, user_id=user.id, context={}, scheduled_for=now + due_in, status=status)
    db.add(row)
    db.commit()
    return row


def test_claim_moves_one_queued_row_once(db, factories):
    now = datetime(2026, 11, 30, 14, 0, tzinfo=timezone.utc)
    row = _row(db, factories, now=now)
    assert notifications.claim(db, row.id, now=now) is True
    assert notifications.claim(db, row.id, now=now) is False          # the second run finds it claimed
    db.commit()
    db.refresh(row)
    assert (row.status, row.attempts, row.sent_at) == ("sending", 1, now)


@pytest.mark.parametrize("status", ["sending", "sent", "delivered", "failed", "canceled"])
def test_claim_leaves_a_row_in_any_other_state(db, factories, status):
    now = datetime(2026, 11, 30, 14, 0, tzinfo=timezone.utc)
    row = _row(db, factories, status=status, now=now)
    assert notifications.claim(db, row.id, now=now) is False
    db.commit()
    db.refresh(row)
    assert row.status == status


def test_record_failure_releases_the_claim_then_fails_for_good(db, factories):
    now = datetime(2026, 11, 30, 14, 0, tzinfo=timezone.utc)
    row = _row(db, factories, now=now)
    assert notifications.claim(db, row.id, now=now)
    db.refresh(row)
    assert notifications.record_failure(db, row, error="timeout", permanent=False, max_attempts=2) is True
    assert (row.status, row.sent_at) == ("queued", None)
    db.commit()
    assert notifications.claim(db, row.id, now=now)
    db.refresh(row)
    assert notifications.record_failure(db, row, error="timeout", permanent=False, max_attempts=2) is False
    assert row.status == "failed"


def test_the_cancel_cas_moves_only_queued_rows(db, factories):
    now = datetime(2026, 11, 30, 14, 0, tzinfo=timezone.utc)
    rows = [_row(db, factories, status=s, due_in=timedelta(hours=1), now=now)
            for s in ("queued", "sending", "sent", "canceled")]
    moved = db.execute(Notification.transition_where("cancel", Notification.id.in_([r.id for r in rows]))
                       .returning(Notification.id)).scalars().all()
    db.commit()
    assert moved == [rows[0].id]
    for row, status in zip(rows, ("canceled", "sending", "sent", "canceled")):
        db.refresh(row)
        assert row.status == status


def test_the_expire_cas_takes_back_only_claims_whose_lease_ran_out(db, factories):
    now = datetime(2026, 11, 30, 14, 0, tzinfo=timezone.utc)
    lease = timedelta(minutes=15)
    fresh, stale, last, done = (_row(db, factories, status=s, now=now) for s in ("queued",) * 4)
    for row in (fresh, stale, last, done):
        assert notifications.claim(db, row.id, now=now)
    db.commit()
    db.refresh(last)
    last.attempts = 4
    db.refresh(done)
    done.transition("hand_off")
    db.commit()
    later = now + lease + timedelta(seconds=1)
    db.execute(Notification.__table__.update().where(Notification.id == fresh.id).values(sent_at=later))
    requeued, failed = notifications.expire_leases(db, now=later, lease=lease, max_attempts=4)
    db.commit()
    assert (requeued, failed) == ([stale.id], [last.id])
    for row, status in ((fresh, "sending"), (stale, "queued"), (last, "failed"), (done, "sent")):
        db.refresh(row)
        assert row.status == status
    assert stale.sent_at is None and "lease" in stale.error and stale.attempts == 1
    assert notifications.claim(db, stale.id, now=later)                 # and it can be sent again


def test_a_result_is_recorded_only_by_the_claim_that_holds_the_lease(db, factories):
    now = datetime(2026, 11, 30, 14, 0, tzinfo=timezone.utc)
    row = _row(db, factories, now=now)
    first = notifications.claim_attempt(db, row.id, now=now)
    db.commit()
    assert notifications.holds_lease(db, row, first, claimed_at=now)
    db.rollback()
    notifications.expire_leases(db, now=now + timedelta(hours=1), lease=timedelta(minutes=15), max_attempts=4)
    db.commit()
    assert notifications.holds_lease(db, row, first, claimed_at=now)     # taken back, not claimed since: kept
    assert row.status == "sending"
    db.rollback()
    notifications.expire_leases(db, now=now + timedelta(hours=1), lease=timedelta(minutes=15), max_attempts=4)
    db.commit()
    second = notifications.claim_attempt(db, row.id, now=now + timedelta(hours=1))
    db.commit()
    assert second == first + 1
    assert not notifications.holds_lease(db, row, first, claimed_at=now)  # another run owns it now
    assert notifications.holds_lease(db, row, second, claimed_at=now)
    db.rollback()
