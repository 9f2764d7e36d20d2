"""Billing's dispute pages (issue 16): the worklist (open disputes, overdue first, the due date in the
clinic's timezone, the amount, the status, the visit's date) and one dispute's page (each field with an
approve box, billing's own text, Save and Submit; after submitting, read-only: what was sent and the
outcome). Billing and admin only; no-store; each view audited; input that does not fit is a clear 4xx."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app.models import AuditEvent, ClinicSettings, Dispute
from app.services import disputes
from tests.disputes import steps
from tests.helpers.access_tables.access_table_disputes import DISPUTES_EXPECTED, sample_dispute
from tests.helpers.web import IsolatedClient, csrf_from, login


def signed_in(app, user):
    client = IsolatedClient(app, app.response_class, use_cookies=True)
    if user is not None:
        assert login(client, user.email).status_code == 303
    return client


def post(client, url, page, data):
    """Fill the form as the browser would: the page's CSRF token and the digest of the evidence it showed."""
    html = client.get(page).get_data(as_text=True)
    digest = re.search(r'name="evidence_digest" value="([0-9a-f]+)"', html)
    extra = {"evidence_digest": digest.group(1)} if digest else {}
    return client.post(url, data={**extra, **data, "csrf_token": csrf_from(html)})


@pytest.fixture
def new_york(db):
    db.add(ClinicSettings(id=1, name="Clinic Portal", phone="", address="", timezone="America/New_York"))
    db.commit()


def test_only_billing_and_admin_see_or_act_on_disputes(app, db, factories, sandbox):
    dispute_id = sample_dispute(db)
    urls = {"billing.disputes_list": "/billing/disputes", "billing.check_disputes": "/billing/disputes/check",
            "billing.dispute": f"/billing/disputes/{dispute_id}",
            "billing.dispute_review": f"/billing/disputes/{dispute_id}",
            "billing.dispute_submit": f"/billing/disputes/{dispute_id}/submit"}
    app.config["WTF_CSRF_ENABLED"] = False       # roles here; CSRF below
    try:
        for role in ("anonymous", "patient", "provider", "billing", "admin"):
            client = signed_in(app, None if role == "anonymous" else factories.user(role))
            for (method, endpoint), expected in sorted(DISPUTES_EXPECTED.items()):
                response = client.open(urls[endpoint], method=method, data={})
                assert response.status_code == expected[role], (role, method, endpoint, response.status_code)
                if role == "anonymous":
                    assert "/login" in response.location
    finally:
        app.config["WTF_CSRF_ENABLED"] = True


def test_the_worklist_shows_open_disputes_overdue_first_in_the_clinics_time(app, db, factories, clock, new_york):
    due_soon = Dispute(stripe_dispute_id="du_soon", stripe_charge_id="ch_1", amount_cents=4000, reason="fraudulent",
                       status="needs_response", due_by=clock.now() + timedelta(days=3), evidence={}, approved=[])
    overdue = Dispute(stripe_dispute_id="du_late", stripe_charge_id="ch_2", amount_cents=9900, reason="duplicate",
                      status="needs_response", due_by=datetime(2026, 12, 5, 4, 59, 59, tzinfo=timezone.utc),
                      evidence={}, approved=[])
    won = Dispute(stripe_dispute_id="du_won", stripe_charge_id="ch_3", amount_cents=100, reason="fraudulent",
                  status="won", due_by=clock.now(), evidence={}, approved=[], closed_at=clock.now())
    db.add_all([due_soon, overdue, won])
    db.commit()
    biller = factories.user("billing")
    client = signed_in(app, biller)
    response = client.get("/billing/disputes")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "no-store" in response.headers["Cache-Control"]
    order = re.findall(r'data-dispute="(\d+)"', html)
    assert order == [str(overdue.id), str(due_soon.id)]                    # overdue first; closed not here
    late = html[html.index(f'id="dispute-{overdue.id}"'):html.index(f'id="dispute-{due_soon.id}"')]
    assert "Overdue" in late and "$99.00" in late
    assert "Fri Dec 4, 2026 11:59 PM EST" in late                          # 04:59:59 UTC, in New York
    assert "Duplicate" in late
    closed = client.get("/billing/disputes?show=closed").get_data(as_text=True)
    assert re.findall(r'data-dispute="(\d+)"', closed) == [str(won.id)]
    assert client.get("/billing/disputes?show=bogus").status_code == 200   # an unknown filter: the open ones
    viewed = db.scalars(select(AuditEvent).where(AuditEvent.action == "phi.viewed",
                                                 AuditEvent.actor_id == biller.id)).all()
    assert [v.details["endpoint"] for v in viewed] == ["billing.disputes_list"] * 3


def test_review_save_and_bad_input(app, db, factories, visit, later_by_hand, stripe_admin, billing_user):
    paid = visit(happened=False)
    later_by_hand()
    du, row = steps.opened(db, stripe_admin, paid, "evt_pages")
    client = signed_in(app, billing_user)
    page = f"/billing/disputes/{row.id}"
    shown = client.get(page)
    html = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "no-store" in shown.headers["Cache-Control"]
    for f in disputes.FIELDS:
        assert f'value="{f.name}"' in html                                  # each field, its approve box
    assert "Clinical visit" in html and steps.TYPE_NAME not in html
    assert f'href="/billing/appointments/{paid.appointment.id}/chain"' in html
    [viewed] = db.scalars(select(AuditEvent).where(AuditEvent.action == "phi.viewed",
                                                   AuditEvent.actor_id == billing_user.id)).all()
    assert (viewed.appointment_id, viewed.patient_id) == (paid.appointment.id, paid.appointment.patient_id)

    # Bad input: a field not on the page, text too long, no CSRF token, no such dispute.
    invented = post(client, page, page, {"approve": ["service_date", "diagnosis"], "extra_text": "x"})
    assert invented.status_code == 422 and "Approve only the fields shown" in invented.get_data(as_text=True)
    long_text = post(client, page, page, {"approve": ["service_date"], "extra_text": "x" * 5000})
    body = long_text.get_data(as_text=True)
    assert long_text.status_code == 422 and "keep it under 4,000" in body and "x" * 100 in body   # kept as typed
    assert client.post(page, data={"approve": ["service_date"]}).status_code == 400
    assert client.get("/billing/disputes/999999").status_code == 404
    assert client.post("/billing/disputes/not-a-number").status_code == 404
    assert steps.ours(db, du["id"]).approved == []

    saved = post(client, page, page, {"approve": ["service_date", "receipt"], "extra_text": "  Our words.  "})
    assert saved.status_code == 303
    row = steps.ours(db, du["id"])
    assert (row.approved, row.extra_text, row.submitted_at) == (["receipt", "service_date"], "Our words.", None)
    html = client.get(page).get_data(as_text=True)
    assert 'value="receipt" checked' in html and 'value="access_activity_log">' in html and "Our words." in html
    at_stripe = stripe_admin.client.v1.disputes.retrieve(du["id"]).to_dict()
    assert at_stripe["evidence_details"]["submission_count"] == 0           # saving sends nothing

    # Submit: read-only afterwards, showing what was sent; a second try is a 409.
    submitted = post(client, f"{page}/submit", page, {"approve": ["service_date"], "extra_text": "Our words."})
    assert submitted.status_code == 303
    html = client.get(page).get_data(as_text=True)
    assert 'id="evidence-form"' not in html and 'data-sent="service_date">2026-12-07' in html
    assert 'data-sent="uncategorized_text">Our words.' in html and "the bank has not decided yet" in html
    assert "Bailey Billing" in html
    again = post(client, page, f"/billing/disputes", {"approve": ["service_date"]})
    assert again.status_code == 409 and "already submitted" in again.get_data(as_text=True)


def test_stripe_refusing_the_evidence_says_so_and_records_nothing(app, db, visit, later_by_hand, stripe_admin,
                                                                   billing_user):
    paid = visit(happened=False)
    later_by_hand()
    du, row = steps.opened(db, stripe_admin, paid, "evt_refused")
    stripe_admin.client.v1.disputes.close(du["id"])        # lost at Stripe; our row does not know yet
    client = signed_in(app, billing_user)
    page = f"/billing/disputes/{row.id}"
    refused = post(client, f"{page}/submit", page, {"approve": ["service_date"], "extra_text": "Our words."})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 409
    assert "Stripe refused the evidence" in html and "Nothing was submitted" in html
    row = steps.ours(db, du["id"])
    assert row.submitted_at is None and row.submitted_evidence is None
    assert row.approved == ["service_date"]                               # the review itself was kept
    assert steps.dispute_audits(db, paid.appointment.id) == ["dispute.opened", "dispute.reviewed",
                                                            "dispute.submit_refused"]


def test_evidence_follows_the_visit_until_submitted_and_a_stale_review_is_refused(
        app, db, client, factories, clock, visit, later_by_hand, stripe_admin, billing_user):
    paid = visit(happened=False)
    later_by_hand()                                    # disputed before the visit took place
    du, row = steps.opened(db, stripe_admin, paid, "evt_early")
    assert row.evidence["visit_note"] == "Signed by the clinician: no (not yet)."
    biller = signed_in(app, billing_user)
    page = f"/billing/disputes/{row.id}"
    before = biller.get(page).get_data(as_text=True)
    stale = re.search(r'name="evidence_digest" value="([0-9a-f]+)"', before).group(1)

    steps.attend_and_sign(db, client, paid, clock)     # then it happens: check-in, join, signed note
    refused = biller.post(page, data={"approve": ["visit_note"], "evidence_digest": stale,
                                      "csrf_token": csrf_from(before)})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 409 and "records changed while you were reviewing" in html
    assert "Signed by the clinician: yes" in html      # the page shows the new text at once
    assert steps.ours(db, du["id"]).approved == []

    assert post(biller, page, page, {"approve": ["visit_note", "access_activity_log"]}).status_code == 303
    row = steps.ours(db, du["id"])
    assert row.evidence["visit_note"].startswith("Signed by the clinician: yes")
    assert "Patient checked in" in row.evidence["access_activity_log"]
    assert row.approved == ["access_activity_log", "visit_note"]
