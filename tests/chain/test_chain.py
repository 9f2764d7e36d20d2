"""The audit chain of a paid, partly refunded appointment: page, CSV and JSON list every step,
and the export equals what the database holds."""
import csv
import io
import json

from sqlalchemy import or_, select

from app.services.gateway import gateway
from app.models import AuditEvent, Charge, PaymentAttempt, Refund
from app.services import audit
from app.services.audit import Actor
from tests.helpers.payments import SUCCESS, fresh, settle, start
from tests.helpers.web import login

REASON = "Visit shortened: clinician ended early for a technical fault"


def paid_and_partly_refunded(db, held, clock, browser_pay, billing_user):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, "4000000000009995")                      # a failed confirmation first
    assert settle(db, attempt).state == "declined"
    browser_pay.pay(attempt, SUCCESS)
    assert settle(db, attempt).state == "confirmed"
    attempt = fresh(db, PaymentAttempt, attempt.id)
    assert attempt.status == "succeeded"
    charge = db.get(Charge, attempt.charge_id)
    refund = Refund(charge_id=charge.id, attempt_id=attempt.id, amount_cents=5000,
                    stripe_reason="requested_by_customer", clinical_reason=REASON, policy="billing",
                    authorized_by_id=billing_user.id, status="creating")
    db.add(refund)
    db.flush()
    result = gateway().create_refund(key=f"{refund.uuid}:create", payment_intent=attempt.stripe_payment_intent_id,
                                     amount=5000, reason="requested_by_customer",
                                     metadata={"refund_uuid": str(refund.uuid), "charge_id": str(charge.id)})
    refund.stripe_refund_id, refund.status = result.id, "succeeded"
    charge.amount_refunded_cents = 5000
    audit.record(db, actor=Actor("user", billing_user.id, "billing"), action="refund.created", reason=REASON,
                 patient_id=held.patient_id, appointment_id=held.id, payment_attempt_id=attempt.id,
                 stripe_object_id=result.id, authorized_by=billing_user.id,
                 details={"refund_id": refund.id, "amount_cents": 5000})
    db.commit()
    return attempt, refund


def expected_from_database(db, appointment_id):
    """What the database holds for the chain, read independently of the service."""
    attempts = list(db.scalars(select(PaymentAttempt).join(Charge).where(Charge.appointment_id == appointment_id)))
    intents = [a.stripe_payment_intent_id for a in attempts]
    refunds = {r.stripe_refund_id: r for r in db.scalars(select(Refund).join(Charge)
                                                         .where(Charge.appointment_id == appointment_id))}
    events = db.scalars(select(AuditEvent).where(
        or_(AuditEvent.appointment_id == appointment_id, AuditEvent.stripe_object_id.in_(intents)),
        AuditEvent.action.not_in(("audit.chain_viewed", "audit.chain_exported"))).order_by(AuditEvent.seq)).all()
    return [(e.seq, e.action, e.stripe_object_id,
             refunds[e.stripe_object_id].amount_cents if e.stripe_object_id in refunds else None)
            for e in events]


def test_chain_page_and_exports_list_every_step_of_a_paid_partly_refunded_appointment(
        app, db, client, held, clock, browser_pay, factories, queue):
    billing_user = factories.user("billing", full_name="Bea Biller")
    attempt, refund = paid_and_partly_refunded(db, held, clock, browser_pay, billing_user)
    intent = attempt.stripe_payment_intent_id
    assert login(client, billing_user.email).status_code == 303

    page = client.get(f"/billing/appointments/{held.id}/chain")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    actions = [a for a in ("patient.account", "slot.selected", "payment.attempted", "payment.declined",
                           "payment.succeeded", "booking.confirmed", "payment.captured", "refund.created",
                           "outcome.confirmed")]
    positions = [html.index(f'data-action="{a}"') for a in actions]
    assert positions == sorted(positions), "the page lists the steps in time order"
    for text in (intent, refund.stripe_refund_id, "insufficient_funds", REASON, "Bea Biller", "$125.00",
                 "$50.00", "net $75.00"):
        assert text in html

    csv_response = client.get(f"/billing/appointments/{held.id}/chain.csv")
    assert csv_response.status_code == 200 and csv_response.mimetype == "text/csv"
    assert "attachment" in csv_response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(csv_response.get_data(as_text=True))))
    json_response = client.get(f"/billing/appointments/{held.id}/chain.json")
    assert json_response.status_code == 200
    data = json.loads(json_response.get_data(as_text=True))
    assert data["captured_cents"] == 12500 and data["refunded_cents"] == 5000 and data["net_cents"] == 7500
    steps = data["steps"]

    # The two exports carry the same rows.
    assert [r["action"] for r in rows] == [s["action"] for s in steps]
    assert [r["stripe_id"] or None for r in rows] == [s["stripe_id"] for s in steps]
    assert [int(r["amount_cents"]) if r["amount_cents"] else None for r in rows] == [s["amount_cents"] for s in steps]

    # Patient first, outcome last; in between, exactly the audit rows the database holds, in order.
    assert steps[0]["stage"] == "patient" and steps[0]["actor"] == held.patient.user.full_name
    assert steps[-1]["action"] == "outcome.confirmed" and steps[-1]["amount_cents"] == 7500
    middle = [(s["audit_seq"], s["action"], s["stripe_id"], s["amount_cents"] if s["stage"] == "refund" else None)
              for s in steps[1:-1]]
    assert middle == expected_from_database(db, held.id)
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))

    by_action = {s["action"]: s for s in steps}
    assert by_action["payment.attempted"]["stripe_id"] == intent
    assert by_action["payment.declined"]["decline_code"] == "insufficient_funds"
    assert by_action["payment.captured"]["amount_cents"] == 12500
    assert by_action["slot.selected"]["actor"] == held.patient.user.full_name
    refund_step = by_action["refund.created"]
    assert refund_step["stripe_id"] == refund.stripe_refund_id and refund_step["amount_cents"] == 5000
    assert refund_step["reason"] == REASON and refund_step["authorized_by"] == "Bea Biller (billing)"
    assert refund_step["actor"] == "Bea Biller" and refund_step["actor_role"] == "billing"
    assert by_action["payment.captured"]["actor"] in ("system", "job", "webhook", "test")

    # Stripe agrees on the money.
    stripe_refund = gateway().find_refund(payment_intent=intent, metadata_key="refund_uuid",
                                          metadata_value=str(refund.uuid))
    assert stripe_refund.id == refund.stripe_refund_id and stripe_refund.amount == 5000

    # Opening the page and each export was itself audited, by this billing user.
    views = db.scalars(select(AuditEvent).where(AuditEvent.appointment_id == held.id,
                                                AuditEvent.action.in_(("audit.chain_viewed",
                                                                       "audit.chain_exported")))
                       .order_by(AuditEvent.seq)).all()
    assert [(v.action, v.details.get("format"), v.actor_id) for v in views] == [
        ("audit.chain_viewed", None, billing_user.id), ("audit.chain_exported", "csv", billing_user.id),
        ("audit.chain_exported", "json", billing_user.id)]


def test_only_billing_and_admin_open_the_chain(app, db, client, held, factories):
    for role, status in (("patient", 403), ("provider", 403), ("admin", 200)):
        browser = app.test_client()                 # a fresh browser per role (same isolated client class)
        user = factories.user(role)
        assert login(browser, user.email).status_code == 303
        for suffix in ("", ".csv", ".json"):
            assert browser.get(f"/billing/appointments/{held.id}/chain{suffix}").status_code == status
        if role == "admin":
            assert browser.get(f"/billing/appointments/{held.id + 999}/chain").status_code == 404
    viewers = db.scalars(select(AuditEvent.actor_role).where(AuditEvent.action.in_(
        ("audit.chain_viewed", "audit.chain_exported"))).order_by(AuditEvent.seq)).all()
    assert viewers == ["admin", "admin", "admin"], "a refused request records no view"
