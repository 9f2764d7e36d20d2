"""What billing and the patient see: the claims worklist with Submit and Check now, a claim's page
with the payer's adjustments in words, the manual EOB form (validated per line, what was typed kept),
the hybrid statement (billed, insurance paid, adjustments, your share, deposit, balance or refund) and
the audit chain's hybrid stages."""
from __future__ import annotations

import re

from sqlalchemy import select

from app.jobs import claims as jobs
from app.models import Claim, Remittance
from tests.helpers.claims import reconciliation_of
from tests.helpers.payments import fresh
from tests.helpers.web import csrf_from, login


def sign_in(client, user):
    assert login(client, user.email).status_code == 303


def post(client, url, data, page):
    html = client.get(page).get_data(as_text=True)
    return client.post(url, data={**data, "csrf_token": csrf_from(html)})


def test_billing_submits_checks_now_and_reads_the_answer(db, client, factories, hybrid_visit, payer_sandbox):
    visit = hybrid_visit("W100000003", deposit=3900)
    sign_in(client, factories.user("billing"))
    page = client.get("/billing/claims")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "no-store" in page.headers["Cache-Control"]
    assert f'data-claim="{visit.claim_id}" data-status="draft"' in html and "Submit" in html
    answer = post(client, f"/billing/claims/{visit.claim_id}/submit", {}, f"/billing/claims/{visit.claim_id}")
    assert answer.status_code in (302, 303)
    claim = fresh(db, Claim, visit.claim_id)
    assert claim.status == "submitted" and claim.submitted_by_id is not None
    assert f"payer claim number {claim.payer_claim_number}" in client.get(answer.location).get_data(as_text=True)
    # a second Submit is refused in words
    again = post(client, f"/billing/claims/{visit.claim_id}/submit", {}, f"/billing/claims/{visit.claim_id}")
    assert again.status_code == 409 and "already sent" in again.get_data(as_text=True)
    payer_sandbox.adjudicate_now(str(claim.uuid))
    checked = post(client, "/billing/claims/check", {}, "/billing/claims")
    assert checked.status_code in (302, 303)
    assert "1 new answer from payers applied." in client.get(checked.location).get_data(as_text=True)
    jobs.reconcile_visit(visit.appointment_id)
    html = client.get(f"/billing/claims/{visit.claim_id}").get_data(as_text=True)
    for words in ("PR-2 coinsurance $14.00", "PR-3 copay $25.00", "CO-45 contractual $55.00",
                  "Nothing more due."):
        assert words in html, words


def test_a_paper_eob_is_validated_per_line_and_kept_as_typed(db, client, factories, hybrid_visit, stripe_admin):
    visit = hybrid_visit("W100000003", deposit=5000)
    sign_in(client, factories.user("billing"))
    page = f"/billing/claims/{visit.claim_id}"
    assert "Enter a paper EOB" in client.get(page).get_data(as_text=True)
    typed = {"line-1-allowed": "95.00", "line-1-paid": "56.00",
             "line-1-adj-0-group": "CO", "line-1-adj-0-code": "45", "line-1-adj-0-amount": "55",
             "line-1-adj-1-group": "PR", "line-1-adj-1-code": "3", "line-1-adj-1-amount": "25",
             "line-1-adj-2-group": "PR", "line-1-adj-2-code": "2", "line-1-adj-2-amount": "10"}
    refused = post(client, f"/billing/claims/{visit.claim_id}/eob", typed, page)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "billed $150.00 must equal paid plus adjustments ($146.00): $4.00 is unaccounted for" in html
    assert 'value="56.00"' in html and 'value="10"' in html            # nothing typed is lost
    bad = post(client, f"/billing/claims/{visit.claim_id}/eob", {**typed, "line-1-adj-2-amount": "ten",
                                                                 "line-1-adj-0-group": ""}, page)
    assert bad.status_code == 422 and "Enter an amount in dollars" in bad.get_data(as_text=True)
    assert db.scalar(select(Remittance)) is None
    done = post(client, f"/billing/claims/{visit.claim_id}/eob", {**typed, "line-1-adj-2-amount": "14"}, page)
    assert done.status_code in (302, 303)
    remittance = db.scalar(select(Remittance).where(Remittance.claim_id == visit.claim_id))
    assert (remittance.source, remittance.paid_cents, remittance.patient_responsibility_cents,
            remittance.entered_by_id is not None) == ("manual", 5600, 3900, True)
    assert fresh(db, Claim, visit.claim_id).status == "adjudicated"
    assert jobs.reconcile_visit(visit.appointment_id) == "refund"
    assert reconciliation_of(db, visit.appointment_id).difference_cents == -1100
    # a second EOB for the same claim is refused: applied once
    again = client.post(f"/billing/claims/{visit.claim_id}/eob", data={**typed, "csrf_token": csrf_from(html)})
    assert again.status_code == 409


def test_the_hybrid_statement_and_the_audit_chain(db, app, client, factories, hybrid_visit, payer_sandbox):
    from app.models import Patient

    visit = hybrid_visit("W100000777", deposit=3900)
    assert jobs.submit_claim(visit.claim_id) == "submitted"
    payer_sandbox.adjudicate_now(str(fresh(db, Claim, visit.claim_id).uuid))
    jobs.poll_remittances()
    assert jobs.reconcile_visit(visit.appointment_id) == "refund"
    refund_id = reconciliation_of(db, visit.appointment_id).refund_id
    jobs.send_refund(refund_id)
    patient = db.get(Patient, visit.patient_id).user
    sign_in(client, patient)
    html = client.get(f"/appointments/{visit.appointment_id}/statement").get_data(as_text=True)
    text = re.sub(r"<[^>]+>", " ", html)
    for words in ("Billed to your insurance", "$150.00", "Paid by your insurance", "$70.00",
                  "The amount above your plan", "Your copay", "Your share", "$25.00", "Deposit paid", "$39.00",
                  "Refunded to your card", "$14.00", "Your insurer's answer", "refunded to your card"):
        assert words in text, words
    pdf = client.get(f"/appointments/{visit.appointment_id}/statement.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    billing = factories.user("billing")
    other = app.test_client()                       # billing's own browser
    sign_in(other, billing)
    chain = other.get(f"/billing/appointments/{visit.appointment_id}/chain").get_data(as_text=True)
    stages = re.findall(r'data-stage="([a-z_]+)"', chain)
    for stage in ("estimate", "deposit", "signature", "claim", "remittance", "reconciliation",
                  "refund", "outcome"):
        assert stage in stages, (stage, stages)
    order = [stages.index(s) for s in ("estimate", "claim", "remittance", "reconciliation", "outcome")]
    assert order == sorted(order)
    assert "payer AETNA-DEMO" in chain and visit.member_id not in chain
