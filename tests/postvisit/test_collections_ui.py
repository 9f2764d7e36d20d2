"""Billing's collections worklist (/billing/collections): the open cases with why they failed and
the retries; each move (final notice, agency, payment plan, write-off) is its own POST that moves
the case, is audited, and answers htmx with the case's card; a refused move shows the plain
message (409), a malformed form a 4xx, never a 5xx; the write-off needs a reason and a recent
second factor, and records the approver. The provider's day view and billing's payments list say
where each post-visit visit stands."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.models import AuditEvent, CollectionCase
from tests.helpers.web import csrf_from, login
from tests.postvisit.test_statements import SERVICE_AT, TOTAL, signed_visit

HTMX = {"HX-Request": "true"}


@pytest.fixture
def biller(client, factories, clock, queue):
    user = factories.user("billing", full_name="Bea Biller")
    assert login(client, user.email).status_code == 303
    return user


def token(client) -> str:
    return csrf_from(client.get("/billing/collections?show=all").get_data(as_text=True))


def case_of(db, visit) -> CollectionCase:
    db.expire_all()
    return db.get(CollectionCase, visit.case.id)


def card(html: str, case_id: int) -> str:
    match = re.search(rf'<article id="case-{case_id}".*?</article>', html, re.S)
    assert match, f"case {case_id} is not on the page"
    return match.group(0)


def test_the_worklist_lists_open_cases_with_why_and_filters(db, client, factories, biller):
    recovering = signed_visit(db, factories, status="recovering", retries_done=2,
                              next_retry_at=SERVICE_AT + timedelta(days=7))
    in_collections = signed_visit(db, factories, status="collections", failure_kind="hard",
                                  failure_code="expired_card")
    paid = signed_visit(db, factories, status="paid", captured=TOTAL)
    written_off = signed_visit(db, factories, status="written_off", written_off_reason="Hardship",
                               written_off_by_id=biller.id)

    page = client.get("/billing/collections")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    first = card(html, recovering.case.id)
    assert "insufficient funds" in first and "Retries done: 2" in first and "next retry" in first
    assert recovering.appointment.patient.user.full_name in first and f"Patient {recovering.appointment.patient_id}" in first
    assert "$1,284.50" in first
    second = card(html, in_collections.case.id)
    assert "the card has expired" in second and "Final notice: not sent" in second
    assert f'id="case-{paid.case.id}"' not in html and f'id="case-{written_off.case.id}"' not in html

    only_failed = client.get("/billing/collections?show=failed").get_data(as_text=True)
    assert f'id="case-{recovering.case.id}"' in only_failed and f'id="case-{in_collections.case.id}"' not in only_failed
    off = client.get("/billing/collections?show=written_off").get_data(as_text=True)
    assert "Hardship" in card(off, written_off.case.id) and "approved by Bea Biller" in off
    everything = client.get("/billing/collections?show=all").get_data(as_text=True)
    assert all(f'id="case-{v.case.id}"' in everything for v in (recovering, in_collections, paid, written_off))
    # An unknown filter is the default list, not an error; htmx gets the list fragment only.
    assert client.get("/billing/collections?show=%00nope").status_code in (200, 400)
    fragment = client.get("/billing/collections?show=failed", headers=HTMX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="case-list"') and "<header" not in fragment

    # Billing's home links to it; the viewing is audited as PHI.
    assert "/billing/collections" in client.get("/billing").get_data(as_text=True)
    kinds = [e.details["kind"] for e in db.scalars(select(AuditEvent).where(AuditEvent.action == "phi.viewed"))]
    assert "billing" in kinds


def test_final_notice_agency_and_plan_move_the_case(db, client, factories, biller):
    visit = signed_visit(db, factories, status="collections")
    csrf = token(client)

    notice = client.post(f"/billing/collections/{visit.case.id}/final-notice", data={"csrf_token": csrf},
                         headers=HTMX)
    assert notice.status_code == 200, notice.get_data(as_text=True)
    html = notice.get_data(as_text=True)
    assert html.lstrip().startswith(f'<article id="case-{visit.case.id}"') and "Final notice sent" in html
    assert case_of(db, visit).final_notice_at is not None
    again = client.post(f"/billing/collections/{visit.case.id}/final-notice", data={"csrf_token": csrf},
                        headers=HTMX)
    assert again.status_code == 409 and "already sent" in again.get_data(as_text=True)

    agency = client.post(f"/billing/collections/{visit.case.id}/agency", data={"csrf_token": csrf})
    assert agency.status_code == 303 and agency.headers["Location"].endswith("/billing/collections")
    assert case_of(db, visit).status == "with_agency" and case_of(db, visit).agency_at is not None

    # From the agency a plan is not a move the case takes: the plain message, nothing changes.
    refused = client.post(f"/billing/collections/{visit.case.id}/plan", data={"csrf_token": csrf, "instalments": "3"},
                          headers=HTMX)
    assert refused.status_code == 409 and 'role="alert"' in refused.get_data(as_text=True)
    assert case_of(db, visit).status == "with_agency"

    other = signed_visit(db, factories, status="collections")
    plan = client.post(f"/billing/collections/{other.case.id}/plan", data={"csrf_token": csrf, "instalments": "6"},
                       headers=HTMX)
    assert plan.status_code == 200, plan.get_data(as_text=True)
    moved = case_of(db, other)
    assert moved.status == "payment_plan" and moved.plan_instalments == 6
    assert "0 of 6" in plan.get_data(as_text=True)

    actions = db.scalars(select(AuditEvent.action).where(AuditEvent.action.like("collections.%"))
                         .order_by(AuditEvent.seq)).all()
    assert actions == ["collections.final_notice", "collections.sent_to_agency", "collections.plan_started"]
    actors = set(db.scalars(select(AuditEvent.actor_id).where(AuditEvent.action.like("collections.%"))))
    assert actors == {biller.id}


@pytest.mark.parametrize("instalments", ["", "1", "25", "abc", "9" * 40, "3.5"])
def test_a_malformed_plan_is_a_4xx_and_changes_nothing(db, client, factories, biller, instalments):
    visit = signed_visit(db, factories, status="collections")
    response = client.post(f"/billing/collections/{visit.case.id}/plan",
                           data={"csrf_token": token(client), "instalments": instalments}, headers=HTMX)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert "2 to 24" in response.get_data(as_text=True)
    assert case_of(db, visit).status == "collections"


def test_malformed_requests_are_4xx(db, client, factories, biller):
    visit = signed_visit(db, factories, status="collections")
    csrf = token(client)
    assert client.post(f"/billing/collections/{visit.case.id}/agency", data={}).status_code == 400   # no CSRF
    assert client.post(f"/billing/collections/{visit.case.id + 999}/agency",
                       data={"csrf_token": csrf}).status_code == 404
    assert client.post("/billing/collections/99999999999999/agency", data={"csrf_token": csrf}).status_code == 404
    assert client.get(f"/billing/collections/{visit.case.id}/agency").status_code == 405
    assert case_of(db, visit).status == "collections"


def test_write_off_needs_a_reason_and_records_the_approver(db, client, factories, biller):
    visit = signed_visit(db, factories, status="collections")
    csrf = token(client)
    url = f"/billing/collections/{visit.case.id}/write-off"
    blank = client.post(url, data={"csrf_token": csrf, "reason": "   "}, headers=HTMX)
    assert blank.status_code == 422 and "reason" in blank.get_data(as_text=True).lower()
    assert case_of(db, visit).status == "collections"

    done = client.post(url, data={"csrf_token": csrf, "reason": "Patient hardship, approved by the practice manager"},
                       headers=HTMX)
    assert done.status_code == 200, done.get_data(as_text=True)
    case = case_of(db, visit)
    assert case.status == "written_off" and case.written_off_by_id == biller.id
    assert case.written_off_reason == "Patient hardship, approved by the practice manager"
    html = done.get_data(as_text=True)
    assert "approved by Bea Biller" in html and "Write off" not in html.split("Written off")[-1]
    event = db.scalar(select(AuditEvent).where(AuditEvent.action == "collections.written_off"))
    assert event.authorized_by == biller.id and event.actor_id == biller.id

    twice = client.post(url, data={"csrf_token": csrf, "reason": "again"}, headers=HTMX)
    assert twice.status_code == 409 and "cannot be written off" in twice.get_data(as_text=True)


def test_write_off_asks_for_a_fresh_code(db, client, factories, biller, clock):
    visit = signed_visit(db, factories, status="recovering")
    csrf = token(client)
    clock.advance(timedelta(minutes=16))
    url = f"/billing/collections/{visit.case.id}/write-off"
    plain = client.post(url, data={"csrf_token": csrf, "reason": "Hardship"})
    assert plain.status_code == 403 and "Confirm it is you" in plain.get_data(as_text=True)
    htmx = client.post(url, data={"csrf_token": csrf, "reason": "Hardship"},
                       headers={**HTMX, "HX-Current-URL": "http://localhost/billing/collections"})
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"].startswith("/mfa/step-up?next=")
    assert case_of(db, visit).status == "recovering"
    assert db.scalar(select(AuditEvent).where(AuditEvent.action == "collections.written_off")) is None


def test_only_billing_and_admin_see_the_worklist(app, db, factories):
    for role, status in (("patient", 403), ("provider", 403), ("admin", 200)):
        browser = app.test_client()
        user = factories.user(role)
        assert login(browser, user.email).status_code == 303
        assert browser.get("/billing/collections").status_code == status


def test_visit_state_on_the_day_view_and_the_payments_list(db, client, factories, biller):
    failed = signed_visit(db, factories, status="recovering")
    appt = failed.appointment
    page = client.get(f"/staff/day?date=2026-12-07&provider_id={appt.provider_id}").get_data(as_text=True)
    state = re.search(rf'data-visit-state="{appt.id}">(.*?)</p>', page, re.S).group(1)
    assert "Failed" in state and "insufficient funds" in state
    payments = client.get("/billing/payments").get_data(as_text=True)
    state = re.search(rf'data-visit-state="{appt.id}">(.*?)</p>', payments, re.S).group(1)
    assert "Post-visit" in state and "Failed" in state


def test_visit_states_says_where_each_visit_stands_in_one_query(db, factories):
    from sqlalchemy import event

    from app.models import Appointment, Encounter
    from app.services import visit_status

    approver = factories.user("billing")
    visits = {
        "failed": signed_visit(db, factories, status="recovering", failure_kind="authentication",
                               failure_code="authentication_required"),
        "recovered": signed_visit(db, factories, status="paid", captured=TOTAL, recovered=True),
        "charged": signed_visit(db, factories, status="paid", captured=TOTAL),
        "collections": signed_visit(db, factories, status="collections"),
        "with_agency": signed_visit(db, factories, status="with_agency"),
        "payment_plan": signed_visit(db, factories, status="payment_plan", plan_instalments=4, plan_paid=1),
        "written_off": signed_visit(db, factories, status="written_off", written_off_reason="Hardship",
                                    written_off_by_id=approver.id),
    }
    ids = {kind: v.appointment.id for kind, v in visits.items()}
    base = visits["failed"].appointment

    def appointment(status, *, card="pm_card_visa", timing="post_visit", days=1):
        at = SERVICE_AT + timedelta(days=days)
        appt = Appointment(patient_id=base.patient_id, provider_id=base.provider_id, type_id=base.type_id,
                           status=status, starts_at=at, ends_at=at + timedelta(minutes=30), blocked_start=at,
                           blocked_end=at + timedelta(minutes=30), price_cents=0, payment_timing=timing,
                           modality="telehealth", payment_method_id=card)
        db.add(appt)
        db.flush()
        return appt

    ids["card_needed"] = appointment("confirmed", card=None, days=1).id
    ids["not_documented"] = appointment("completed", days=2).id
    draft = appointment("checked_in", days=3)
    db.add(Encounter(appointment_id=draft.id, patient_id=draft.patient_id, provider_id=draft.provider_id,
                     status="open", version=1, opened_at=SERVICE_AT))
    ids["draft"] = draft.id
    quiet = appointment("confirmed", timing="deposit_to_book", days=4).id
    db.commit()

    statements = []
    engine = db.get_bind()
    listener = lambda *args: statements.append(args[2])     # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        states = visit_status.visit_states(db, [*ids.values(), quiet])
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) == 1, "one query for any number of visits"
    assert quiet not in states
    got = {kind: (states[i].kind, states[i].label) for kind, i in ids.items()}
    assert got == {
        "failed": ("failed", "Failed"), "recovered": ("recovered", "Recovered"), "charged": ("charged", "Charged"),
        "collections": ("collections", "In collections"), "with_agency": ("with_agency", "With collections agency"),
        "payment_plan": ("payment_plan", "Payment plan"), "written_off": ("written_off", "Written off"),
        "card_needed": ("card_needed", "Card needed"), "not_documented": ("not_documented", "Not documented"),
        "draft": ("draft", "Documented (draft)")}
    assert "3-D Secure" in states[ids["failed"]].detail
    assert "1 of 4 paid" in states[ids["payment_plan"]].detail
