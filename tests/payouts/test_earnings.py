"""The provider's earnings page and CSV, and the admin's view of any provider's (issue 16).

The split, transfer, reversal and payout rows are built directly in the database (the payouts
service that makes them in production is tested on its own): one visit in each status, a partial
refund reversal, a dispute reversal, a hybrid visit with two charges, a payout that swept two
transfers. The pages must show each figure, status and reason, the totals overall and per payout, in
the clinic's timezone, and never a patient's name or the visit type's name."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from app.models import (Appointment, Charge, Dispute, PaymentAttempt, PayoutSplit, ProviderAccount,
                        ProviderPayout, ProviderTransfer, Refund, TransferReversal)
from app.services import earnings as earnings_service
from app.services import ledger
from app.services.audit import Actor
from app.services.clinic import update_clinic
from tests.helpers.payments import sign_in
from tests.helpers.web import IsolatedClient, login

UTC = timezone.utc
PATIENT_NAME = "Zelda Quartermaine"
TYPE_NAME = "Sensitive Condition Follow-up"


def at(month, day, hour, minute=0):
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


@dataclass
class Built:
    provider: object
    other: object
    splits: dict
    payouts: dict


class Rows:
    """Builds the money rows of the payouts service directly (no Stripe)."""

    def __init__(self, db, factories):
        self.db, self.factories = db, factories
        self.visit_type = factories.appointment_type(name=TYPE_NAME)
        self.patient = factories.patient(full_name=PATIENT_NAME)
        self.n = 0

    def appointment(self, provider, starts_at, timing="post_visit"):
        ends = starts_at + timedelta(minutes=30)
        appt = Appointment(patient_id=self.patient.id, provider_id=provider.id, type_id=self.visit_type.id,
                           status="completed", starts_at=starts_at, ends_at=ends, blocked_start=starts_at,
                           blocked_end=ends, price_cents=12500, payment_timing=timing, modality="telehealth")
        self.db.add(appt)
        self.db.flush()
        return appt

    def split(self, appt, *, purpose, gross, fee, platform, status, hold_until, transferred=0, reversed_=0,
              dispute_hold=False):
        self.n += 1
        charge = Charge(appointment_id=appt.id, purpose=purpose, amount_cents=gross, status="captured",
                        amount_captured_cents=gross, amount_refunded_cents=0)
        self.db.add(charge)
        self.db.flush()
        split = PayoutSplit(charge_id=charge.id, appointment_id=appt.id, provider_id=appt.provider_id,
                            stripe_charge_id=f"ch_earn_{charge.id}_{self.n}", gross_cents=gross,
                            stripe_fee_cents=fee, platform_fee_cents=platform,
                            provider_share_cents=gross - fee - platform,
                            fee_rule={"percent_bp": 1000, "fixed_cents": 0, "source": "clinic"},
                            final_at=hold_until - timedelta(days=7), hold_until=hold_until, status=status,
                            dispute_hold=dispute_hold, transferred_cents=transferred, reversed_cents=reversed_)
        self.db.add(split)
        self.db.flush()
        return split

    def transfer(self, split, account, amount, *, payout=None, reversed_=0, kind="share", number=1):
        transfer = ProviderTransfer(split_id=split.id, provider_account_id=account.id, number=number, kind=kind,
                                    amount_cents=amount, amount_reversed_cents=reversed_,
                                    stripe_transfer_id=f"tr_earn_{split.id}_{number}", status="created",
                                    payout_id=payout.id if payout else None)
        self.db.add(transfer)
        self.db.flush()
        return transfer

    def refund_reversal(self, transfer, amount):
        split = transfer.split
        attempt = PaymentAttempt(charge_id=split.charge_id, number=1, status="succeeded",
                                 amount_cents=split.gross_cents, amount_captured_cents=split.gross_cents,
                                 stripe_payment_intent_id=f"pi_earn_{split.id}")
        self.db.add(attempt)
        self.db.flush()
        refund = Refund(charge_id=split.charge_id, attempt_id=attempt.id, amount_cents=amount,
                        stripe_reason="requested_by_customer", clinical_reason="Patient felt unwell",
                        policy="billing", status="succeeded", stripe_refund_id=f"re_earn_{split.id}")
        self.db.add(refund)
        self.db.flush()
        self.db.add(TransferReversal(transfer_id=transfer.id, amount_cents=amount, reason="refund",
                                     refund_id=refund.id, stripe_reversal_id=f"trr_earn_r{split.id}",
                                     status="created"))
        self.db.flush()

    def refund_posting(self, split, *, refund, share, platform):
        """The ledger's ``refund:<re>`` of a refund after the split (app/services/ledger.py, posting 2)."""
        ledger.post(self.db, kind="refund", dedupe_key=f"refund:re_earn_{split.id}", occurred_at=split.final_at,
                    charge_id=split.charge_id, appointment_id=split.appointment_id, provider_id=split.provider_id,
                    entries=[ledger.Entry(ledger.STRIPE_BALANCE, -refund),
                             ledger.Entry(ledger.PROVIDER_PAYABLE, share, provider_id=split.provider_id),
                             ledger.Entry(ledger.PLATFORM_FEES, platform),
                             ledger.Entry(ledger.REFUND_LOSSES, refund - share - platform)])

    def dispute(self, split, *, status="needs_response"):
        dispute = Dispute(stripe_dispute_id=f"du_earn_{split.id}", stripe_charge_id=split.stripe_charge_id,
                          charge_id=split.charge_id, appointment_id=split.appointment_id,
                          amount_cents=split.gross_cents, reason="fraudulent", status=status)
        self.db.add(dispute)
        self.db.flush()
        return dispute

    def dispute_reversal(self, transfer, dispute, amount):
        self.db.add(TransferReversal(transfer_id=transfer.id, amount_cents=amount, reason="dispute",
                                     dispute_id=dispute.id, stripe_reversal_id=f"trr_earn_d{transfer.id}",
                                     status="created"))
        self.db.flush()


@pytest.fixture
def built(db, factories, clock):
    """Provider A (an enabled account) with one visit in each status; provider B with no account."""
    update_clinic(db, actor=Actor.system("test"), name="Riverside Clinic", phone="+15550100000", address="",
                  timezone="America/New_York")
    rows = Rows(db, factories)
    provider = factories.provider(full_name="Dr. Ada Quill", types=[rows.visit_type])
    other = factories.provider(full_name="Dr. Ben Other", types=[rows.visit_type])
    account = ProviderAccount(provider_id=provider.id, stripe_account_id=f"acct_earn_{provider.id}",
                              status="enabled", details_submitted=True, charges_enabled=True,
                              payouts_enabled=True, transfers_active=True)
    db.add(account)
    db.flush()
    past = clock.now() - timedelta(days=1)
    p1 = ProviderPayout(provider_account_id=account.id, period="2026-W47", amount_cents=8680 + 4325,
                        stripe_payout_id="po_earn_1", status="paid", created_at=at(11, 16, 15),
                        arrival_date=at(11, 18, 0))
    p2 = ProviderPayout(provider_account_id=account.id, period="2026-W48", amount_cents=0, status="nothing",
                        created_at=at(11, 23, 15))
    db.add_all([p1, p2])
    db.flush()
    s = {}
    # 1. Paid out: Nov 2, 10:00 New York.
    s["paid_out"] = rows.split(rows.appointment(provider, at(11, 2, 15)), purpose="visit", gross=10000, fee=320,
                               platform=1000, status="paid_out", hold_until=past, transferred=8680)
    rows.transfer(s["paid_out"], account, 8680, payout=p1)
    # 2. Transferred, then a partial refund reversed $20.00 of it: Nov 2, 22:30 New York (Nov 3 UTC).
    s["partial"] = rows.split(rows.appointment(provider, at(11, 3, 3, 30), timing="deposit_to_book"),
                              purpose="deposit", gross=12500, fee=393, platform=1250, status="transferred",
                              hold_until=past, transferred=10857, reversed_=2000)
    rows.refund_reversal(rows.transfer(s["partial"], account, 10857, reversed_=2000), 2000)
    # 3. A hybrid visit, Nov 10: its deposit paid out, its balance held by an open dispute.
    hybrid = rows.appointment(provider, at(11, 10, 16), timing="hybrid")
    s["hybrid_deposit"] = rows.split(hybrid, purpose="deposit", gross=5000, fee=175, platform=500,
                                     status="paid_out", hold_until=past, transferred=4325)
    rows.transfer(s["hybrid_deposit"], account, 4325, payout=p1)
    s["disputed_held"] = rows.split(hybrid, purpose="balance", gross=7000, fee=233, platform=700, status="held",
                                    hold_until=past, dispute_hold=True)
    rows.dispute(s["disputed_held"])
    # 4. Held, its hold over, waiting for the next transfer run: Nov 15.
    s["due"] = rows.split(rows.appointment(provider, at(11, 15, 15)), purpose="visit", gross=4000, fee=146,
                          platform=400, status="held", hold_until=past)
    # 5. Transferred, then reversed in full by a dispute (still open): Nov 20.
    s["reversed"] = rows.split(rows.appointment(provider, at(11, 20, 15)), purpose="visit", gross=9000, fee=291,
                               platform=900, status="reversed", hold_until=past, transferred=7809,
                               reversed_=7809)
    rows.dispute_reversal(rows.transfer(s["reversed"], account, 7809, reversed_=7809), rows.dispute(s["reversed"]),
                          7809)
    # 6. Refunded in full before it moved: forfeited. Nov 25.
    s["forfeited"] = rows.split(rows.appointment(provider, at(11, 25, 15)), purpose="visit", gross=8000, fee=262,
                                platform=800, status="forfeited", hold_until=past)
    # 7. Held in the refund window until Dec 12 (08:00 New York): Dec 5.
    s["in_window"] = rows.split(rows.appointment(provider, at(12, 5, 15)), purpose="visit", gross=6000, fee=204,
                                platform=600, status="held", hold_until=at(12, 12, 13))
    #    A $15.00 refund inside the window took the provider's pro-rata share ($12.99) before anything moved.
    rows.refund_posting(s["in_window"], refund=1500, share=1299, platform=150)
    # Provider B: no payout account, one visit whose hold is over.
    s["no_account"] = rows.split(rows.appointment(other, at(11, 5, 15)), purpose="visit", gross=3000, fee=117,
                                 platform=300, status="held", hold_until=past)
    db.commit()
    return Built(provider=provider, other=other, splits=s, payouts={"paid": p1, "nothing": p2})


def row_of(html: str, split) -> str:
    start = html.index(f'id="split-{split.id}"')
    return html[start:html.index("</tr>", start)]


def field(row: str, name: str) -> str:
    start = row.index(f'data-field="{name}">') + len(f'data-field="{name}">')
    text = row[start:row.index("</td>", start)]
    return text.replace("<strong>", "").replace("</strong>", "").split("<span")[0].strip()


def totals(html: str) -> dict:
    found = {}
    for name in ("earned", "held", "transferred", "reversed", "paid_out", "forfeited"):
        start = html.index(f'data-total="{name}">') + len(f'data-total="{name}">')
        found[name] = html[start:html.index("<", start)]
    return found


def test_the_provider_sees_each_visit_its_figures_and_status_in_words(db, client, built):
    sign_in(client, built.provider.user)
    response = client.get("/staff/earnings")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    s = built.splits
    paid = row_of(html, s["paid_out"])
    assert [field(paid, f) for f in ("charge", "gross", "stripe-fee", "platform-fee", "share", "transferred",
                                     "reversed")] == ["Visit", "$100.00", "$3.20", "$10.00", "$86.80", "$86.80",
                                                      "$0.00"]
    assert "Paid out" in paid and "In payout of Nov 16, 2026" in paid
    assert "Mon Nov 2, 2026 · 10:00" in paid and f"Visit #{s['paid_out'].appointment_id}" in paid

    partial = row_of(html, s["partial"])
    assert "Mon Nov 2, 2026 · 22:30" in partial              # 03:30 UTC on Nov 3 is Nov 2 in New York
    assert field(partial, "charge") == "Deposit" and field(partial, "share") == "$108.57"
    assert field(partial, "reversed") == "$20.00" and "Transferred" in partial
    assert "Refund reversed $20.00" in partial

    assert "Dispute open" in row_of(html, s["disputed_held"]) and "Held" in row_of(html, s["disputed_held"])
    assert field(row_of(html, s["disputed_held"]), "charge") == "Balance"
    assert field(row_of(html, s["hybrid_deposit"]), "charge") == "Deposit"
    assert "Transfer due" in row_of(html, s["due"])
    reversed_row = row_of(html, s["reversed"])
    assert "Reversed" in reversed_row and "Dispute open; dispute reversed $78.09" in reversed_row
    assert field(reversed_row, "reversed") == "$78.09"
    assert "Forfeited" in row_of(html, s["forfeited"]) and "Refunded before it moved" in row_of(html, s["forfeited"])
    window = row_of(html, s["in_window"])
    assert "Hold until Dec 12, 2026; refund took $12.99 before it moved" in window
    # Not the other provider's visit; no patient's name, no type name.
    assert f'id="split-{s["no_account"].id}"' not in html
    assert PATIENT_NAME not in html and TYPE_NAME not in html and "Zelda" not in html
    # The visits in order of the visit.
    order = [html.index(f'id="split-{s[k].id}"') for k in ("paid_out", "partial", "hybrid_deposit", "due",
                                                            "reversed", "forfeited", "in_window")]
    assert order == sorted(order)


def test_totals_overall_and_per_payout(db, client, built):
    sign_in(client, built.provider.user)
    html = client.get("/staff/earnings").get_data(as_text=True)
    # held 60.67 + 34.54 + (51.96 - 12.99 refunded); transferred 86.80 + 108.57 + 43.25 + 78.09;
    # reversed 20.00 + 78.09; paid out 86.80 + 43.25; forfeited 69.38; earned = held + transferred - reversed.
    assert totals(html) == {"earned": "$352.80", "held": "$134.18", "transferred": "$316.71", "reversed": "$98.09",
                            "paid_out": "$130.05", "forfeited": "$69.38"}
    start = html.index(f'id="payout-{built.payouts["paid"].id}"')
    payout = html[start:html.index("</ul>", start)]
    assert "Nov 16, 2026" in payout and "$130.05" in payout and "Paid" in payout and "Arrived Nov 18, 2026" in payout
    swept = [built.splits["paid_out"].appointment_id, built.splits["hybrid_deposit"].appointment_id]
    assert payout.index(f"Visit #{swept[0]}") < payout.index(f"Visit #{swept[1]}")
    assert "$86.80" in payout and "$43.25" in payout
    # A week with nothing to pay out is not listed.
    assert f'id="payout-{built.payouts["nothing"].id}"' not in html


def test_the_date_range_uses_the_clinics_days(db, client, built):
    sign_in(client, built.provider.user)
    s = built.splits
    html = client.get("/staff/earnings?from=2026-11-02&to=2026-11-02").get_data(as_text=True)
    # Both visits fall on Nov 2 in New York (one of them on Nov 3 in UTC).
    assert f'id="split-{s["paid_out"].id}"' in html and f'id="split-{s["partial"].id}"' in html
    assert f'id="split-{s["due"].id}"' not in html and f'id="split-{s["in_window"].id}"' not in html
    assert totals(html)["transferred"] == "$195.37" and totals(html)["held"] == "$0.00"
    assert 'value="2026-11-02"' in html
    assert "No payouts in these dates." in html        # the payout was made on Nov 16
    html = client.get("/staff/earnings?from=2026-11-16").get_data(as_text=True)
    assert f'id="payout-{built.payouts["paid"].id}"' in html
    assert f'id="split-{s["paid_out"].id}"' not in html and f'id="split-{s["in_window"].id}"' in html
    html = client.get("/staff/earnings?from=2027-01-01").get_data(as_text=True)
    assert "No paid visits in these dates." in html and totals(html)["earned"] == "$0.00"


@pytest.mark.parametrize("query, message", [
    ("from=yesterday", "The start date is not a date: dates look like 2026-12-31."),
    ("to=2026-02-30", "The end date is not a date"),
    ("from=9999-12-31", "The start date is out of range"),
    ("from=0001-01-01", "The start date is out of range"),
    ("from=2026-12-01&to=2026-11-01", "The start date must be on or before the end date."),
    ("from=" + "9" * 300, "The start date is not a date"),
])
def test_a_bad_date_is_a_clear_400_on_every_earnings_route(app, db, client, factories, built, query, message):
    sign_in(client, built.provider.user)
    for url in ("/staff/earnings", "/staff/earnings.csv"):
        response = client.get(f"{url}?{query}")
        assert response.status_code == 400 and message in response.get_data(as_text=True), url
    # A provider is refused the admin route before its dates are read.
    assert client.get(f"/admin/providers/{built.provider.id}/earnings?{query}").status_code == 403
    billing = app.test_client()
    assert isinstance(billing, IsolatedClient)
    assert login(billing, factories.user("billing").email).status_code == 303
    for url in (f"/admin/providers/{built.provider.id}/earnings", f"/admin/providers/{built.provider.id}/earnings.csv"):
        response = billing.get(f"{url}?{query}")
        assert response.status_code == 400 and message in response.get_data(as_text=True), url


def parse_csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_the_csv_has_the_same_figures_and_no_patient_name(db, client, built):
    sign_in(client, built.provider.user)
    response = client.get("/staff/earnings.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="earnings-{built.provider.id}-all.csv"'
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    assert PATIENT_NAME not in body and "Zelda" not in body and "Quartermaine" not in body and TYPE_NAME not in body
    assert "acct_" not in body and "ch_" not in body and "tr_" not in body     # no Stripe ids either
    rows = parse_csv(response)
    assert list(rows[0]) == list(earnings_service.CSV_COLUMNS)
    by_ref = {}
    for row in rows:
        by_ref.setdefault(int(row["visit_reference"]), []).append(row)
    s = built.splits
    assert len(rows) == 8 and s["no_account"].appointment_id not in by_ref
    (paid,) = by_ref[s["paid_out"].appointment_id]
    assert paid == {"visit_reference": str(s["paid_out"].appointment_id), "visit_date": "2026-11-02",
                    "visit_time": "10:00", "charge": "Visit", "gross": "100.00", "stripe_fee": "3.20",
                    "platform_fee": "10.00", "share": "86.80", "status": "Paid out",
                    "status_detail": "In payout of Nov 16, 2026", "transferred": "86.80", "reversed": "0.00",
                    "payout_date": "2026-11-16", "payout_status": "Paid"}
    (partial,) = by_ref[s["partial"].appointment_id]
    assert (partial["visit_date"], partial["visit_time"], partial["status"], partial["reversed"]) == \
        ("2026-11-02", "22:30", "Transferred", "20.00")
    hybrid = by_ref[s["hybrid_deposit"].appointment_id]
    assert [(r["charge"], r["status"], r["status_detail"]) for r in hybrid] == [
        ("Deposit", "Paid out", "In payout of Nov 16, 2026"), ("Balance", "Held", "Dispute open")]
    assert sorted(r["status"] for r in rows) == ["Forfeited", "Held", "Held", "Held", "Paid out", "Paid out",
                                                 "Reversed", "Transferred"]
    # The range applies to the export too, and names the file.
    response = client.get("/staff/earnings.csv?from=2026-11-02&to=2026-11-02")
    assert 'filename="earnings-%d-2026-11-02-2026-11-02.csv"' % built.provider.id in \
        response.headers["Content-Disposition"]
    assert {int(r["visit_reference"]) for r in parse_csv(response)} == {s["paid_out"].appointment_id,
                                                                        s["partial"].appointment_id}


def test_a_provider_without_an_account_sees_why_the_share_waits(db, client, built):
    sign_in(client, built.other.user)
    html = client.get("/staff/earnings").get_data(as_text=True)
    row = row_of(html, built.splits["no_account"])
    assert "Held" in row and "No payout account yet" in row
    assert 'id="earnings-account">Not connected<' in html and "Set up payouts" in html
    for key in ("paid_out", "partial", "reversed"):                # none of provider A's
        assert f'id="split-{built.splits[key].id}"' not in html
    assert totals(html)["held"] == "$25.83"


def test_roles_a_provider_sees_only_their_own_billing_and_admins_any(app, db, client, factories, built):
    sign_in(client, built.other.user)
    # The admin route is not a provider's, whichever id.
    for provider_id in (built.provider.id, built.other.id):
        assert client.get(f"/admin/providers/{provider_id}/earnings").status_code == 403
        assert client.get(f"/admin/providers/{provider_id}/earnings.csv").status_code == 403
    # Their own CSV has only their row.
    rows = parse_csv(client.get("/staff/earnings.csv"))
    assert [int(r["visit_reference"]) for r in rows] == [built.splits["no_account"].appointment_id]

    for role in ("billing", "admin"):
        staff = app.test_client()
        assert login(staff, factories.user(role).email).status_code == 303
        page = staff.get(f"/admin/providers/{built.provider.id}/earnings")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "Earnings of Dr. Ada Quill" in html and totals(html)["earned"] == "$352.80"
        assert PATIENT_NAME not in html
        exported = staff.get(f"/admin/providers/{built.provider.id}/earnings.csv")
        assert exported.status_code == 200 and len(parse_csv(exported)) == 8
        assert exported.headers["Cache-Control"] == "no-store"
        assert staff.get("/admin/providers/2147483647/earnings").status_code == 404
        assert staff.get("/admin/providers/99999999999999/earnings.csv").status_code == 404
        # Their own earnings page is a provider's.
        assert staff.get("/staff/earnings").status_code == 403
    patient = app.test_client()
    assert login(patient, factories.user("patient").email).status_code == 303
    assert patient.get(f"/admin/providers/{built.provider.id}/earnings").status_code == 403
    assert patient.get("/staff/earnings").status_code == 403
    assert app.test_client().get("/staff/earnings").status_code == 302


def test_the_admins_payout_list_links_each_providers_earnings(db, client, login_as, built):
    login_as("admin")
    html = client.get("/admin/payouts").get_data(as_text=True)
    assert f'href="/admin/providers/{built.provider.id}/earnings"' in html
    assert f'href="/admin/providers/{built.other.id}/earnings"' in html


def test_the_provider_nav_links_earnings_and_a_provider_without_a_profile_is_told(db, client, login_as):
    login_as("provider")
    html = client.get("/staff/earnings").get_data(as_text=True)
    assert 'href="/staff/earnings">Earnings</a>' in html
    assert "Your provider profile is not set up yet" in html
    assert client.get("/staff/earnings.csv").status_code == 404


def test_the_service_reads_only(db, built, clock):
    """for_provider changes nothing (no flush, no row): the pages are safe to reload."""
    before = {s.id: (s.status, s.transferred_cents, s.reversed_cents) for s in db.query(PayoutSplit)}
    found = earnings_service.for_provider(db, built.provider.id, now=clock.now())
    assert not db.new and not db.dirty
    assert {s.id: (s.status, s.transferred_cents, s.reversed_cents) for s in db.query(PayoutSplit)} == before
    assert found.timezone == "America/New_York" and found.account_status == "enabled"
    assert [v.status for v in found.visits].count("held") == 3
    with pytest.raises(earnings_service.BadRange):
        earnings_service.for_provider(db, built.provider.id, now=clock.now(),
                                      start=datetime(2026, 12, 2).date(), end=datetime(2026, 12, 1).date())


def test_moves_being_sent_and_a_payout_on_its_way_are_said(db, client, built, clock):
    """A transfer or reversal stored but not yet answered by Stripe, and a payout not yet arrived."""
    s = built.splits
    account = db.query(ProviderAccount).filter_by(provider_id=built.provider.id).one()
    db.add(ProviderTransfer(split_id=s["due"].id, provider_account_id=account.id, number=1, amount_cents=3454,
                            status="creating"))
    partial_transfer = s["partial"].transfers[0]
    disputed = Dispute(stripe_dispute_id="du_earn_sending", stripe_charge_id=s["partial"].stripe_charge_id,
                       charge_id=s["partial"].charge_id, appointment_id=s["partial"].appointment_id,
                       amount_cents=5000, reason="fraudulent", status="needs_response")
    db.add(disputed)
    db.flush()
    db.add(TransferReversal(transfer_id=partial_transfer.id, amount_cents=4343, reason="dispute",
                            dispute_id=disputed.id, status="creating"))
    built.payouts["paid"].status, built.payouts["paid"].arrival_date = "in_transit", at(12, 9, 0)
    db.commit()
    sign_in(client, built.provider.user)
    html = client.get("/staff/earnings").get_data(as_text=True)
    assert "Held" in row_of(html, s["due"]) and "Transfer of $34.54 being sent" in row_of(html, s["due"])
    assert "Transfer due" not in row_of(html, s["due"])
    partial = row_of(html, s["partial"])
    assert "Dispute open; refund reversed $20.00; dispute reversal of $43.43 being sent" in partial
    assert field(partial, "reversed") == "$20.00"            # what Stripe has reversed so far
    assert "In payout of Nov 16, 2026 (on its way)" in row_of(html, s["paid_out"])
    start = html.index(f'id="payout-{built.payouts["paid"].id}"')
    assert "On its way" in html[start:start + 600] and "Expected Dec 9, 2026" in html[start:start + 600]
