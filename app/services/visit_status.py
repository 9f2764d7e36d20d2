"""Where each visit stands after the visit, as the provider's day view and billing's lists show it:
not documented, documented (draft), signed, charged, failed (why), recovered, in collections,
with the agency, on a payment plan (n of m paid), written off, or card needed.

Read in one query for any number of appointments (the appointment, its encounter, its visit
charge's collections case and the charge), so a day view of forty visits costs one round trip.
Nothing here writes or imports Flask.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from app.models import Appointment, Charge, CollectionCase, Encounter
from app.services.statements import money

VISITED = ("checked_in", "completed")
BOOKED = ("confirmed", "checked_in", "completed")

# Stripe's decline and error codes, in plain words (the rest fall back to the failure kind's words).
CODE_WORDS = {
    "insufficient_funds": "insufficient funds",
    "try_again_later": "the bank asked to try again later",
    "processing_error": "a processing error at the bank",
    "expired_card": "the card has expired",
    "lost_card": "the card was reported lost",
    "stolen_card": "the card was reported stolen",
    "pickup_card": "the bank asked to keep the card (pick up)",
    "do_not_try_again": "the bank said not to try again",
    "do_not_honor": "the bank declined it",
    "generic_decline": "the bank declined it",
    "card_declined": "the bank declined it",
    "incorrect_cvc": "the security code was wrong",
    "authentication_required": "the bank asks the patient to confirm the payment (3-D Secure)",
    "card_removed": "the saved card was removed",
    "no_card": "no card on file",
    "resource_missing": "the saved card is no longer available",
}
KIND_WORDS = {
    "soft": "the card was declined for now (retries scheduled)",
    "hard": "the card was declined and cannot be retried",
    "authentication": "the bank asks the patient to confirm the payment (3-D Secure)",
    "no_card": "no card on file",
}


def failure_words(kind: str | None, code: str | None) -> str:
    """Why a visit charge failed, in plain words ("insufficient funds"); "" when nothing failed."""
    if code and code in CODE_WORDS:
        return CODE_WORDS[code]
    if kind in KIND_WORDS:
        return KIND_WORDS[kind] + (f" ({code})" if code else "")
    return f"declined ({code})" if code else ""


@dataclass(frozen=True)
class VisitState:
    kind: str          # not_documented | draft | signed | charging | charged | failed | recovered | collections
    #                    | with_agency | payment_plan | written_off | card_needed
    label: str         # "Failed", "In collections", ...
    detail: str = ""   # "insufficient funds · retry 1 of 3 on Dec 9", "2 of 6 paid", ...
    balance_cents: int = 0

    @property
    def text(self) -> str:
        return f"{self.label}: {self.detail}" if self.detail else self.label


def _case_state(case: CollectionCase, charge: Charge | None) -> VisitState:
    amount = charge.amount_cents if charge is not None else 0
    captured = charge.amount_captured_cents if charge is not None else 0
    balance = max(0, amount - captured)
    why = failure_words(case.failure_kind, case.failure_code)
    status = case.status
    if status == "paid":
        if case.recovered:
            return VisitState("recovered", "Recovered", f"paid {money(captured)} after a failed charge")
        return VisitState("charged", "Charged", f"paid {money(captured)}")
    if status in ("pending", "charging"):
        return VisitState("charging", "Signed", f"charging {money(amount)}", balance)
    if status == "recovering":
        parts = [why or "the charge failed"]
        if case.retries_done:
            parts.append(f"{case.retries_done} retr{'y' if case.retries_done == 1 else 'ies'} done")
        if case.next_retry_at is not None:
            parts.append("next retry scheduled")
        elif case.link_sent_at is not None:
            parts.append("payment link sent")
        return VisitState("failed", "Failed", " · ".join(parts), balance)
    if status == "collections":
        return VisitState("collections", "In collections",
                          " · ".join(filter(None, [f"{money(balance)} due", why,
                                                   "final notice sent" if case.final_notice_at else ""])), balance)
    if status == "with_agency":
        return VisitState("with_agency", "With collections agency", f"{money(balance)} due", balance)
    if status == "payment_plan":
        return VisitState("payment_plan", "Payment plan",
                          f"{case.plan_paid} of {case.plan_instalments or '?'} paid · {money(balance)} due", balance)
    if status == "written_off":
        return VisitState("written_off", "Written off", f"{money(balance)} written off")
    return VisitState(status, status.replace("_", " ").capitalize())


def visit_states(session: Session, appointment_ids) -> dict[int, "VisitState"]:
    """{appointment id: VisitState} for the given appointments (one query). An appointment with
    nothing to say after the visit (a deposit visit not yet seen, no note) is left out."""
    ids = sorted({int(i) for i in appointment_ids if i is not None})
    if not ids:
        return {}
    rows = session.execute(
        select(Appointment.id, Appointment.status, Appointment.payment_timing, Appointment.payment_method_id,
               Encounter.status, CollectionCase, Charge)
        .outerjoin(Encounter, Encounter.appointment_id == Appointment.id)
        .outerjoin(CollectionCase, CollectionCase.encounter_id == Encounter.id)
        .outerjoin(Charge, and_(Charge.id == CollectionCase.charge_id))
        .where(Appointment.id.in_(ids))).all()
    states: dict[int, VisitState] = {}
    for appt_id, status, timing, payment_method, encounter_status, case, charge in rows:
        post_visit = timing == "post_visit"
        if case is not None:
            states[appt_id] = _case_state(case, charge)
        elif encounter_status == "signed":
            states[appt_id] = VisitState("signed", "Signed", "charge being prepared" if post_visit else "")
        elif encounter_status == "open":
            detail = "card needed" if post_visit and payment_method is None and status in BOOKED else ""
            states[appt_id] = VisitState("draft", "Documented (draft)", detail)
        elif post_visit and payment_method is None and status in BOOKED:
            states[appt_id] = VisitState("card_needed", "Card needed", "no saved card for the post-visit charge")
        elif status in VISITED:
            states[appt_id] = VisitState("not_documented", "Not documented")
    return states
