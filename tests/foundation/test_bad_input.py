"""Bad input never gives a 500: each input the fuzzing of issue 12 found (NUL bytes, ids and numbers
beyond PostgreSQL's integer, dates far out, an oversized X-Request-Id, signed webhook bodies that
are no event) gets a 4xx with a message a person can act on, and changes nothing."""
from __future__ import annotations

import json
import time

import pytest
from psycopg import sql
from sqlalchemy import select

from app.input_guard import NOT_ALLOWED
from app.models import AuditEvent
from devtools.stripe_sandbox.webhooks import sign
from tests.helpers.payments import MON_10_NY, paid_appointment, stored_events
from tests.helpers.web import csrf_from, login

HUGE = "99999999999999999999"
JUST_OVER = "2147483648"             # PostgreSQL integer max + 1
# What a bad request may leave behind: an access refused (someone else's record), nothing else; a
# refusal page shows no record, so it is no PHI view either.
READS = {"access.denied"}


# -- how "nothing changed" is measured --------------------------------------------------------

def row_counts(raw_conn) -> dict[str, int]:
    tables = [r[0] for r in raw_conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")]
    return {t: raw_conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
            for t in tables}


class Unchanged:
    """Snapshot the row counts (and the audit trail's tail); ``check()`` asserts only reads were added."""

    def __init__(self, db, raw_conn):
        self.db, self.raw_conn = db, raw_conn
        self.take()

    def take(self):
        self.before = row_counts(self.raw_conn)
        self.last_seq = self.db.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0

    def check(self):
        after = row_counts(self.raw_conn)
        changed = {t: (self.before.get(t), n) for t, n in after.items()
                   if self.before.get(t) != n and t not in ("audit_events", "audit_links")}
        assert changed == {}, f"bad input changed rows: {changed}"
        self.db.expire_all()
        added = set(self.db.scalars(select(AuditEvent.action).where(AuditEvent.seq > self.last_seq)))
        assert added <= READS, f"bad input wrote audit events {added - READS}"
        self.take()


@pytest.fixture
def unchanged(db, raw_conn):
    return lambda: Unchanged(db, raw_conn)


def assert_refused(response, *messages, status=(400, 404, 422)):
    body = response.get_data(as_text=True)
    assert response.status_code in (status if isinstance(status, tuple) else (status,)), (response.status_code,
                                                                                          body[:500])
    for message in messages:
        assert message in body, f"{message!r} not in the answer: {body[:800]}"


# -- a small clinic: a patient with a held visit, its provider ----------------------------------

@pytest.fixture
def clinic(db, factories, clock, policy, client):
    from app.services import booking
    from app.services.audit import Actor

    visit = factories.appointment_type(name="Video consult", price_cents=12500, payment_timing="deposit_to_book")
    provider = factories.provider(types=[visit])
    patient = factories.patient()
    held = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id, type_id=visit.id,
                             starts_at=MON_10_NY, policy=policy, actor=Actor("user", patient.user_id, "patient"))
    db.commit()
    return dict(visit=visit, provider=provider, patient=patient, held=held)


def as_patient(client, clinic):
    assert login(client, clinic["patient"].user.email).status_code == 303
    return csrf_from(client.get("/book").get_data(as_text=True))


# -- NUL bytes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "/book?modality=tele%00health",                   # a query value
    "/book?type%00_id=1",                             # a query key
    "/book/providers/{provider}?from=2026-12-08%00",
    "/r/abc%00def",                                   # the path itself (a one-click link token)
])
def test_nul_in_a_query_string_or_path_is_400(client, clinic, unchanged, url):
    as_patient(client, clinic)
    snapshot = unchanged()
    answer = client.get(url.format(provider=clinic["provider"].id))
    assert_refused(answer, NOT_ALLOWED, status=400)
    snapshot.check()


def test_nul_in_a_password_reset_path_is_400(client, db, unchanged):
    snapshot = unchanged()
    assert_refused(client.get("/password/reset/tok%00en"), NOT_ALLOWED, status=400)
    snapshot.check()


def test_nul_in_sign_in_and_sign_up_forms_is_400(client, db, unchanged):
    snapshot = unchanged()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    answer = client.post("/login", data={"email": "someone\x00@example.test", "password": "x" * 12,
                                         "csrf_token": token})
    assert_refused(answer, NOT_ALLOWED, status=400)
    answer = client.post("/signup", data={"email\x00": "a@example.test", "csrf_token": token})
    assert_refused(answer, NOT_ALLOWED, status=400)
    snapshot.check()


def test_nul_in_a_cancel_reason_is_400_and_the_visit_is_untouched(client, db, clinic, unchanged):
    token = as_patient(client, clinic)
    snapshot = unchanged()
    answer = client.post(f"/appointments/{clinic['held'].id}/cancel",
                         data={"reason": "can't \x00 come", "csrf_token": token})
    assert_refused(answer, NOT_ALLOWED, status=400)
    snapshot.check()
    db.refresh(clinic["held"])
    assert clinic["held"].status == "held"


def test_the_stripe_webhook_body_is_not_the_guards(client, db, sandbox):
    """A NUL in the webhook's JSON is the view's to refuse: it answers as the webhook does."""
    body = b'{"id": "evt_x\\u0000"}'
    answer = client.post("/webhooks/stripe", data=body, headers={
        "Content-Type": "application/json", "Stripe-Signature": sign(body, sandbox.webhook_secret, int(time.time()))})
    assert answer.status_code == 400 and answer.json == {"error": "not an event"}


# -- ids and numbers beyond PostgreSQL's integer --------------------------------------------------

@pytest.mark.parametrize("method,url", [
    ("GET", f"/book/providers/{HUGE}"),
    ("POST", f"/book/providers/{HUGE}/holds"),
    ("GET", f"/appointments/{JUST_OVER}"),
    ("GET", f"/appointments/{HUGE}.ics"),
    ("POST", f"/appointments/{HUGE}/reschedule"),
    ("GET", f"/checkout/{JUST_OVER}"),
    ("GET", f"/book/holds/{'9' * 5000}"),
])
def test_an_id_beyond_the_integer_range_in_a_path_is_404(client, clinic, unchanged, method, url):
    token = as_patient(client, clinic)
    snapshot = unchanged()
    answer = client.open(url, method=method, data={"csrf_token": token} if method == "POST" else None)
    assert_refused(answer, "Page not found", status=404)
    snapshot.check()


@pytest.mark.parametrize("url,message", [
    ("/book?type_id=99999999999", "Type id is out of range."),
    (f"/book?specialty_id={HUGE}", "Specialty id is too large."),
    ("/book?type_id=-5", "Type id is out of range."),
    ("/book/providers/{provider}?type_id=" + JUST_OVER, "Type id is out of range."),
])
def test_a_number_beyond_the_integer_range_in_a_query_string_is_400(client, clinic, unchanged, url, message):
    as_patient(client, clinic)
    snapshot = unchanged()
    assert_refused(client.get(url.format(provider=clinic["provider"].id)), message, status=400)
    snapshot.check()


def test_a_type_id_beyond_the_integer_range_in_the_hold_form_is_400(client, clinic, unchanged):
    token = as_patient(client, clinic)
    snapshot = unchanged()
    answer = client.post(f"/book/providers/{clinic['provider'].id}/holds",
                         data={"type_id": JUST_OVER, "starts_at": "2026-12-08T15:00:00+00:00", "csrf_token": token})
    assert_refused(answer, "Type id is out of range.", status=400)
    snapshot.check()


def test_staff_ids_beyond_the_integer_range(client, db, factories, login_as, unchanged):
    login_as("admin")
    snapshot = unchanged()
    assert_refused(client.get(f"/staff/day?provider_id={HUGE}"), "Page not found", status=404)
    assert_refused(client.get(f"/staff/types/{JUST_OVER}"), "Page not found", status=404)
    assert_refused(client.get(f"/billing/payments/{HUGE}"), "Page not found", status=404)
    snapshot.check()


def test_visit_type_numbers_beyond_what_a_schedule_can_hold_are_422(client, db, forms, login_as, unchanged):
    login_as("admin")
    snapshot = unchanged()
    values = dict(name="Long", duration_minutes="30", buffer_before_minutes="0", buffer_after_minutes="0",
                  price="125", payment_timing="deposit_to_book", modality="telehealth", min_notice_minutes="60",
                  horizon_days="30", cancellation_window_hours="24", slot_interval_minutes="")
    for field, value, message in (("duration_minutes", JUST_OVER, "Enter 1,440 or less."),
                                  ("horizon_days", "9999999999", "Enter 3,650 or less."),
                                  ("price", HUGE, "Enter a price in dollars")):
        answer = forms.post("/staff/types/new", {**values, field: value})
        assert_refused(answer, message, status=422)
    snapshot.check()


def test_a_refund_amount_beyond_range_is_422(client, db, factories, clock, policy, sandbox, login_as, unchanged):
    from app.models import Charge

    appointment = paid_appointment(db, factories, clock, policy, sandbox, starts_at=MON_10_NY)
    charge = db.scalar(select(Charge).where(Charge.appointment_id == appointment.id))
    login_as("billing")
    page = f"/billing/payments/{charge.id}"
    token = csrf_from(client.get(page).get_data(as_text=True))     # the page itself is a PHI view
    snapshot = unchanged()
    for amount in (HUGE, "21474836.48", "-5"):
        answer = client.post(f"{page}/refunds", data={"amount": amount, "stripe_reason": "requested_by_customer",
                                                      "clinical_reason": "Visit ended early", "csrf_token": token})
        assert_refused(answer, "Enter an amount in dollars", status=422)
    snapshot.check()


# -- dates far out ------------------------------------------------------------------------------

OUT_OF_RANGE = "is out of range: choose a date between 1900 and 2200."


@pytest.mark.parametrize("value,message", [
    ("9999-12-31", OUT_OF_RANGE), ("0001-01-01", OUT_OF_RANGE), ("10000-01-01", "Dates look like 2026-12-31."),
    ("2026-02-30", "Dates look like 2026-12-31."), ("garbage", "Dates look like 2026-12-31."),
])
@pytest.mark.parametrize("url", ["/book?date={value}", "/book/providers/{provider}?from={value}"])
def test_a_date_far_out_in_booking_search_is_400(client, clinic, unchanged, url, value, message):
    as_patient(client, clinic)
    snapshot = unchanged()
    assert_refused(client.get(url.format(provider=clinic["provider"].id, value=value)), message, status=400)
    snapshot.check()


@pytest.mark.parametrize("starts_at", ["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+05:00",
                                       "9999-12-31T23:00:00-12:00", "2026-02-30T10:00:00+00:00", ""])
def test_a_hold_or_reschedule_at_a_time_far_out_is_400(client, db, clinic, unchanged, starts_at):
    token = as_patient(client, clinic)
    snapshot = unchanged()
    answer = client.post(f"/book/providers/{clinic['provider'].id}/holds",
                         data={"type_id": clinic["visit"].id, "starts_at": starts_at, "csrf_token": token})
    assert_refused(answer, "That time", status=400)
    answer = client.post(f"/appointments/{clinic['held'].id}/reschedule",
                         data={"starts_at": starts_at, "csrf_token": token})
    assert_refused(answer, "That time", status=400)
    snapshot.check()
    db.refresh(clinic["held"])
    assert clinic["held"].starts_at == MON_10_NY


@pytest.mark.parametrize("view", ["day", "week"])
@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "0001-01-03"])
def test_a_staff_day_or_week_far_out_is_400(client, db, factories, login_as, unchanged, view, value):
    login_as("billing")
    snapshot = unchanged()
    assert_refused(client.get(f"/staff/{view}?date={value}"), OUT_OF_RANGE, status=400)
    snapshot.check()


def test_time_off_far_out_is_422(client, db, factories, forms, unchanged):
    provider = factories.provider()
    assert login(client, provider.user.email).status_code == 303
    snapshot = unchanged()
    page = f"/staff/providers/{provider.id}/availability"
    for starts, ends in (("9999-12-31T10:00", "9999-12-31T11:00"), ("0001-01-01T10:00", "0001-01-01T11:00")):
        answer = forms.post(f"/staff/providers/{provider.id}/exceptions",
                            {"starts_local": starts, "ends_local": ends, "reason": "vacation", "note": ""}, page=page)
        assert_refused(answer, "between 1900 and 2200", status=422)
    snapshot.check()


# -- X-Request-Id -------------------------------------------------------------------------------

@pytest.mark.parametrize("given", ["r" * 65, "abc def", "<script>", "id\u00e9", "a;b=c"])
def test_an_unusable_request_id_is_replaced_by_a_fresh_one(client, db, clinic, given):
    token = as_patient(client, clinic)
    answer = client.post(f"/appointments/{clinic['held'].id}/cancel",
                         data={"reason": "Cannot make it", "csrf_token": token}, headers={"X-Request-Id": given})
    assert answer.status_code == 303
    echoed = answer.headers["X-Request-Id"]
    assert echoed != given and 1 <= len(echoed) <= 64 and echoed.isalnum()
    db.expire_all()
    stored = db.scalars(select(AuditEvent.request_id).where(AuditEvent.action == "booking.canceled")).all()
    assert stored == [echoed]


def test_a_plain_request_id_is_kept(client, db):
    given = "req-2026.12_07-" + "a" * 49
    assert len(given) == 64
    answer = client.get("/login", headers={"X-Request-Id": given})
    assert answer.status_code == 200 and answer.headers["X-Request-Id"] == given


def test_a_request_refused_for_a_nul_still_carries_a_request_id(client, db):
    answer = client.get("/login?next=%00", headers={"X-Request-Id": "x" * 100})
    assert answer.status_code == 400 and 1 <= len(answer.headers["X-Request-Id"]) <= 64


# -- signed webhook bodies that are no event ------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"5", b"[]", b"null", b'{"id": {"nested": "evt_x"}}', json.dumps({"id": "e" * 400}).encode(),
    b'{"id": ["evt_x"]}', b"true", b'""',
], ids=lambda body: repr(body[:30]))
def test_a_signed_webhook_body_that_is_no_event_object_is_400(client, db, sandbox, body):
    headers = {"Content-Type": "application/json",
               "Stripe-Signature": sign(body, sandbox.webhook_secret, int(time.time()))}
    answer = client.post("/webhooks/stripe", data=body, headers=headers)
    assert answer.status_code == 400 and answer.json == {"error": "not an event"}
    assert stored_events(db) == 0
