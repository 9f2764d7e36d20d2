"""The post-visit booking's sweep step: card setups no path finished.

The browser's completion and the webhook settle a CardSetup as soon as Stripe answers; this step
covers their loss. It settles open setups of held appointments quiet for PAYMENT_QUIET (the
patient's card may have been saved while the page and the webhook were both lost), and gives up
or adopts setups left ``creating`` (a crash between storing the row and recording its SetupIntent).
Each item is its own unit of work (``card_setup`` commits); one failing never stops the rest.
"""
from __future__ import annotations

import logging

from flask import current_app

from app.jobs import job_session
from app.services import card_setup
from app.services.audit import Actor

log = logging.getLogger(__name__)


def sweep_card_setups() -> dict:
    with job_session() as session:
        due = card_setup.due_setups(session, quiet_for=current_app.config["SETTINGS"].PAYMENT_QUIET)
        session.rollback()
    settled = _each(due.to_settle, "settling card setup %s failed", _settle)
    reconciled = _each(due.creating, "reconciling card setup %s failed", _reconcile)
    return {"setups_settled": settled, "setups_reconciled": reconciled} if settled or reconciled else {}


def settle_setup(setup_id: int) -> str:
    """Settle one card setup (its SetupIntent re-read from Stripe)."""
    with job_session() as session:
        return card_setup.settle_setup(session, setup_id, source="sweep", actor=Actor.system("job")).state


def _settle(setup_id: int) -> bool:
    settle_setup(setup_id)
    return True


def _reconcile(setup_id: int) -> bool:
    with job_session() as session:
        card_setup.reconcile_creating(session, setup_id, actor=Actor.system("job"))
    return True


def _each(items: list, failure: str, work) -> int:
    done = 0
    for item in items:
        try:
            work(item)
            done += 1
        except Exception:
            log.exception(failure, item)
    return done
