"""Eligibility checks (X12 270/271 through the clearinghouse), stored with the coverage.

``check`` asks the clearinghouse whether a coverage is active on a service date and what its benefits
are (copay, coinsurance, deductible and out-of-pocket maximum with what is met), and stores one
``EligibilityCheck`` row with the raw answer (encrypted). It never raises for the clearinghouse:

| answer                                  | status        |
|-----------------------------------------|---------------|
| 271 active                              | active        |
| 271 inactive (no AAA errors)            | inactive      |
| 271 with AAA errors (72, 75, 71 ...)    | error         |
| 4xx from the clearinghouse (bad payer)  | error         |
| not reached, 5xx, 429, malformed answer | unavailable   |
| no clearinghouse configured             | unavailable   |

Triggers: 'entry' (intake saved insurance), 'day_before' (the recheck job, ELIGIBILITY_RECHECK_BEFORE
before the visit), 'manual' (staff). The audit row (``eligibility.checked``) carries ids, the trigger
and the status; never the member id, the plan or the subscriber. The network call happens inside the
caller's transaction: a 270 is a query (nothing to undo), bounded by the client's timeouts.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.insurance import Coverage, EligibilityCheck
from app.services import audit
from app.services.audit import Actor

TRIGGERS = ("entry", "day_before", "manual")

# Plain words for the AAA codes the 271 may carry (the patient sees these).
AAA_WORDS = {
    "71": _l("The birth date does not match the insurer's records."),
    "72": _l("The member ID is not in the form this insurer uses."),
    "73": _l("The name does not match the insurer's records."),
    "75": _l("The insurer did not find this member."),
}


def client():
    """The app's clearinghouse client (None when CLEARINGHOUSE_URL is unset)."""
    from flask import current_app

    from app.integrations import clearinghouse

    app = current_app
    key = "clearinghouse"
    if key not in app.extensions:
        app.extensions[key] = clearinghouse.from_settings(app.config["SETTINGS"])
    return app.extensions[key]


def _split_name(full: str | None) -> tuple[str | None, str | None]:
    parts = (full or "").split()
    if not parts:
        return None, None
    if len(parts) == 1:
        return None, parts[0]
    return " ".join(parts[:-1]), parts[-1]


def _as_date(value) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def check(session: Session, coverage: Coverage, *, trigger: str, service_date: date,
          appointment_id: int | None = None, now: datetime, actor: Actor,
          subscriber: Mapping | None = None) -> EligibilityCheck:
    """Ask the clearinghouse about ``coverage`` on ``service_date``; store and return the answer.

    ``subscriber`` (optional) overrides what the coverage holds: ``{first_name, last_name, birth_date}``.
    Never raises for the clearinghouse (an unreachable one is stored as status 'unavailable')."""
    from app.integrations.clearinghouse import ClearinghouseRejected, ClearinghouseUnavailable

    if trigger not in TRIGGERS:
        raise ValueError(f"unknown eligibility trigger {trigger!r}")
    service_date = _as_date(service_date) or now.date()
    first, last = _split_name(coverage.subscriber_name)
    birth = _as_date(coverage.subscriber_birth_date)
    if subscriber:
        first = subscriber.get("first_name", first)
        last = subscriber.get("last_name", last)
        birth = _as_date(subscriber.get("birth_date")) or birth
    row = EligibilityCheck(coverage_id=coverage.id, appointment_id=appointment_id, trigger=trigger,
                           service_date=service_date.isoformat(), checked_at=now,
                           checked_by_id=actor.id if actor.type == "user" else None, errors=[])
    ch = None
    try:
        ch = client()
    except RuntimeError:                      # no app context: no clearinghouse
        ch = None
    if ch is None:
        row.status = "unavailable"
        row.errors = [{"code": "not_configured", "description": "No clearinghouse is configured."}]
    else:
        try:
            answer = ch.check_eligibility(payer_id=coverage.payer_id, member_id=coverage.member_id,
                                          service_date=service_date, subscriber_first_name=first,
                                          subscriber_last_name=last, subscriber_birth_date=birth)
        except ClearinghouseUnavailable as error:
            row.status = "unavailable"
            row.errors = [{"code": "unavailable", "description": str(error)[:200]}]
        except ClearinghouseRejected as error:
            row.status = "error"
            row.errors = [{"code": error.code, "description": (error.message or "")[:200]}]
            row.response = json.dumps({"status": error.status, "code": error.code, "message": error.message,
                                       "details": list(error.details)})
        else:
            row.clearinghouse_id = answer.id
            row.response = json.dumps(dict(answer.raw), default=str)
            row.errors = [{"code": e.code, "description": e.description, "followup_action": e.followup_action}
                          for e in answer.errors]
            if answer.active:
                row.status = "active"
                row.plan_name = answer.plan_name
                row.copay_cents = answer.copay_cents
                row.coinsurance_percent = answer.coinsurance_percent
                row.deductible_cents = answer.deductible_cents
                row.deductible_met_cents = answer.deductible_met_cents
                row.oop_max_cents = answer.oop_max_cents
                row.oop_met_cents = answer.oop_met_cents
            else:
                row.status = "error" if answer.errors else "inactive"
                row.plan_name = answer.plan_name
    session.add(row)
    session.flush()
    audit.record(session, actor=actor, action="eligibility.checked", patient_id=coverage.patient_id,
                 appointment_id=appointment_id, at=now,
                 outcome="success" if row.status in ("active", "inactive", "error") else "failure",
                 details={"eligibility_check_id": row.id, "coverage_id": coverage.id, "trigger": trigger,
                          "status": row.status, "error_codes": [e.get("code") for e in row.errors]})
    return row


def latest(session: Session, coverage_id: int) -> EligibilityCheck | None:
    """The newest check of a coverage (any trigger), or None."""
    return session.scalar(select(EligibilityCheck).where(EligibilityCheck.coverage_id == coverage_id)
                          .order_by(EligibilityCheck.checked_at.desc(), EligibilityCheck.id.desc()).limit(1))


def latest_answered(session: Session, coverage_id: int) -> EligibilityCheck | None:
    """The newest check that got an answer (not 'unavailable'): what estimates use."""
    return session.scalar(select(EligibilityCheck).where(EligibilityCheck.coverage_id == coverage_id,
                                                         EligibilityCheck.status != "unavailable")
                          .order_by(EligibilityCheck.checked_at.desc(), EligibilityCheck.id.desc()).limit(1))


def raw_response(row: EligibilityCheck) -> dict | None:
    """The stored 271 (or the clearinghouse's refusal) as a dict."""
    if not row.response:
        return None
    try:
        return json.loads(row.response)
    except ValueError:
        return None


def plain_words(row: EligibilityCheck | None) -> str:
    """One sentence for the patient about a check's result (in the page's language)."""
    if row is None:
        return str(_l("We have not checked this insurance yet."))
    if row.status == "active":
        return str(_l("Your insurance is active."))
    if row.status == "inactive":
        return str(_l("Your insurer says this coverage is not active. Check the details, or choose to pay "
                      "yourself; we will not bill this insurance."))
    if row.status == "error":
        words = [str(AAA_WORDS.get(str(e.get("code")), "")) for e in row.errors or []]
        words = [w for w in words if w]
        return (" ".join(words) or str(_l("Your insurer could not find this coverage."))) + " " + \
            str(_l("Check the member ID, the name and the birth date exactly as on the card."))
    return str(_l("We couldn't reach your insurer: we'll check again before your visit."))


# -- the day-before recheck --------------------------------------------------------------------------

RECHECK_RETRY_AFTER_SECONDS = 15 * 60      # an unreachable clearinghouse is asked again after this


def due_rechecks(session: Session, *, now: datetime, before, limit: int = 100) -> list[int]:
    """Confirmed hybrid appointments starting within ``before`` (ELIGIBILITY_RECHECK_BEFORE) whose
    patient has an active coverage and that have no answered 'day_before' check yet (an unanswered one,
    'unavailable', is retried after RECHECK_RETRY_AFTER_SECONDS, until the visit starts)."""
    from datetime import timedelta

    from sqlalchemy import and_, exists, or_

    from app.models import Appointment, AppointmentType

    answered = exists().where(EligibilityCheck.appointment_id == Appointment.id,
                              EligibilityCheck.trigger == "day_before",
                              or_(EligibilityCheck.status != "unavailable",
                                  EligibilityCheck.checked_at > now - timedelta(seconds=RECHECK_RETRY_AFTER_SECONDS)))
    insured = exists().where(Coverage.patient_id == Appointment.patient_id, Coverage.status == "active")
    rows = session.scalars(
        select(Appointment.id).join(AppointmentType, AppointmentType.id == Appointment.type_id)
        .where(Appointment.status == "confirmed", AppointmentType.payment_timing == "hybrid",
               and_(Appointment.starts_at > now, Appointment.starts_at <= now + before), insured, ~answered)
        .order_by(Appointment.starts_at).limit(limit))
    return list(rows)


def recheck_appointment(session: Session, appointment, *, now: datetime, actor: Actor) -> list[EligibilityCheck]:
    """Check each active coverage of the appointment's patient again for the visit's date (trigger
    'day_before', kept with the coverage and the appointment). Does nothing when it is not due."""
    from zoneinfo import ZoneInfo

    from app.services.clinic import current_clinic

    if appointment.status != "confirmed" or appointment.starts_at <= now:
        return []
    done = session.scalar(select(EligibilityCheck.id).where(
        EligibilityCheck.appointment_id == appointment.id, EligibilityCheck.trigger == "day_before",
        EligibilityCheck.status != "unavailable").limit(1))
    if done is not None:
        return []
    tz = ZoneInfo(current_clinic(session).timezone or "UTC")
    service_date = appointment.starts_at.astimezone(tz).date()
    coverages = session.scalars(select(Coverage).where(Coverage.patient_id == appointment.patient_id,
                                                       Coverage.status == "active").order_by(Coverage.rank))
    return [check(session, coverage, trigger="day_before", service_date=service_date,
                  appointment_id=appointment.id, now=now, actor=actor) for coverage in coverages]
