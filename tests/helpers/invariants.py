"""The invariant sweep of the fault suite: what must hold over the database and Stripe (the sandbox,
read with its secret key) once the portal's own sweep has finished what a fault interrupted.

``violations(...)`` returns a list of plain-English problems (empty: all is well);
``assert_invariants(...)`` waits (bounded) for that list to empty, since the poll, the webhook
jobs and the periodic sweep finish interrupted payments and messages asynchronously, then fails
naming what is still wrong.
"""
from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import psycopg
import stripe

BLOCKING = ("held", "confirmed", "checked_in")
PAID_VISIT = ("confirmed", "checked_in", "completed")
FINAL_MESSAGE = ("sent", "delivered", "failed", "canceled")


def _pg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def stripe_intents(sandbox) -> dict[str, dict]:
    http = stripe.RequestsClient()
    try:
        client = stripe.StripeClient(sandbox.secret_key, base_addresses={"api": sandbox.api_base},
                                     http_client=http, max_network_retries=0)
        intents = {pi.id: pi.to_dict() for pi in
                   client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()}
        charges = [c.to_dict() for c in client.v1.charges.list(params={"limit": 100}).auto_paging_iter()]
    finally:
        http.close()
    for intent in intents.values():
        intent["_charges"] = [c for c in charges if c.get("payment_intent") == intent["id"]]
    return intents


def violations(database_url: str, sandbox, *, smtp_messages=(), lease: timedelta = timedelta(seconds=40),
               message_grace: timedelta = timedelta(seconds=20)) -> list[str]:
    problems: list[str] = []
    now = datetime.now(timezone.utc)
    with psycopg.connect(_pg(database_url), autocommit=True, connect_timeout=5) as conn:
        # 1. no two blocking appointments of a provider overlap
        for a, b, provider in conn.execute(
                "SELECT a.id, b.id, a.provider_id FROM appointments a JOIN appointments b "
                "ON a.provider_id = b.provider_id AND a.id < b.id "
                "AND tstzrange(a.blocked_start, a.blocked_end) && tstzrange(b.blocked_start, b.blocked_end) "
                "WHERE a.status = ANY(%s) AND b.status = ANY(%s)", (list(BLOCKING), list(BLOCKING))):
            problems.append(f"appointments {a} and {b} of provider {provider} overlap")
        appointments = {row[0]: {"status": row[1], "timing": row[2]} for row in conn.execute(
            "SELECT a.id, a.status, t.payment_timing FROM appointments a JOIN appointment_types t "
            "ON t.id = a.type_id")}
        attempts = conn.execute(
            "SELECT pa.id, pa.stripe_payment_intent_id, pa.status, c.appointment_id, c.amount_refunded_cents "
            "FROM payment_attempts pa JOIN charges c ON c.id = pa.charge_id").fetchall()
        notifications = conn.execute(
            "SELECT id, channel, status, sent_at, scheduled_for, provider, provider_message_id, dedupe_key, "
            "appointment_id FROM notifications").fetchall()

    intents = stripe_intents(sandbox)
    owner = {intent_id: (aid, appt, refunded) for aid, intent_id, _, appt, refunded in attempts if intent_id}
    by_appointment: dict[int, list[str]] = {}
    for _, intent_id, _, appt, _ in attempts:
        if intent_id:
            by_appointment.setdefault(appt, []).append(intent_id)

    # 2. every confirmed deposit appointment has its money authorized or captured at Stripe
    for appt, row in appointments.items():
        if row["status"] in PAID_VISIT and row["timing"] == "deposit_to_book":
            states = [intents.get(i, {}).get("status") for i in by_appointment.get(appt, [])]
            if not any(s in ("requires_capture", "succeeded") for s in states):
                problems.append(f"appointment {appt} is {row['status']} without a payment at Stripe ({states})")

    for intent_id, intent in intents.items():
        appt = owner.get(intent_id)
        status = intent["status"]
        appt_status = appointments.get(appt[1], {}).get("status") if appt else None
        # 3. no double capture
        captured = [c for c in intent["_charges"] if c.get("captured")]
        succeeded = [c for c in intent["_charges"] if c.get("status") == "succeeded"]
        if status == "succeeded":
            if intent.get("amount_received") != intent.get("amount"):
                problems.append(f"{intent_id}: amount_received {intent.get('amount_received')} "
                                f"!= amount {intent.get('amount')}")
            if len(succeeded) != 1 or len(captured) != 1:
                problems.append(f"{intent_id}: {len(succeeded)} succeeded / {len(captured)} captured charges")
        elif captured:
            problems.append(f"{intent_id} is {status} with a captured charge")
        # 4. no authorization left for a released / canceled slot (nor one that no attempt owns)
        if status == "requires_capture" and appt_status != "held" and appt_status not in PAID_VISIT:
            problems.append(f"{intent_id}: open authorization for appointment {appt and appt[1]} "
                            f"({appt_status or 'no attempt owns it'})")
        if status == "requires_capture" and appt_status in PAID_VISIT:
            problems.append(f"{intent_id}: appointment {appt[1]} is {appt_status} but its money is not captured")
        # 5. captured money only for a visit that is on, or refunded
        if status == "succeeded":
            refunded = intent.get("_charges") and all(c.get("refunded") for c in captured)
            if appt_status not in PAID_VISIT and not refunded:
                problems.append(f"{intent_id}: money captured for appointment {appt and appt[1]} "
                                f"({appt_status or 'no attempt owns it'}) and not refunded")

    # 6. messages: none stuck in sending past its lease, none lost (due long ago, never sent),
    #    none sent twice (each Message-ID once at the fake SMTP server; each sent email is there)
    arrived = Counter(str(m["message"]["Message-ID"]) for m in smtp_messages)
    for mid, times in arrived.items():
        if times > 1:
            problems.append(f"email {mid} arrived {times} times")
    for (nid, channel, status, sent_at, scheduled_for, provider, provider_id, key, appt) in notifications:
        if status == "sending" and sent_at is not None and now - sent_at > lease:
            problems.append(f"notification {nid} ({key}) stuck in sending since {sent_at:%H:%M:%S}")
        if status == "queued" and scheduled_for is not None and now - scheduled_for > message_grace:
            problems.append(f"notification {nid} ({key}) due at {scheduled_for:%H:%M:%S} still queued")
        if status in ("sent", "delivered") and channel == "email" and provider == "smtp":
            if provider_id and arrived.get(provider_id, 0) != 1:
                problems.append(f"notification {nid} ({key}) is {status} but its email "
                                f"arrived {arrived.get(provider_id, 0)} times")
    return problems


def assert_invariants(database_url: str, sandbox, *, smtp=None, timeout: float = 90.0, recorder=None,
                      extra=None) -> float:
    """Wait (at most ``timeout`` s) until no invariant is broken; returns the seconds it took.
    ``extra``: a callable returning more problems (a scenario's own expectations)."""
    start = time.monotonic()
    problems: list[str] = []
    while True:
        try:
            problems = violations(database_url, sandbox, smtp_messages=list(smtp.messages) if smtp else ())
            if extra is not None:
                problems += extra()
        except (psycopg.OperationalError, stripe.StripeError) as error:   # a service still coming back
            problems = [f"could not read: {type(error).__name__}"]
        if not problems or time.monotonic() - start > timeout:
            break
        time.sleep(1.0)
    if recorder is not None:
        errors = recorder.server_errors()
        assert not errors, f"server errors seen by the driver: {errors[:20]}"
    assert not problems, "invariants still broken after {:.0f} s:\n  ".format(timeout) + "\n  ".join(problems)
    return time.monotonic() - start
