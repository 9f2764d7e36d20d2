"""The one place after-commit work is wired: which jobs each named intent starts.

Services ask for work by name on the unit of work (``unit_of_work.request``,
``signals.emit``); once the transaction has committed, the handlers listed
here run. Each only enqueues a job (which opens its own unit of work) or
schedules one: nothing here touches the database. ``create_app`` calls
``subscribe()``; it replaces every subscription, so calling it twice is
harmless.
"""
from __future__ import annotations

from app.jobs import enqueue
from app.services.unit_of_work import subscribe as _subscribe


def _on_event(job, *, with_reason: bool = False):
    """A handler for a booking event: enqueue ``job(appointment_id[, reason])``."""
    def handler(event) -> None:
        if with_reason:
            enqueue(job, event.appointment_id, event.reason or None)
        else:
            enqueue(job, event.appointment_id)
    handler.__qualname__ = f"enqueue {job.__module__}.{job.__name__}"
    return handler


def _declined(job):
    def handler(event) -> None:
        enqueue(job, event.appointment_id, event.reason or "")
    handler.__qualname__ = f"enqueue {job.__module__}.{job.__name__}"
    return handler


def _enqueue(job):
    def handler(*args) -> None:
        enqueue(job, *args)
    handler.__qualname__ = f"enqueue {job.__module__}.{job.__name__}"
    return handler


def subscriptions() -> dict:
    from app.jobs import booking, notifications, payments, refunds, twindow
    from app.jobs import visit_charges
    from app.jobs import eligibility        # Good Faith Estimates (issue 15)

    return {
        "slot_selected": [],
        "booking_confirmed": [_on_event(notifications.booking_confirmed),
                              _on_event(twindow.appointment_changed),
                              _on_event(eligibility.deliver_good_faith_estimate)],
        "booking_canceled": [_on_event(refunds.refund_canceled_booking),
                             _on_event(notifications.booking_canceled),
                             _on_event(twindow.appointment_changed, with_reason=True)],
        "hold_released": [_on_event(payments.cancel_for_released_hold),
                          _on_event(notifications.hold_released, with_reason=True),
                          _on_event(twindow.appointment_changed, with_reason=True)],
        "booking_rescheduled": [_on_event(notifications.booking_rescheduled)],
        "payment_declined": [_declined(notifications.payment_declined),
                             _declined(twindow.payment_declined)],
        "poll_payment": [payments.schedule_poll],
        # One Redis command per new event; one batch job drains the stored events (app/jobs/payments.py).
        "process_stripe_event": [payments.request_processing],
        "expire_hold": [booking.schedule_hold_expiry],
        "send_notification": [notifications.schedule_send],
        "charge_visit": [visit_charges.schedule_charge],
        "visit_case_due": [visit_charges.schedule_due],
        **_claims_subscriptions(),
        **_waitlist_subscriptions(),
        "fhir_export": [_enqueue(_fhir_job())],      # the FHIR bulk export (issue 17)
    }


def _fhir_job():
    from app.jobs.fhir import run_export

    return run_export


def _waitlist_subscriptions() -> dict:
    """The waitlist (issue 17): app/jobs/waitlist.py."""
    from app.jobs import waitlist

    return {"expire_waitlist_offer": [waitlist.schedule_offer_expiry]}


def _claims_subscriptions() -> dict:
    """Claims, remittances and reconciliation (issue 15): app/jobs/claims.py."""
    from app.jobs import claims

    return {"submit_claim": [_enqueue(claims.submit_claim)],
            "reconcile_visit": [_enqueue(claims.reconcile_visit)],
            "send_refund": [_enqueue(claims.send_refund)]}


def subscribe() -> None:
    _subscribe(subscriptions())
