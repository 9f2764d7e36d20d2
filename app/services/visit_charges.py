"""Post-visit charging: the signed encounter prices the visit and the saved card is charged
off-session; a failure is recovered (the patient's link, scheduled retries after soft declines
only) or ends in collections, a payment plan or a write-off.

The signed encounter is the only trigger: ``open_case`` runs in the signing transaction and asks
for the ``charge_visit`` job after the commit. Everything that moves money goes through the
payment spine (``settlement.settle``) like deposit-to-book, from a committed state; ``settle``
calls ``after_settle`` here for every visit-charge attempt it settles, whichever path (the charge
job, a retry, the patient's page, the webhook, the sweep), and that is what moves the case.

The case (``CollectionCase``, CASE_TRANSITIONS in app/models/postvisit.py):

    pending --charge--> charging            the charge job (``charge``); no saved card: straight to
                                            charging --fail--> recovering (kind no_card), no Stripe call;
                                            Stripe refusing the card outright (a 4xx, not a decline, e.g.
                                            detached): the same, from the charge or a retry (``_refused``)
    charging --succeed--> paid              after_settle: the attempt succeeded (receipt queued)
    charging --fail--> recovering           after_settle: a failed off-session confirmation; the patient
                                            gets the pay link (SMS + email); soft declines get a retry at
                                            first failure + VISIT_RETRY_SCHEDULE[n]; escalate_at = first
                                            failure + the schedule's last offset (set once)
    recovering --retry--> charging          ``retry`` (due, soft, retries left): the SAME PaymentIntent
                                            re-confirmed off-session, key ``<attempt-uuid>:confirm#<n>``
    recovering --succeed--> paid            the patient paid on the pay page (on-session)
    recovering --escalate--> collections    ``escalate``: escalate_at passed, no retry left
    collections --send_to_agency--> with_agency, --plan--> payment_plan, --write_off--> written_off
    collections / with_agency --succeed--> paid
    payment_plan --succeed--> paid          the last instalment (each an off-session attempt of the charge)
    payment_plan --default--> collections   an instalment failed
    recovering / collections / with_agency --write_off--> written_off   (reason + a billing/admin approver)

Money routines (``charge``, ``retry``, ``run_instalment``, ``payable_attempt``, ``after_settle``,
``run_due``) commit between their steps like ``settlement``; the collections actions billing
calls (``send_final_notice``, ``send_to_agency``, ``start_plan``, ``write_off``) do not commit.
"""
from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.integrations.stripe_gateway import GatewayError, GatewayUnavailable, Intent
from app.models import (AuditEvent, Charge, CollectionCase, Encounter, Notification, PaymentAttempt,
                        PaymentConsent, PaymentFailure, User)
from app.models.payment import FINAL_STATUSES
from app.services import DomainError, audit, notifications
from app.services.audit import Actor
from app.services.gateway import domain_errors, gateway
from app.services.links import LinkInvalid
from app.services.unit_of_work import request

log = logging.getLogger(__name__)

CHARGE_JOB = "charge_visit"          # unit-of-work request: app.jobs.visit_charges.charge_case(case_id)
DUE_JOB = "visit_case_due"           # unit-of-work request: app.jobs.visit_charges.case_due(case_id) at ``when``
LINK_PURPOSE = "visit_payment"
FAILED_TEMPLATE = "visit_payment_failed"
RECEIPT_TEMPLATE = "visit_payment_received"
FINAL_NOTICE_TEMPLATE = "visit_final_notice"
CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
# The charges a collections case follows: the post-visit visit charge, and the balance a hybrid visit
# owes after the insurer's answer (app/services/claims.py opens it with ``open_balance_case``).
CASE_PURPOSES = ("visit", "balance")

CASE_LABELS = {
    "pending": "Charge pending",
    "charging": "Charging the card on file",
    "paid": "Paid",
    "recovering": "Payment failed: waiting for the patient",
    "collections": "In collections",
    "with_agency": "Sent to a collection agency",
    "payment_plan": "On a payment plan",
    "written_off": "Written off",
}
FAILURE_LABELS = {
    "soft": "declined (temporary): retrying",
    "hard": "declined (card lost, stolen, expired or closed)",
    "authentication": "the bank asked the patient to confirm",
    "no_card": "no card on file",
}

# Card networks penalize retrying these: straight to the patient's link, no automatic retry.
HARD_DECLINES = frozenset({
    "lost_card", "stolen_card", "expired_card", "pickup_card", "restricted_card", "fraudulent",
    "incorrect_number", "invalid_account", "revocation_of_authorization", "revocation_of_all_authorizations",
    "stop_payment_order"})
HARD_ADVICE = frozenset({"do_not_try_again", "confirm_card_data"})
AUTHENTICATION = frozenset({"authentication_required", "payment_intent_authentication_failure"})


class CollectionsError(DomainError):
    """A move the case's state (or the rules) refuses; the message is for the person who asked."""


class NothingDue(CollectionsError):
    pass


class PaymentUnderWay(CollectionsError):
    pass


# -- small helpers ------------------------------------------------------------------------------

def _settings():
    return current_app.config["SETTINGS"]


def _now() -> datetime:
    return current_app.extensions["clock"].now()


def balance_due_cents(case: CollectionCase) -> int:
    """What the patient still owes on the visit (captured instalments and payments deducted)."""
    charge = case.charge
    return max(0, charge.amount_cents - charge.amount_captured_cents)


def classify(code: str | None, decline_code: str | None, advice_code: str | None) -> str:
    """soft (retry on the schedule) | hard (never retried) | authentication (the patient must confirm)."""
    if code in AUTHENTICATION or decline_code in AUTHENTICATION:
        return "authentication"
    if decline_code in HARD_DECLINES or code in HARD_DECLINES or advice_code in HARD_ADVICE:
        return "hard"
    return "soft"


def money(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def case_for_appointment(session: Session, appointment_id: int) -> CollectionCase | None:
    return session.scalar(select(CollectionCase).where(CollectionCase.appointment_id == appointment_id))


def _lock_case(session: Session, case_id: int) -> CollectionCase | None:
    return session.scalars(select(CollectionCase).where(CollectionCase.id == case_id).with_for_update()
                           .execution_options(populate_existing=True)).first()


def _open_attempt(session: Session, charge_id: int) -> PaymentAttempt | None:
    """The charge's one open attempt (the schema allows at most one), if any."""
    return session.scalars(select(PaymentAttempt).where(
        PaymentAttempt.charge_id == charge_id, PaymentAttempt.status.not_in(FINAL_STATUSES))
        .execution_options(populate_existing=True)).first()


def _audit(session: Session, case: CollectionCase, action: str, *, actor: Actor, attempt: PaymentAttempt | None = None,
           outcome: str = "success", reason: str | None = None, details: dict | None = None,
           authorized_by: int | None = None, at: datetime | None = None) -> None:
    audit.record(session, actor=actor, action=action, outcome=outcome, reason=reason,
                 patient_id=case.appointment.patient_id, appointment_id=case.appointment_id,
                 encounter_id=case.encounter_id, payment_attempt_id=attempt.id if attempt else None,
                 stripe_object_id=attempt.stripe_payment_intent_id if attempt else None,
                 authorized_by=authorized_by, at=at,
                 details={"case_id": case.id, "charge_id": case.charge_id, **(details or {})})


def _handled(session: Session, attempt_id: int, actions: tuple[str, ...], failure_id: int | None = None) -> bool:
    query = select(AuditEvent.seq).where(AuditEvent.payment_attempt_id == attempt_id, AuditEvent.action.in_(actions))
    if failure_id is not None:
        query = query.where(AuditEvent.details["failure_id"].astext == str(failure_id))
    return session.scalar(query.limit(1)) is not None


def _new_attempt(session: Session, case: CollectionCase, *, amount: int, save_card: bool) -> PaymentAttempt:
    charge = case.charge
    if charge.can("reopen"):                 # the last attempt was canceled: the charge is owed again
        charge.transition("reopen")
    number = (session.scalar(select(func.max(PaymentAttempt.number)).where(
        PaymentAttempt.charge_id == charge.id)) or 0) + 1
    attempt = PaymentAttempt(charge_id=charge.id, number=number, status="creating", amount_cents=amount,
                             currency=charge.currency, save_card=save_card)
    session.add(attempt)
    session.flush()
    return attempt


def _metadata(case: CollectionCase, attempt: PaymentAttempt) -> dict:
    """Only opaque ids go to Stripe: nothing clinical."""
    return {"attempt_uuid": str(attempt.uuid), "appointment_id": str(case.appointment_id),
            "charge_id": str(case.charge_id), "patient_id": str(case.appointment.patient_id),
            "case_id": str(case.id)}


def _description(case: CollectionCase) -> str:
    if case.charge.purpose == "balance":
        return f"Visit {case.appointment_id} balance"
    return f"Visit {case.appointment_id}"


def _schedule() -> tuple[timedelta, ...]:
    return tuple(_settings().VISIT_RETRY_SCHEDULE)


# -- the pay link (one-click, from SMS / email) ----------------------------------------------------
#
# A signed token naming the case, the patient's user, an expiry (the app's clock) and a random id
# (the audit rows name it). Not single-use: a declined try on the page must not spend it; it is
# void once the case is closed (paid, written off) or when it expires (VISIT_LINK_TTL). Opening it
# (GET) shows a page; only the patient's tap (POST) grants this browser that visit's payment.

@dataclass(frozen=True)
class PayLink:
    link_id: str
    case_id: int
    user_id: int
    expires_at: datetime


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(_settings().SECRET_KEY, salt=f"link:{LINK_PURPOSE}")


def issue_link(session: Session, case: CollectionCase, *, now: datetime) -> str:
    """A pay link's URL (audited ``link.issued``)."""
    user = case.appointment.patient.user
    expires = now + _settings().VISIT_LINK_TTL
    link_id = uuid.uuid4().hex
    token = _serializer().dumps({"l": link_id, "c": case.id, "u": user.id, "x": int(expires.timestamp())})
    audit.record(session, actor=Actor.system("links"), action="link.issued", subject_user_id=user.id,
                 appointment_id=case.appointment_id, patient_id=case.appointment.patient_id,
                 details={"purpose": LINK_PURPOSE, "link_id": link_id, "case_id": case.id,
                          "expires_at": expires.isoformat()})
    return f"{_settings().PUBLIC_BASE_URL.rstrip('/')}/pay/{token}"


def resolve_link(session: Session, token: str, *, now: datetime) -> tuple[PayLink, CollectionCase]:
    """The link and its case, if the token is genuine and unexpired; ``LinkInvalid`` otherwise."""
    try:
        data = _serializer().loads(token)
        link = PayLink(str(data["l"]), int(data["c"]), int(data["u"]),
                       datetime.fromtimestamp(int(data["x"]), timezone.utc))
    except (BadSignature, KeyError, TypeError, ValueError, OverflowError):
        raise LinkInvalid("tampered") from None
    case = session.get(CollectionCase, link.case_id)
    if case is None or case.appointment.patient.user_id != link.user_id:
        raise LinkInvalid("tampered")
    if link.expires_at <= now and case.is_open:
        raise LinkInvalid("expired")
    return link, case


def link_used(session: Session, link: PayLink, case: CollectionCase) -> None:
    audit.record(session, actor=Actor("link", link.user_id, "patient"), action="link.used",
                 subject_user_id=link.user_id, appointment_id=case.appointment_id,
                 patient_id=case.appointment.patient_id,
                 details={"purpose": LINK_PURPOSE, "link_id": link.link_id, "case_id": case.id})


# -- messages: links and amounts only -----------------------------------------------------------------

def _send(session: Session, case: CollectionCase, *, template: str, key: str, context: dict, now: datetime
          ) -> list[str]:
    """The message by SMS (when the patient's number is verified and not opted out) and by email,
    once per ``key``. Returns the channels queued."""
    user = case.appointment.patient.user
    channels = []
    addresses = []
    if notifications.sms_allowed(session, user):
        addresses.append(notifications.Address("sms", user.phone))
    if user.email:
        addresses.append(notifications.Address("email", user.email))
    for address in addresses:
        notifications.queue(session, dedupe_key=f"{key}:{address.channel}", template=template, user=user,
                            appointment=case.appointment, scheduled_for=now, context=context, address=address)
        channels.append(address.channel)
    return channels


def _send_link(session: Session, case: CollectionCase, *, key: str, now: datetime, actor: Actor,
               template: str = FAILED_TEMPLATE) -> None:
    exists = session.scalar(select(func.count()).select_from(Notification).where(
        Notification.dedupe_key.like(f"{key}:%")))
    if exists:
        return
    url = issue_link(session, case, now=now)
    channels = _send(session, case, template=template, key=key, now=now,
                     context={"link": url, "amount": money(balance_due_cents(case))})
    case.link_sent_at = now
    _audit(session, case, "visit_charge.link_sent", actor=actor,
           details={"channels": channels, "template": template, "message": key})


def statement_url(case: CollectionCase) -> str:
    return f"{_settings().PUBLIC_BASE_URL.rstrip('/')}/appointments/{case.appointment_id}/statement"


def _receipt(session: Session, case: CollectionCase, attempt: PaymentAttempt, *, now: datetime) -> None:
    _send(session, case, template=RECEIPT_TEMPLATE, key=f"visit_receipt:{attempt.id}", now=now,
          context={"amount": money(attempt.amount_captured_cents or attempt.amount_cents),
                   "link": statement_url(case)})


# -- charging: the job after the signing commit --------------------------------------------------------

def open_case(session: Session, encounter: Encounter, *, actor: Actor, now: datetime) -> CollectionCase | None:
    """In the signing transaction: the visit's charge (the signed lines' total) and its collections
    case, made once (a second call finds them); the charge job is asked for after the commit.
    None when the visit is not post-visit or prices to nothing."""
    appointment = encounter.appointment
    if appointment.payment_timing != "post_visit" or not encounter.total_cents:
        return None
    return _open(session, encounter, purpose="visit", amount_cents=encounter.total_cents, actor=actor)


def open_balance_case(session: Session, encounter: Encounter, *, amount_cents: int, actor: Actor,
                      now: datetime, details: dict | None = None) -> CollectionCase:
    """A hybrid visit's balance after the insurer's answer (app/services/claims.py, in the
    reconciliation's transaction): a Charge of purpose 'balance' and its collections case, charged
    off-session to the appointment's card by the same job, with the same retries, pay link and
    collections as a post-visit charge. Made once (a second call finds them)."""
    if amount_cents <= 0:
        raise ValueError("a balance case needs an amount")
    return _open(session, encounter, purpose="balance", amount_cents=amount_cents, actor=actor, details=details)


def _open(session: Session, encounter: Encounter, *, purpose: str, amount_cents: int, actor: Actor,
          details: dict | None = None) -> CollectionCase:
    appointment = encounter.appointment
    session.execute(pg_insert(Charge).values(
        appointment_id=appointment.id, purpose=purpose, amount_cents=amount_cents, currency="usd",
        status="pending", amount_captured_cents=0, amount_refunded_cents=0)
        .on_conflict_do_nothing(constraint="uq_charges_appointment_purpose"))
    charge = session.scalar(select(Charge).where(Charge.appointment_id == appointment.id, Charge.purpose == purpose))
    case = session.scalar(select(CollectionCase).where(CollectionCase.charge_id == charge.id))
    if case is not None:
        return case
    case = CollectionCase(charge_id=charge.id, encounter_id=encounter.id, appointment_id=appointment.id,
                          status="pending", retries_done=0, plan_paid=0, recovered=False)
    session.add(case)
    session.flush()
    extra = {"purpose": purpose} if purpose != "visit" else {}
    audit.record(session, actor=actor, action="visit_charge.opened", patient_id=appointment.patient_id,
                 appointment_id=appointment.id, encounter_id=encounter.id,
                 details={"charge_id": charge.id, "case_id": case.id, "amount_cents": charge.amount_cents,
                          **extra, **(details or {})})
    request(session, CHARGE_JOB, case.id)
    return case


def _card_for(case: CollectionCase) -> tuple[str | None, str | None]:
    """(payment method, Stripe customer) for an off-session charge: the card the booking relies on.
    A hybrid balance is charged off-session only with the patient's recorded consent to it (a deposit
    paid without our consent step has none): without it there is no card to use, and the patient's
    pay link takes the payment on-session instead."""
    appointment = case.appointment
    if case.charge.purpose == "balance" and not _balance_consented(case):
        return None, appointment.patient.stripe_customer_id
    return appointment.payment_method_id, appointment.patient.stripe_customer_id


def _balance_consented(case: CollectionCase) -> bool:
    from sqlalchemy.orm import object_session

    return object_session(case).scalar(select(PaymentConsent.id).where(
        PaymentConsent.appointment_id == case.appointment_id, PaymentConsent.kind == "hybrid_balance")
        .limit(1)) is not None


@domain_errors
def charge(session: Session, case_id: int, *, actor: Actor) -> str:
    """Charge a pending case's visit off-session with the appointment's saved card (money routine:
    commits). One PaymentIntent per attempt: a second call (a duplicated job) finds the case charging
    and only settles its attempt. From ``charging`` (a crash): a created attempt gets its intent (same
    key), an interrupted retry is confirmed again (same key), a settled one is applied."""
    case = _lock_case(session, case_id)
    if case is None or case.status not in ("pending", "charging"):
        session.rollback()
        return case.status if case is not None else "missing"
    now = _now()
    attempt = _open_attempt(session, case.charge_id)
    card, customer = _card_for(case)
    if case.status == "charging":
        if attempt is not None and attempt.stripe_payment_intent_id:
            return _resume(session, case, attempt, card=card, actor=actor)
        if attempt is None:
            last = session.scalars(select(PaymentAttempt).where(PaymentAttempt.charge_id == case.charge_id)
                                   .order_by(PaymentAttempt.number.desc()).limit(1)).first()
            if last is not None and last.status == "succeeded":
                session.commit()
                return _settle(session, last.id, actor=actor, source="charge")
    else:
        case.transition("charge")
    if not card or not customer:
        if attempt is not None and not attempt.stripe_payment_intent_id:
            attempt.mirror("canceled")
            attempt.canceled_at, attempt.cancellation_reason = now, "no card on file"
        _fail(session, case, kind="no_card", code="no_card", now=now, actor=actor, source="charge")
        session.commit()
        return "no_card"
    if attempt is None:
        attempt = _new_attempt(session, case, amount=balance_due_cents(case), save_card=False)
        _audit(session, case, "visit_charge.attempted", actor=actor, attempt=attempt,
               details={"attempt": attempt.number, "amount_cents": attempt.amount_cents, "off_session": True})
    session.commit()                         # the attempt's UUID is stored before Stripe hears of it
    return _create_and_settle(session, attempt.id, case_id=case.id, card=card, actor=actor, source="charge")


def _create_and_settle(session: Session, attempt_id: int, *, case_id: int, card: str, actor: Actor,
                       source: str) -> str:
    """Create (and confirm, off-session) the attempt's PaymentIntent under the attempt's row lock, store
    its id (commit), then settle it (which moves the case: after_settle)."""
    from app.services import payments

    attempt = session.get(PaymentAttempt, attempt_id, with_for_update=True, populate_existing=True)
    if attempt.stripe_payment_intent_id is None and not attempt.is_final:
        case = session.get(CollectionCase, case_id)
        appointment = case.appointment
        try:
            intent = gateway().create_offsession_intent(
                key=attempt.key("create"), amount=attempt.amount_cents, currency=attempt.currency,
                customer=appointment.patient.stripe_customer_id, payment_method=card,
                metadata=_metadata(case, attempt), description=_description(case))
            payments.check_intent(intent, attempt, appointment)
        except GatewayError as error:
            session.rollback()      # the attempt stays ``creating``: the sweep adopts its intent or gives it up
            if isinstance(error, GatewayUnavailable):
                raise
            return _refused(session, case_id, attempt_id, error, actor=actor, source=source)
        except Exception:
            session.rollback()
            raise
        attempt.stripe_payment_intent_id = intent.id
        attempt.client_secret = intent.client_secret
        if intent.status not in FINAL_STATUSES:
            attempt.mirror(intent.status)    # a success is applied (and counted) by settle, not here
        payments.record(session, attempt, appointment, actor=actor, action="payment.attempted",
                        details={"off_session": True, "source": source})
        session.commit()
    else:
        session.commit()
    return _settle(session, attempt_id, actor=actor, source=source)


def _settle(session: Session, attempt_id: int, *, actor: Actor, source: str, cancel_reason: str | None = None) -> str:
    from app.services import settlement

    return settlement.settle(session, attempt_id, source=source, actor=actor, cancel_reason=cancel_reason).state


def _resume(session: Session, case: CollectionCase, attempt: PaymentAttempt, *, card: str | None,
            actor: Actor) -> str:
    """A charging case whose attempt has its intent: if a retry was recorded but its confirmation
    never reached Stripe (the latest failure is already handled), confirm it again with the same key;
    then settle."""
    n = case.retries_done
    failure = _latest_failure(session, attempt.id)
    interrupted = (n > 0 and attempt.status == "requires_payment_method" and failure is not None
                   and _handled(session, attempt.id, ("visit_charge.failed",), failure.id))
    if interrupted and not card:
        # The card was removed after the retry committed: nothing to confirm off-session, and a case
        # left 'charging' would keep the patient's page from paying. It waits for the patient.
        _fail(session, case, kind="no_card", code="no_card", now=_now(), actor=actor, source="retry",
              attempt=attempt)
        session.commit()
        return "no_card"
    session.commit()
    if interrupted:
        return _confirm_and_settle(session, case.id, attempt, key=attempt.key(f"confirm#{n}"), card=card,
                                   actor=actor, source="charge")
    return _settle(session, attempt.id, actor=actor, source="charge")


def _confirm_and_settle(session: Session, case_id: int, attempt: PaymentAttempt, *, key: str, card: str,
                        actor: Actor, source: str) -> str:
    """Confirm the attempt's PaymentIntent again off-session (a retry; its key stored first), then settle."""
    try:
        gateway().confirm_offsession(attempt.stripe_payment_intent_id, key=key, payment_method=card)
    except GatewayUnavailable:
        raise
    except GatewayError as error:
        return _refused(session, case_id, attempt.id, error, actor=actor, source=source)
    return _settle(session, attempt.id, actor=actor, source=source)


def _refused(session: Session, case_id: int, attempt_id: int, error: GatewayError, *, actor: Actor,
             source: str) -> str:
    """Stripe refused the off-session request itself: not a decline, not an outage (e.g. the card was
    detached from the customer and can never be charged again; retrying the same request gets the same
    answer). What Stripe says of the intent is applied first (settle); a case still being charged then
    waits for the patient (kind no_card, the link) instead of staying 'charging' — which keeps the
    patient's page from paying — for every sweep to try again. Commits."""
    log.warning("case %s: Stripe refused the off-session charge of attempt %s (%s)", case_id, attempt_id, error)
    session.rollback()
    attempt = session.get(PaymentAttempt, attempt_id, populate_existing=True)
    if attempt.stripe_payment_intent_id:
        _settle(session, attempt_id, actor=actor, source=source)
    case = _lock_case(session, case_id)
    attempt = session.get(PaymentAttempt, attempt_id, populate_existing=True)
    if case is None or case.status not in ("charging", "payment_plan") or attempt.status not in (
            "creating", "requires_payment_method"):
        session.rollback()
        return case.status if case is not None else "missing"
    if attempt.status == "creating" and not attempt.stripe_payment_intent_id:
        attempt.mirror("canceled")
        attempt.canceled_at, attempt.cancellation_reason = _now(), "refused by Stripe"
    _fail(session, case, kind="no_card", code="card_refused", now=_now(), actor=actor, source=source,
          attempt=attempt)
    session.commit()
    return "no_card"


def _latest_failure(session: Session, attempt_id: int) -> PaymentFailure | None:
    return session.scalars(select(PaymentFailure).where(PaymentFailure.attempt_id == attempt_id)
                           .order_by(PaymentFailure.id.desc()).limit(1)).first()


# -- what a settled attempt means for its case ------------------------------------------------------

def after_settle(session: Session, attempt_id: int, *, actor: Actor, intent: Intent | None = None) -> str | None:
    """Move the visit's case from its attempt as ``settle`` committed it (commits): succeeded -> paid
    (or the next instalment); a new failed confirmation -> recovering / collections, the patient's link,
    the next retry or the escalation time. Safe to run twice (each success and each failure is applied
    once: its audit row says so). Returns the case's status."""
    attempt = session.get(PaymentAttempt, attempt_id, populate_existing=True)
    if attempt is None or attempt.charge.purpose not in CASE_PURPOSES:
        session.rollback()
        return None
    case = session.scalars(select(CollectionCase).where(CollectionCase.charge_id == attempt.charge_id)
                           .with_for_update().execution_options(populate_existing=True)).first()
    if case is None:
        session.rollback()
        return None
    now = _now()
    if attempt.status == "succeeded":
        if not _handled(session, attempt.id, ("visit_charge.paid", "collections.instalment")):
            _paid(session, case, attempt, now=now, actor=actor)
    elif attempt.status == "requires_payment_method":
        failure = _latest_failure(session, attempt.id)
        if failure is not None and not _handled(session, attempt.id, ("visit_charge.failed",), failure.id):
            error = intent.last_error if intent is not None and intent.id == attempt.stripe_payment_intent_id else None
            advice = error.advice_code if error is not None and error.charge == failure.stripe_charge_id else None
            kind = classify(failure.code, failure.decline_code, advice)
            _fail(session, case, kind=kind, code=failure.decline_code or failure.code or "declined", advice=advice,
                  attempt=attempt, failure_id=failure.id, now=now, actor=actor, source="settle")
    session.commit()
    return case.status


def _paid(session: Session, case: CollectionCase, attempt: PaymentAttempt, *, now: datetime, actor: Actor) -> None:
    balance = balance_due_cents(case)
    amount = attempt.amount_captured_cents
    if case.status == "payment_plan":
        case.plan_paid += 1
        _audit(session, case, "collections.instalment", actor=actor, attempt=attempt,
               details={"instalment": case.plan_paid, "of": case.plan_instalments, "amount_cents": amount,
                        "balance_cents": balance})
        if balance > 0:
            case.plan_next_at = now + _settings().PLAN_INTERVAL
            request(session, DUE_JOB, case.id, case.plan_next_at)
            _receipt(session, case, attempt, now=now)
            return
    if not case.is_open:
        # Captured after the case was closed (a write-off raced a payment): the money is recorded on
        # the attempt and the charge; billing sees it on the case (a refund is theirs to decide).
        log.warning("case %s: attempt %s succeeded after the case was %s", case.id, attempt.id, case.status)
        _audit(session, case, "visit_charge.paid", actor=actor, attempt=attempt, outcome="failure",
               details={"amount_cents": amount, "case_status": case.status, "late": True})
        return
    if balance > 0:          # part of the balance (not a plan): the case stays as it is
        _audit(session, case, "visit_charge.paid", actor=actor, attempt=attempt,
               details={"amount_cents": amount, "balance_cents": balance, "partial": True})
        _receipt(session, case, attempt, now=now)
        return
    was_failed = case.failure_kind is not None
    previous = case.status
    case.transition("succeed")
    case.recovered = was_failed
    case.resolved_at = now
    case.next_retry_at = None
    case.plan_next_at = None
    _audit(session, case, "visit_charge.paid", actor=actor, attempt=attempt,
           details={"amount_cents": amount, "total_cents": case.charge.amount_cents, "from": previous,
                    "recovered": was_failed, "attempt": attempt.number})
    _receipt(session, case, attempt, now=now)


def _fail(session: Session, case: CollectionCase, *, kind: str, code: str, now: datetime, actor: Actor, source: str,
          attempt: PaymentAttempt | None = None, failure_id: int | None = None, advice: str | None = None) -> None:
    """A failed confirmation (or no card). Off-session (charging, a plan's instalment): the case moves,
    the patient gets the link, and the next retry or the escalation is scheduled. On the patient's own
    page (recovering, collections, with_agency): recorded only — the page shows the decline."""
    details = {"kind": kind, "code": code, "advice_code": advice, "failure_id": failure_id, "source": source,
               "attempt": attempt.number if attempt else None}
    if case.status not in ("charging", "payment_plan"):
        _audit(session, case, "visit_charge.failed", actor=actor, attempt=attempt, outcome="failure",
               details={**details, "on_session": True})
        return
    schedule = _schedule()
    if case.status == "payment_plan":
        case.transition("default")
        case.plan_next_at = None
        _audit(session, case, "visit_charge.failed", actor=actor, attempt=attempt, outcome="failure",
               details={**details, "instalment": case.plan_paid + 1})
        _audit(session, case, "visit_charge.escalated", actor=actor, attempt=attempt,
               details={"from": "payment_plan", "reason": "an instalment failed"})
        case.failure_kind, case.failure_code = kind, code[:64]
        _send_link(session, case, key=f"visit_payment:{case.id}:{failure_id or 'no_card'}:plan{case.plan_paid}",
                   now=now, actor=actor)
        return
    case.transition("fail")
    case.failure_kind, case.failure_code = kind, code[:64]
    if case.escalate_at is None:
        case.escalate_at = now + schedule[-1]
    _audit(session, case, "visit_charge.failed", actor=actor, attempt=attempt, outcome="failure", details=details)
    if kind == "soft" and case.retries_done < len(schedule):
        first = case.escalate_at - schedule[-1]
        case.next_retry_at = max(now, first + schedule[case.retries_done])
        _audit(session, case, "visit_charge.retry_scheduled", actor=actor, attempt=attempt,
               details={"retry": case.retries_done + 1, "at": case.next_retry_at.isoformat()})
        request(session, DUE_JOB, case.id, case.next_retry_at)
    else:
        case.next_retry_at = None
        request(session, DUE_JOB, case.id, max(now, case.escalate_at))
    _send_link(session, case, key=f"visit_payment:{case.id}:{failure_id or 'no_card'}", now=now, actor=actor)


# -- retries, escalation, instalments: what is due ------------------------------------------------

@domain_errors
def retry(session: Session, case_id: int, *, actor: Actor) -> str:
    """A due automatic retry after a soft decline: the same PaymentIntent confirmed again off-session,
    key ``<attempt-uuid>:confirm#<n>`` (the case says charging and n before the call: commit)."""
    case = _lock_case(session, case_id)
    now = _now()
    if (case is None or case.status != "recovering" or case.failure_kind != "soft" or case.next_retry_at is None
            or case.next_retry_at > now or case.retries_done >= len(_schedule())):
        session.rollback()
        return "not_due"
    attempt = _open_attempt(session, case.charge_id)
    card, _ = _card_for(case)
    if (attempt is None or attempt.status not in CONFIRMABLE or not attempt.stripe_payment_intent_id
            or attempt.amount_cents != balance_due_cents(case) or not card):
        # The patient's page replaced the attempt, or the card is gone: nothing to retry off-session.
        case.next_retry_at = None
        _audit(session, case, "visit_charge.retry_scheduled", actor=actor, outcome="failure",
               details={"retry": case.retries_done + 1, "skipped": "no off-session attempt or card to retry"})
        request(session, DUE_JOB, case.id, max(now, case.escalate_at or now))
        session.commit()
        return "skipped"
    n = case.retries_done + 1
    case.transition("retry")
    case.retries_done = n
    case.next_retry_at = None
    key = attempt.key(f"confirm#{n}")
    _audit(session, case, "visit_charge.retried", actor=actor, attempt=attempt,
           details={"retry": n, "key": key.rsplit(":", 1)[-1]})
    session.commit()
    return _confirm_and_settle(session, case.id, attempt, key=key, card=card, actor=actor, source="retry")


def escalate(session: Session, case_id: int, *, actor: Actor) -> str:
    """Recovering, no retry left and escalate_at passed, unpaid: to the collections worklist (commits)."""
    case = _lock_case(session, case_id)
    now = _now()
    if case is None or case.status != "recovering" or case.escalate_at is None or case.escalate_at > now:
        session.rollback()
        return "not_due"
    if case.failure_kind == "soft" and case.retries_done < len(_schedule()) and case.next_retry_at is not None:
        session.rollback()
        return "not_due"
    case.transition("escalate")
    case.next_retry_at = None
    _audit(session, case, "visit_charge.escalated", actor=actor,
           details={"from": "recovering", "retries": case.retries_done, "kind": case.failure_kind,
                    "balance_cents": balance_due_cents(case)})
    session.commit()
    return case.status


escalate_due = escalate


@domain_errors
def run_instalment(session: Session, case_id: int, *, actor: Actor) -> str:
    """A payment plan's due instalment: a stale open attempt is settled away first, then a new attempt
    of min(instalment, balance) created and confirmed off-session (settle -> after_settle)."""
    from app.services import settlement

    for _ in range(2):
        case = _lock_case(session, case_id)
        now = _now()
        if case is None or case.status != "payment_plan" or case.plan_next_at is None or case.plan_next_at > now:
            session.rollback()
            return "not_due"
        attempt = _open_attempt(session, case.charge_id)
        if attempt is None:
            break
        if attempt.status == "creating" and not attempt.stripe_payment_intent_id:
            session.commit()
            settlement.reconcile_creating(session, attempt.id, actor=actor)
        else:
            session.commit()
            _settle(session, attempt.id, actor=actor, source="instalment", cancel_reason="replaced by an instalment")
    else:
        session.rollback()
        return "busy"
    balance = balance_due_cents(case)
    card, customer = _card_for(case)
    if not card:
        card = case.appointment.patient.default_payment_method_id
    if balance <= 0:
        session.rollback()
        return "paid"
    if not card or not customer:
        _fail(session, case, kind="no_card", code="no_card", now=now, actor=actor, source="instalment")
        session.commit()
        return "no_card"
    attempt = _new_attempt(session, case, amount=min(case.plan_instalment_cents or balance, balance), save_card=False)
    _audit(session, case, "visit_charge.attempted", actor=actor, attempt=attempt,
           details={"attempt": attempt.number, "amount_cents": attempt.amount_cents, "off_session": True,
                    "instalment": case.plan_paid + 1, "of": case.plan_instalments})
    session.commit()
    return _create_and_settle(session, attempt.id, case_id=case.id, card=card, actor=actor, source="instalment")


def run_due(session: Session, case_id: int, *, actor: Actor) -> str:
    """Whatever the case says is due now: the first charge, a retry, the escalation, an instalment, or
    a closed case's open attempt to cancel. Safe to run any number of times."""
    case = session.get(CollectionCase, case_id, populate_existing=True)
    if case is None:
        session.rollback()
        return "missing"
    now = _now()
    status = case.status
    if status in ("pending", "charging"):
        session.rollback()
        return charge(session, case_id, actor=actor)
    if status == "recovering":
        if case.failure_kind == "soft" and case.next_retry_at is not None and case.next_retry_at <= now:
            session.rollback()
            return retry(session, case_id, actor=actor)
        if case.escalate_at is not None and case.escalate_at <= now:
            session.rollback()
            return escalate(session, case_id, actor=actor)
    if status == "payment_plan" and case.plan_next_at is not None and case.plan_next_at <= now:
        session.rollback()
        return run_instalment(session, case_id, actor=actor)
    if status in ("written_off", "paid"):
        attempt = _open_attempt(session, case.charge_id)
        if attempt is not None:
            session.rollback()
            return cancel_open(session, case_id, actor=actor, reason=f"case {status}")
    session.rollback()
    return "nothing_due"


@domain_errors
def cancel_open(session: Session, case_id: int, *, actor: Actor, reason: str) -> str:
    """Cancel the case's open attempt's intent (through settle: a late success is still applied)."""
    from app.services import settlement

    case = session.get(CollectionCase, case_id)
    attempt = _open_attempt(session, case.charge_id) if case else None
    if attempt is None:
        session.rollback()
        return "none"
    session.commit()
    if attempt.status == "creating" and not attempt.stripe_payment_intent_id:
        settlement.reconcile_creating(session, attempt.id, actor=actor)
        attempt = _open_attempt(session, case.charge_id)
        session.commit()
        if attempt is None:
            return "canceled"
    return _settle(session, attempt.id, actor=actor, source="cancel", cancel_reason=reason)


def due_case_ids(session: Session, *, now: datetime, quiet: timedelta, limit: int = 200) -> list[int]:
    """What the database says is due, whatever happened to the queue: pending cases and charging ones
    left quiet (a lost or crashed charge job), due retries, escalations and instalments, and closed
    cases with an open attempt."""
    quiet_since = func.now() - quiet
    open_attempt = select(PaymentAttempt.id).where(PaymentAttempt.charge_id == CollectionCase.charge_id,
                                                   PaymentAttempt.status.not_in(FINAL_STATUSES)).exists()
    return list(session.scalars(select(CollectionCase.id).where(
        ((CollectionCase.status.in_(("pending", "charging"))) & (CollectionCase.updated_at < quiet_since))
        | ((CollectionCase.status == "recovering") & (CollectionCase.failure_kind == "soft")
           & (CollectionCase.next_retry_at <= now))
        | ((CollectionCase.status == "recovering") & (CollectionCase.escalate_at <= now)
           & CollectionCase.next_retry_at.is_(None))
        | ((CollectionCase.status == "payment_plan") & (CollectionCase.plan_next_at <= now))
        | ((CollectionCase.status.in_(("written_off", "paid"))) & open_attempt))
        .order_by(CollectionCase.id).limit(limit)))


# -- the patient's pay page ----------------------------------------------------------------------------

@domain_errors
def payable_attempt(session: Session, case: CollectionCase, *, patient, actor: Actor) -> PaymentAttempt:
    """The attempt the patient's page pays (money routine: commits): the case's open attempt when its
    intent can still be confirmed and is for the whole balance (the same PaymentIntent the off-session
    charge used, now also saving a new card for later: setup_future_usage=off_session); otherwise a
    stale open one is settled away and a new on-session attempt (automatic capture) made for the
    balance. Every open case pays its whole balance here (a patient on a plan may pay the rest at
    once). ``NothingDue`` / ``PaymentUnderWay`` / ``CollectionsError`` when there is nothing to pay."""
    from app.services import payments, settlement

    case_id = case.id
    for _ in range(2):
        case = _lock_case(session, case_id)
        if case is None or case.appointment.patient_id != patient.id:
            session.rollback()
            raise CollectionsError(_l("This is not your visit."))
        if case.status in ("pending", "charging"):
            session.rollback()
            raise PaymentUnderWay(_l("We are charging the card on file for this visit. Please check again in a minute."))
        balance = balance_due_cents(case)
        if not case.is_open or balance <= 0:
            session.rollback()
            raise NothingDue(_l("Nothing is due for this visit."))
        attempt = _open_attempt(session, case.charge_id)
        if attempt is None:
            break
        if attempt.stripe_payment_intent_id and attempt.status in CONFIRMABLE and attempt.amount_cents == balance:
            if not attempt.save_card:
                gateway().update_intent(attempt.stripe_payment_intent_id, key=attempt.key("save-card-1"),
                                        setup_future_usage="off_session")
                attempt.save_card = True
            session.commit()
            return attempt
        if attempt.status == "processing":
            session.rollback()
            raise PaymentUnderWay(_l("Your payment is being processed. Please check again in a minute."))
        session.commit()
        if attempt.status == "creating" and not attempt.stripe_payment_intent_id:
            settlement.reconcile_creating(session, attempt.id, actor=actor)
        else:
            _settle(session, attempt.id, actor=actor, source="browser", cancel_reason="replaced by a new payment")
    else:
        session.rollback()
        raise PaymentUnderWay(_l("Your payment is being processed. Please check again in a minute."))
    attempt = _new_attempt(session, case, amount=balance, save_card=True)
    _audit(session, case, "visit_charge.attempted", actor=actor, attempt=attempt,
           details={"attempt": attempt.number, "amount_cents": balance, "on_session": True})
    session.commit()
    attempt = session.get(PaymentAttempt, attempt.id, with_for_update=True, populate_existing=True)
    appointment = case.appointment
    gw = gateway()
    try:
        customer = payments.ensure_customer(session, gw, appointment.patient, key=attempt.key("customer"))
        intent = gw.create_intent(key=attempt.key("create"), amount=attempt.amount_cents, currency=attempt.currency,
                                  customer=customer, metadata=_metadata(case, attempt),
                                  description=_description(case), save_card=True, capture_method="automatic")
        payments.check_intent(intent, attempt, appointment)
    except Exception:
        session.rollback()
        raise
    attempt.stripe_payment_intent_id = intent.id
    attempt.client_secret = intent.client_secret
    if intent.status not in FINAL_STATUSES:
        attempt.mirror(intent.status)
    payments.record(session, attempt, appointment, actor=actor, action="payment.attempted",
                    details={"on_session": True, "source": "browser"})
    session.commit()
    return attempt


@domain_errors
def pay_saved(session: Session, attempt: PaymentAttempt, *, patient, payment_method: str, return_url: str,
              actor: Actor) -> Intent:
    """Confirm the payable attempt's PaymentIntent on-session with one of the patient's saved cards
    (3-D Secure may be asked: the page handles it). The caller commits, then settles."""
    from app.services import cards

    attempt = session.get(PaymentAttempt, attempt.id, with_for_update=True, populate_existing=True)
    appointment = attempt.charge.appointment
    if attempt.charge.purpose not in CASE_PURPOSES or appointment.patient_id != patient.id:
        raise CollectionsError(_l("This is not your visit."))
    if attempt.is_final or attempt.status not in CONFIRMABLE or not attempt.stripe_payment_intent_id:
        raise PaymentUnderWay(_l("This payment is already under way. Please reload the page."))
    gw = gateway()
    card = next((c for c in cards.list_cards(gw, patient) if c.id == payment_method), None)
    if card is None:
        raise cards.NotYourCard()
    key = cards.confirm_key(session, attempt, card.id)
    intent = gw.confirm_intent(attempt.stripe_payment_intent_id, key=key, payment_method=card.id,
                               return_url=return_url)
    audit.record(session, actor=actor, action=cards.CONFIRM_ACTION, patient_id=patient.id,
                 appointment_id=appointment.id, payment_attempt_id=attempt.id,
                 stripe_object_id=attempt.stripe_payment_intent_id,
                 details={"payment_method": card.id, "brand": card.brand, "last4": card.last4,
                          "status": intent.status, "key": key.rsplit(":", 1)[-1]})
    return intent


def current_attempt(session: Session, case: CollectionCase) -> PaymentAttempt | None:
    """The case's latest attempt (the one the page settles)."""
    return session.scalars(select(PaymentAttempt).where(PaymentAttempt.charge_id == case.charge_id)
                           .order_by(PaymentAttempt.number.desc()).limit(1)).first()


# -- collections: billing's moves (no commit; the view commits) -----------------------------------------

def _move(case: CollectionCase, action: str, refused: str) -> str:
    if not case.can(action):
        raise CollectionsError(refused.format(status=CASE_LABELS.get(case.status, case.status).lower()))
    previous = case.status
    case.transition(action)
    return previous


def send_final_notice(session: Session, case: CollectionCase, *, actor: Actor, now: datetime) -> None:
    """A last message with the pay link before the agency (once)."""
    if case.status not in ("collections",):
        raise CollectionsError("A final notice is sent from the collections worklist only.")
    if case.final_notice_at is not None:
        raise CollectionsError("The final notice was already sent.")
    case.final_notice_at = now
    _send_link(session, case, key=f"visit_final_notice:{case.id}", now=now, actor=actor,
               template=FINAL_NOTICE_TEMPLATE)
    _audit(session, case, "collections.final_notice", actor=actor, details={"balance_cents": balance_due_cents(case)})


def send_to_agency(session: Session, case: CollectionCase, *, actor: Actor, now: datetime) -> None:
    _move(case, "send_to_agency", "This case cannot go to an agency: it is {status}.")
    case.agency_at = now
    _audit(session, case, "collections.sent_to_agency", actor=actor, details={"balance_cents": balance_due_cents(case)})


MIN_INSTALMENT_CENTS = 50          # Stripe's smallest charge in USD


def start_plan(session: Session, case: CollectionCase, *, instalments: int, actor: Actor, now: datetime) -> None:
    """A fixed number of monthly off-session charges of the saved card: each ceil(balance / n), the last
    the remainder; the first is due now. The patient's consent at booking covers plan instalments
    (its PaymentConsent row is named in the audit row; no new consent is invented here)."""
    if not isinstance(instalments, int) or not 2 <= instalments <= 24:
        raise CollectionsError("A payment plan has 2 to 24 instalments.")
    balance = balance_due_cents(case)
    each = math.ceil(balance / instalments) if balance else 0
    if each < MIN_INSTALMENT_CENTS or balance - each * (instalments - 1) < MIN_INSTALMENT_CENTS:
        raise CollectionsError("The balance is too small for that many instalments.")
    _move(case, "plan", "A payment plan starts from the collections worklist; this case is {status}.")
    case.plan_instalments = instalments
    case.plan_instalment_cents = each
    case.plan_paid = 0
    case.plan_next_at = now
    consent = session.scalar(select(PaymentConsent.id).where(PaymentConsent.appointment_id == case.appointment_id)
                             .order_by(PaymentConsent.id.desc()).limit(1))
    _audit(session, case, "collections.plan_started", actor=actor,
           details={"instalments": instalments, "instalment_cents": each,
                    "last_cents": balance - each * (instalments - 1), "balance_cents": balance,
                    "interval_seconds": int(_settings().PLAN_INTERVAL.total_seconds()), "consent_id": consent})
    request(session, DUE_JOB, case.id, now)


def write_off(session: Session, case: CollectionCase, *, reason: str, approver: User, actor: Actor,
              now: datetime) -> None:
    """Close the case unpaid, with the reason and the approving billing/admin user (audited with
    ``authorized_by``); any open attempt's intent is canceled after the commit (``run_due``)."""
    reason = (reason or "").strip()
    if not reason:
        raise CollectionsError("Say why the balance is written off.")
    if approver is None or approver.role not in ("billing", "admin"):
        raise CollectionsError("A write-off must be approved by billing or an administrator.")
    previous = _move(case, "write_off", "This case cannot be written off: it is {status}.")
    case.written_off_reason = reason[:2000]
    case.written_off_by_id = approver.id
    case.resolved_at = now
    case.next_retry_at = None
    case.plan_next_at = None
    _audit(session, case, "collections.written_off", actor=actor, reason=reason[:2000], authorized_by=approver.id,
           details={"from": previous, "balance_cents": balance_due_cents(case), "approver_role": approver.role})
    request(session, DUE_JOB, case.id, now)
