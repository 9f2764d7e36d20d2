"""Evidence under the minimum-necessary rule (issue 16): assembled from a visit that has everything it
must leave out (its type "Oncology follow-up", a specialty, a signed note with text, a diagnosis and a
code, a message with text, a telehealth join the audit recorded with an IP address), approved by
billing field by field and submitted. What Stripe holds afterwards (read back from the sandbox's API)
and every request the app sent carry none of it; they do carry the visit's date, "Clinical visit",
attendance times, the receipt, the policy, how the patient paid, the messages as times and template ids,
and that the note was signed."""
from __future__ import annotations

from urllib.parse import unquote_plus

import pytest

from app.services import disputes
from app.services.audit import Actor
from tests.disputes import steps
from tests.helpers.payments import recording_stripe


def test_what_stripe_receives_names_no_note_diagnosis_code_type_specialty_message_or_ip(
        db, app, visit, later_by_hand, stripe_admin, billing_user):
    paid = visit(happened=True)
    later_by_hand()
    du, row = steps.opened(db, stripe_admin, paid, "evt_evidence")
    forbidden = steps.forbidden_words(db, paid)
    proposed = row.evidence
    assert set(proposed) == {f.name for f in disputes.FIELDS}
    assert steps.leaks("\n".join(proposed.values()), forbidden) == []

    biller = Actor("user", billing_user.id, "billing")
    disputes.save_review(db, row, [f.name for f in disputes.FIELDS], "The cardholder attended the whole visit.", biller)
    db.commit()
    with recording_stripe(app) as recording:
        disputes.submit(db, row.id, biller)
    bodies = [unquote_plus(body) for method, _, body in recording.sent if method.lower() == "post"]
    assert bodies and all(steps.leaks(body, forbidden) == [] for body in bodies)

    at_stripe = stripe_admin.client.v1.disputes.retrieve(du["id"]).to_dict()
    evidence = {k: v for k, v in at_stripe["evidence"].items() if isinstance(v, str) and v}
    row = steps.ours(db, du["id"])
    assert evidence == row.submitted_evidence                       # stored: exactly what was sent
    assert at_stripe["status"] == "under_review" and at_stripe["evidence_details"]["submission_count"] == 1
    assert steps.leaks(str(at_stripe), forbidden) == []                    # nor in its metadata or anywhere else

    assert set(evidence) == {"service_date", "product_description", "access_activity_log",
                             "cancellation_policy_disclosure", "refund_policy_disclosure", "uncategorized_text"}
    assert evidence["service_date"] == "2026-12-07"
    assert evidence["product_description"].startswith("Clinical visit, by video")
    log = evidence["access_activity_log"]
    assert "Patient joined the video visit" in log and "Patient checked in" in log and "Visit completed" in log
    assert "Payment confirmed by the cardholder" in log
    assert "within 24 hours of the start, the payment is not refunded" in evidence["cancellation_policy_disclosure"]
    other = evidence["uncategorized_text"]
    assert f"Receipt: R-{paid.attempt.charge_id} for appointment" in other and "$125.00 paid" in other
    assert "Visa ending in 0259" in other
    assert "email, template reminder" in other                       # the message: its time and template only
    assert "Visit note: Signed by the clinician: yes" in other
    assert other.endswith("The cardholder attended the whole visit.")   # billing's own words, last
    assert steps.dispute_audits(db, paid.appointment.id) == [
        "dispute.opened", "dispute.reviewed", "dispute.submitted", "dispute.updated"]


def test_only_the_approved_fields_are_sent(db, visit, later_by_hand, stripe_admin, billing_user):
    paid = visit(happened=False)
    later_by_hand()
    du, row = steps.opened(db, stripe_admin, paid, "evt_evidence")
    assert row.evidence["visit_note"] == "Signed by the clinician: no (not yet)."
    biller = Actor("user", billing_user.id, "billing")
    disputes.save_review(db, row, ["service_date", "receipt"], "", biller)
    db.commit()
    disputes.submit(db, row.id, biller)
    evidence = {k: v for k, v in stripe_admin.client.v1.disputes.retrieve(du["id"]).to_dict()["evidence"].items() if v}
    assert set(evidence) == {"service_date", "uncategorized_text"}
    assert evidence["uncategorized_text"].startswith("Receipt: R-")
    assert "Attendance" not in str(evidence) and "policy" not in str(evidence)


def test_nothing_to_send_and_a_second_submission_are_refused(db, visit, later_by_hand, stripe_admin, billing_user):
    paid = visit(happened=False)
    later_by_hand()
    du, row = steps.opened(db, stripe_admin, paid, "evt_evidence")
    biller = Actor("user", billing_user.id, "billing")
    with pytest.raises(disputes.InvalidReview, match="Approve at least one field"):   # nothing to send
        disputes.submit(db, row.id, biller)
    disputes.save_review(db, row, ["service_date"], None, biller)
    db.commit()
    disputes.submit(db, row.id, biller)
    with pytest.raises(disputes.NotOpen, match="already submitted"):                  # a second submission
        disputes.submit(db, row.id, biller)
    at_stripe = stripe_admin.client.v1.disputes.retrieve(du["id"]).to_dict()
    assert at_stripe["evidence_details"]["submission_count"] == 1


class Crash(Exception):
    pass


def crashed_after_stripe_took_it(db, visit, later_by_hand, stripe_admin, billing_user, monkeypatch, approve):
    """A dispute of a visit not attended, billing's review (``approve``, "Our words.") saved, then submitted
    through a gateway whose process dies right after Stripe took the evidence. Returns (paid, du, row, biller)."""
    from app.services import gateway as gateway_module

    paid = visit(happened=False)
    later_by_hand()
    du, row = steps.opened(db, stripe_admin, paid, "evt_evidence")
    biller = Actor("user", billing_user.id, "billing")
    disputes.save_review(db, row, approve, "Our words.", biller)
    db.commit()
    real = gateway_module.gateway()

    class CrashingAfterStripe:
        def __getattr__(self, name):
            return getattr(real, name)

        def update_dispute_evidence(self, *args, **kwargs):
            real.update_dispute_evidence(*args, **kwargs)      # Stripe took it...
            raise Crash("the process died before recording it")

    monkeypatch.setattr(disputes, "gateway", lambda: CrashingAfterStripe())
    try:
        disputes.submit(db, row.id, biller)
    except Crash:
        db.rollback()
    monkeypatch.setattr(disputes, "gateway", gateway_module.gateway)
    return paid, du, row, biller


def test_a_crash_after_stripe_took_the_evidence_is_finished_once(db, app, visit, later_by_hand, stripe_admin,
                                                                 billing_user, monkeypatch, queue):
    from app.jobs import disputes as dispute_jobs

    paid, du, row, biller = crashed_after_stripe_took_it(db, visit, later_by_hand, stripe_admin, billing_user,
                                                         monkeypatch, ["service_date", "product_description"])
    assert steps.ours(db, du["id"]).submitted_at is None          # ...and nothing of it was recorded here
    assert stripe_admin.client.v1.disputes.retrieve(du["id"]).to_dict()["evidence_details"]["submission_count"] == 1

    # Billing tries again: the same request (same key), Stripe answers what it did; recorded once.
    disputes.submit(db, row.id, biller)
    row = steps.ours(db, du["id"])
    assert row.submitted_at is not None and row.status == "under_review"
    assert row.submitted_evidence["uncategorized_text"] == "Our words."
    assert stripe_admin.client.v1.disputes.retrieve(du["id"]).to_dict()["evidence_details"]["submission_count"] == 1
    dispute_jobs.poll()                                            # and the poll finds nothing more to do
    assert steps.dispute_audits(db, paid.appointment.id).count("dispute.submitted") == 1


def test_a_crash_after_stripe_took_the_evidence_is_finished_by_the_poll(db, app, visit, later_by_hand, stripe_admin,
                                                                       billing_user, monkeypatch, queue):
    from app.jobs import disputes as dispute_jobs

    paid, du, _, _ = crashed_after_stripe_took_it(db, visit, later_by_hand, stripe_admin, billing_user, monkeypatch,
                                                  ["service_date"])
    dispute_jobs.poll()
    row = steps.ours(db, du["id"])
    assert row.status == "under_review" and row.submitted_at is not None
    assert row.submitted_evidence == {"service_date": "2026-12-07", "uncategorized_text": "Our words."}
    dispute_jobs.poll()
    assert steps.dispute_audits(db, paid.appointment.id).count("dispute.submitted") == 1
