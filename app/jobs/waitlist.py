"""The waitlist (issue 17): a job at each offer's expiry, and the sweep's step.

Both call ``waitlist.expire_due_offers`` / ``expire_offer``: the offer expires and the slot is
offered to the next patients in one transaction (their messages are rows, sent after the commit).
A process that dies before the commit leaves the offer due, and the next run does it once."""
from __future__ import annotations

from datetime import datetime

from app.jobs import enqueue_at, job_session
from app.jobs import now as _now
from app.models import WaitlistOffer
from app.services import waitlist


def schedule_offer_expiry(offer_id: int, when: datetime) -> None:
    """After-commit hook of an offer: the job runs at its expiry (the sweep is the safety net)."""
    enqueue_at(when, expire_offer, offer_id, job_id=f"expire-waitlist-offer-{offer_id}")


def expire_offer(offer_id: int) -> int:
    with job_session() as session:
        offer = session.get(WaitlistOffer, offer_id, with_for_update=True)
        if offer is None:
            return 0
        made = waitlist.expire_offer(session, offer, now=_now())
        session.commit()
        return len(made)


def sweep_waitlist() -> dict:
    """Counts only when something happened (the sweep's result stays small)."""
    with job_session() as session:
        counts = waitlist.expire_due_offers(session, now=_now())
        session.commit()
    return {f"waitlist_{k}": v for k, v in counts.items() if v}
