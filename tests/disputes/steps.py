"""Steps of the dispute tests: a visit booked and paid with the dispute card through the app's
deposit-to-book flow, the visit held and documented (so the evidence has things it must leave out),
the dispute read at Stripe, and the checks (the ledger balanced, nothing forbidden in what Stripe has)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select

from app.models import Appointment, AuditEvent, Dispute, LedgerEntry, LedgerTransaction, PaymentAttempt
from app.services import booking, codes, disputes, emr, fees, notifications
from app.services.audit import Actor
from tests.helpers.payments import MON_10_NY, settle, sign_in, start

DISPUTE_CARD = "4000000000000259"
LATER = 3600                       # seconds of sandbox time before Stripe's "later" (moved by hand)
TYPE_NAME = "Oncology follow-up"
SPECIALTY = "Medical Oncology"
NOTE_SUBJECTIVE = "Fatigue since the second cycle of chemotherapy; appetite poor."
NOTE_ASSESSMENT = "Tolerating adjuvant therapy for breast carcinoma."
DIAGNOSIS = "C50.911"
DIAGNOSIS_WORDS = "Malignant neoplasm"
CODE = "LOC-CONSULT"
REMINDER_TEXT = "Your visit tomorrow at 10:00"
SYSTEM = Actor.system("test")
WEBHOOK = Actor.system("webhook")


@dataclass
class Visit:
    appointment: Appointment
    attempt: PaymentAttempt

    @property
    def intent(self) -> str:
        return self.attempt.stripe_payment_intent_id


def book_and_pay(db, factories, clock, policy, browser_pay, *, card: str = DISPUTE_CARD, **type_fields) -> Visit:
    """A deposit-to-book hold of "Oncology follow-up" ($125.00, by video) paid in the browser's way
    (Stripe.js confirms with the publishable key) and settled by the app: confirmed and captured."""
    kind = factories.appointment_type(**{"name": TYPE_NAME, "price_cents": 12500, "payment_timing": "deposit_to_book",
                                         "modality": "telehealth", **type_fields})
    provider = factories.provider(types=[kind], specialty=factories.specialty(name=SPECIALTY),
                                  full_name="Dr. Ada Quill")
    patient = factories.patient(full_name="Pat Example")
    appointment = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id, type_id=kind.id,
                                    starts_at=MON_10_NY, policy=policy,
                                    actor=Actor("user", patient.user_id, "patient"))
    db.commit()
    attempt = start(db, appointment, clock)
    answer = browser_pay.pay(attempt, card)
    assert getattr(answer, "status", None) == "requires_capture", answer
    assert settle(db, attempt).state == "confirmed"
    db.expire_all()
    attempt = db.get(PaymentAttempt, attempt.id)
    assert attempt.status == "succeeded" and attempt.amount_captured_cents == 12500
    return Visit(db.get(Appointment, appointment.id), attempt)


def _priced_codes(db):
    from datetime import date

    from app.models import BillingCode

    codes.seed_shipped(db, SYSTEM)
    db.commit()

    code = db.scalar(select(BillingCode).where(BillingCode.code == CODE))
    fees.set_price(db, code_id=code.id, modifier="", price_cents=15000, effective_from=date(2026, 1, 1), actor=SYSTEM)
    db.commit()
    return code


def attend_and_sign(db, patient_client, visit: Visit, clock) -> None:
    """The visit happens: a message was sent about it; five minutes before the start the patient joins
    by video (from the test client's address: the audit row records an IP); the provider checks the
    visit in, writes the note (text, a diagnosis, a code) and signs it (completed)."""
    appointment = db.get(Appointment, visit.appointment.id)
    patient_user = appointment.patient.user
    note = notifications.queue(db, dedupe_key=f"test-reminder:{appointment.id}", template="reminder",
                               user=patient_user, appointment=appointment, scheduled_for=clock.now())
    note.status, note.sent_at, note.body = "sent", clock.now(), REMINDER_TEXT
    db.commit()
    clock.set(appointment.starts_at - timedelta(minutes=5))        # five minutes before: the room is open
    sign_in(patient_client, patient_user)
    joined = patient_client.get(f"/visits/{appointment.id}/join")
    assert joined.status_code in (302, 303), joined.status_code
    code = _priced_codes(db)
    appointment = db.get(Appointment, appointment.id)
    provider_user = appointment.provider.user
    actor = Actor("user", provider_user.id, "provider")
    enc = emr.open_encounter(db, appointment, actor=actor, user=provider_user, now=clock.now(), source="check_in")
    db.commit()
    clock.advance(timedelta(minutes=35))
    enc = emr.save_draft(db, enc.id, expected_version=enc.version, actor=actor, now=clock.now(),
                         fields={"subjective": NOTE_SUBJECTIVE, "assessment": NOTE_ASSESSMENT})
    emr.add_diagnosis(db, enc.id, DIAGNOSIS, actor=actor, now=clock.now())
    emr.add_line(db, enc.id, code_id=code.id, modifier="", units=1, pointers=[1], actor=actor, now=clock.now())
    db.commit()
    enc = emr.get(db, enc.id)
    emr.sign(db, enc.id, expected_version=enc.version, user=provider_user, actor=actor, now=clock.now())
    db.commit()
    db.expire_all()
    assert db.get(Appointment, appointment.id).status == "completed"


def stripe_disputes_of(stripe_admin, intent_id: str) -> list[dict]:
    page = stripe_admin.client.v1.disputes.list(params={"payment_intent": intent_id, "limit": 10})
    return [d.to_dict() for d in page.auto_paging_iter()]


def dispute_at_stripe(stripe_admin, intent_id: str) -> dict:
    [found] = stripe_disputes_of(stripe_admin, intent_id)
    return found


def ours(db, stripe_dispute_id: str) -> Dispute | None:
    db.expire_all()
    return db.scalar(select(Dispute).where(Dispute.stripe_dispute_id == stripe_dispute_id))


def opened(db, stripe_admin, visit: Visit, event_id: str) -> tuple[dict, Dispute]:
    """Stripe's dispute of the visit's payment applied as its ``charge.dispute.created`` webhook would apply
    it (``event_id``), committed: (Stripe's copy, our row)."""
    du = dispute_at_stripe(stripe_admin, visit.intent)
    disputes.apply_event(db, event_id=event_id, event_type="charge.dispute.created", object_id=du["id"],
                         created=du["created"], account=None, actor=WEBHOOK)
    db.commit()
    return du, ours(db, du["id"])


def dispute_audits(db, appointment_id: int) -> list[str]:
    return list(db.scalars(select(AuditEvent.action).where(AuditEvent.appointment_id == appointment_id,
                                                           AuditEvent.action.like("dispute.%"))
                           .order_by(AuditEvent.seq)))


def assert_ledger_balanced(db) -> None:
    """Every ledger transaction sums to zero (the database checks it at commit too)."""
    sums = db.execute(select(LedgerEntry.transaction_id, func.sum(LedgerEntry.amount_cents))
                      .group_by(LedgerEntry.transaction_id)).all()
    assert all(total == 0 for _, total in sums), sums


def ledger_of(db, stripe_dispute_id: str) -> dict[str, list[tuple[str, int, str | None]]]:
    """The dispute's ledger transactions: kind -> [(account, cents, balance transaction)]."""
    row = ours(db, stripe_dispute_id)
    txns = db.scalars(select(LedgerTransaction).where(or_(
        LedgerTransaction.stripe_object_id == stripe_dispute_id,
        LedgerTransaction.dispute_id == (row.id if row is not None else -1),
        LedgerTransaction.dedupe_key.like(f"%:{stripe_dispute_id}"))).order_by(LedgerTransaction.id)).all()
    return {t.kind: sorted((e.account, e.amount_cents, e.balance_transaction_id) for e in t.entries) for t in txns}


def leaks(text: str, forbidden: list[str]) -> list[str]:
    """The forbidden words found in ``text`` as whole words (case-insensitive): "C50" in a diagnosis
    is a leak, the same three characters inside a random hex digest (an idempotency key) are not."""
    return [word for word in forbidden
            if re.search(rf"(?<![0-9a-z]){re.escape(word.lower())}(?![0-9a-z])", text.lower())]


def forbidden_words(db, visit: Visit) -> list[str]:
    """What must never reach Stripe: the note's text, the diagnosis (code and words), the billing
    code, the type's name, the specialty, a message's text, an IP address the audit recorded."""
    ips = [ip for ip in db.scalars(select(AuditEvent.ip).where(AuditEvent.appointment_id == visit.appointment.id,
                                                               AuditEvent.ip.is_not(None)))]
    assert ips, "the visit's audit rows should record an IP address (the join), or the check proves nothing"
    return [NOTE_SUBJECTIVE, "chemotherapy", NOTE_ASSESSMENT, "carcinoma", DIAGNOSIS, "C50", DIAGNOSIS_WORDS,
            CODE, TYPE_NAME, "Oncology", SPECIALTY, REMINDER_TEXT, *set(ips)]
