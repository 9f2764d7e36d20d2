"""Issue 16's first "Done when", end to end: a provider is paid for a visit, from onboarding to their bank.

Through the real parts: Chromium (the provider on a laptop, the patient on a phone) against the live
server, the session's Stripe sandbox (its onboarding page, its Stripe.js, its webhooks to the live
server), PostgreSQL and Redis (the webhooks' processing runs from the job queue, as the worker would).

1. The scenario's own window of the sandbox's clock is opened (tests/ledger/sandbox_window.py): other
   tests' delayed money (refund failures, disputes, payouts) fires before it, so the reconciliation of
   this window sees only what this journey moved.
2. The provider connects a payout account: Payouts -> Set up payouts -> Continue to Stripe -> the sandbox's
   onboarding page -> Agree and submit -> back on the portal, "Ready to be paid"; ``account.updated``
   reaches the portal and is processed.
3. A patient books a deposit-to-book visit with that provider on a phone and pays with 4242; the provider
   checks the patient in and marks the visit completed on the day view.
4. The payout tick (app.jobs.payouts.tick, in-process) makes the split but moves nothing during the hold
   (earnings: "Held", hold until <day>); after PAYOUT_HOLD it transfers the share: the earnings page shows
   the visit transferred with the gross, Stripe's fee (read from the charge's balance transaction at
   Stripe), the clinic's default platform fee and the share; the connected account holds exactly the share,
   pending until the charge's funds are available (and that week's payout run finds nothing to pay).
5. The sandbox's clock passes the funds' availability; at the next weekly payout moment
   (PAYOUT_WEEKDAY, PAYOUT_HOUR UTC) the weekly job pays the balance out; the sandbox's ``payout.paid``
   webhook is processed: the earnings page shows the visit paid out and the payout "Paid" with its amount;
   the connected account's balance is 0.
6. Every ledger transaction balances and the reconciliation of this window (the platform's and the
   connected account's balance transactions) finds no mismatch, with matches.

Throughout, nothing the app sends to Stripe (nor the phone's Stripe.js, nor what Stripe holds of the
charge, the transfer and the payout) carries the patient's name or email or the visit type's name.
"""
from __future__ import annotations

import re
import time
from datetime import timedelta
from urllib.parse import unquote_plus, urlsplit
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from rq import SimpleWorker
from sqlalchemy import select

from app.jobs import get_queue, redis_connection, set_app
from app.jobs import payouts as payout_jobs
from app.models import Appointment, Charge, PaymentAttempt, ProviderPayout, StripeEvent
from app.services import ledger, ledger_reconcile, payout_accounts, payouts
from app.services.clinic import current_clinic
from app.services.gateway import gateway
from tests.helpers.payments import SUCCESS, recording_stripe
from tests.helpers.phone import fill_card, onboard_payouts, sign_in
from tests.ledger.sandbox_window import close_window, open_window
from tests.payouts.helpers_money import assert_ledger_balanced, balance_of, client, group_at_stripe

pytestmark = pytest.mark.e2e

PATIENT_NAME, PATIENT_EMAIL = "Harriet Quellbright", "harriet.quellbright@example.test"
TYPE_NAME = "Eczema flare follow-up"
PRICE = 12500
FUNDS_AVAILABLE = 2 * 86400 + 60        # a card charge's funds (and the transfer's) are available 2 days later


# -- waiting, with a deadline --------------------------------------------------------------------------------

def until(check, *, what: str, seconds: float = 30.0):
    """``check()`` until it is truthy (its value returned), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def run_the_queue(app) -> None:
    """What the worker would do now: every queued job (the webhooks' drain, the messages), none failing."""
    set_app(app)
    queue = get_queue("default", app)
    before = set(queue.failed_job_registry.get_job_ids())
    SimpleWorker([queue], connection=redis_connection(app)).work(burst=True)
    failed = [j for j in queue.failed_job_registry.get_job_ids() if j not in before]
    assert failed == [], [(job.func_name, (job.latest_result().exc_string or "")[-400:])
                          for job in map(queue.fetch_job, failed)]


def webhooks_processed(app, db, sandbox, *, event_type: str, object_id: str) -> StripeEvent:
    """Wait for the sandbox to deliver, drain the queue, until the event about ``object_id`` is processed."""
    def done():
        assert sandbox.wait_for_webhooks(20)
        run_the_queue(app)
        db.expire_all()
        return db.scalar(select(StripeEvent).where(StripeEvent.type == event_type, StripeEvent.object_id == object_id,
                                                   StripeEvent.processed_at.is_not(None)))
    return until(done, what=f"{event_type} of {object_id} processed")


# -- the provider's browser ------------------------------------------------------------------------------------

def staff_page(page, base: str, email: str, path: str) -> None:
    """Open ``path``; the provider signs in again when the idle log-off (the app's clock moved) sent them out."""
    page.goto(base + path, wait_until="load")
    if urlsplit(page.url).path.startswith("/login"):
        sign_in(page, base, email)
        page.goto(base + path, wait_until="load")
    assert urlsplit(page.url).path == urlsplit(path).path, page.url


def mark_on_the_day_view(page, base: str, email: str, appointment: Appointment, button: str, status: str) -> None:
    day = appointment.starts_at.astimezone(ZoneInfo(appointment.provider.timezone)).date().isoformat()
    staff_page(page, base, email, f"/staff/day?date={day}")
    card = page.locator(f"#appt-{appointment.id}")
    expect(card).to_contain_text(PATIENT_NAME)
    card.get_by_role("button", name=button).click()
    expect(card.locator(".status")).to_have_text(status)


def earnings_row(page, base: str, email: str, appointment_id: int):
    staff_page(page, base, email, "/staff/earnings")
    expect(page.get_by_role("heading", name="Earnings", exact=True)).to_be_visible()
    return page.locator(f'#earnings-visits tr[data-visit="{appointment_id}"]')


def dollars(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


# -- the patient's phone ----------------------------------------------------------------------------------------

def book_and_pay_on_the_phone(page, base: str, db, patient_user, provider, visit_type) -> Appointment:
    """Signed in, the patient picks the first free time, reviews it and pays with 4242: booked."""
    sign_in(page, base, patient_user.email)
    page.goto(f"{base}/book/providers/{provider.id}?type_id={visit_type.id}")
    page.locator("button.slot").first.click()
    expect(page.get_by_role("heading", name="Review your visit")).to_be_visible()
    page.get_by_role("link", name="Continue to payment").click()
    expect(page.get_by_role("heading", name="Pay to book")).to_be_visible()
    expect(page.get_by_text(f"Total: {dollars(PRICE)}")).to_be_visible()
    fill_card(page, SUCCESS)
    page.get_by_role("button", name=f"Pay {dollars(PRICE)}").click()
    expect(page.get_by_role("heading", name="You're booked")).to_be_visible(timeout=15000)
    expect(page.get_by_text(f"Paid: {dollars(PRICE)}")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    db.expire_all()
    appointment = db.scalars(select(Appointment).where(Appointment.patient_id == patient_user.patient.id)).one()
    assert appointment.status == "confirmed" and appointment.provider_id == provider.id
    return appointment


def watch_stripe_js(page, api_base: str) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(f"{r.url}\n{r.post_data or ''}") if r.url.startswith(api_base) else None)
    return seen


def the_charge_at_stripe(db, stripe_admin, appointment_id: int):
    """The deposit's Stripe charge, with its balance transaction (Stripe's fee)."""
    db.expire_all()
    attempt = db.scalars(select(PaymentAttempt).join(Charge, Charge.id == PaymentAttempt.charge_id)
                         .where(Charge.appointment_id == appointment_id, Charge.purpose == "deposit",
                                PaymentAttempt.status == "succeeded")).one()
    intent = stripe_admin.intent(attempt.stripe_payment_intent_id)
    return intent, stripe_admin.client.v1.charges.retrieve(intent.latest_charge,
                                                            params={"expand": ["balance_transaction"]})


def expected_split(db, visit_type, fee_cents: int) -> tuple[int, int, int]:
    """(Stripe fee, platform fee, share) of the whole price: the clinic's default rule (the type has none),
    its percent rounded half up, plus its fixed amount."""
    assert visit_type.platform_fee_percent_bp is None and visit_type.platform_fee_fixed_cents is None
    clinic = current_clinic(db)
    percent_bp, fixed = clinic.platform_fee_percent_bp or 0, clinic.platform_fee_fixed_cents or 0
    platform = (PRICE * percent_bp + 5000) // 10000 + fixed
    share = PRICE - fee_cents - platform
    assert share > 0, (fee_cents, platform)
    return fee_cents, platform, share


def next_payout_moment(now, settings):
    """The first weekly payout moment (PAYOUT_WEEKDAY at PAYOUT_HOUR UTC) after ``now``."""
    moment = payouts.weekly_payout_moment(now, weekday=settings.PAYOUT_WEEKDAY, hour=settings.PAYOUT_HOUR)
    if moment <= now:
        moment = payouts.weekly_payout_moment(now + timedelta(days=7), weekday=settings.PAYOUT_WEEKDAY,
                                              hour=settings.PAYOUT_HOUR)
    return moment


# -- the journey ---------------------------------------------------------------------------------------------------

def test_a_provider_is_paid_for_a_visit_from_onboarding_to_their_bank(
        app, live_server, laptop, phone, db, factories, clock, sandbox, queue, stripe_admin):
    settings = app.config["SETTINGS"]
    set_app(app)
    visit_type = factories.appointment_type(name=TYPE_NAME, price_cents=PRICE, payment_timing="deposit_to_book")
    provider = factories.provider(types=[visit_type], full_name="Dr. Ada Quill")
    patient_user = factories.user("patient", full_name=PATIENT_NAME, email=PATIENT_EMAIL)
    email = provider.user.email

    with recording_stripe(app) as recording:
        stripe_js = watch_stripe_js(phone, sandbox.api_base)

        # 1. This scenario's window of the sandbox's clock; the sandbox's webhooks to the portal.
        start = open_window(sandbox)
        sandbox.add_webhook_endpoint(f"{live_server}/webhooks/stripe")

        # 2. The provider onboards through the account link; account.updated reaches the portal.
        account = onboard_payouts(laptop, live_server, db, provider)
        webhooks_processed(app, db, sandbox, event_type="account.updated", object_id=account.stripe_account_id)
        db.expire_all()
        account = payout_accounts.account_for(db, provider.id)
        assert account.status == "enabled" and account.ready

        # 3. The patient books and pays on the phone; the provider checks them in and completes the visit.
        appointment = book_and_pay_on_the_phone(phone, live_server, db, patient_user, provider, visit_type)
        intent, charge = the_charge_at_stripe(db, stripe_admin, appointment.id)
        assert (intent.status, intent.amount_received, charge.amount_captured) == ("succeeded", PRICE, PRICE)
        webhooks_processed(app, db, sandbox, event_type="payment_intent.succeeded", object_id=intent.id)
        fee, platform, share = expected_split(db, visit_type, charge.balance_transaction.fee)
        assert charge.balance_transaction.net == PRICE - fee

        clock.set(appointment.starts_at)
        mark_on_the_day_view(laptop, live_server, email, appointment, "Check in", "Checked in")
        clock.advance(timedelta(minutes=10))
        mark_on_the_day_view(laptop, live_server, email, appointment, "Completed", "Completed")
        db.expire_all()
        assert db.get(Appointment, appointment.id).status == "completed"
        completed_at = clock.now()

        # 4. During the hold the tick makes the split and moves nothing.
        assert payout_jobs.tick()["splits"] == 1
        clock.advance(settings.PAYOUT_HOLD - timedelta(minutes=1))
        result = payout_jobs.tick()
        assert result["planned"] == {"transfers": 0, "reversals": 0}
        assert result["sent"] == {"reversals": 0, "transfers": 0, "failed": 0, "waiting": 0}
        assert group_at_stripe(sandbox, appointment.id, account) == []
        assert balance_of(sandbox, account.stripe_account_id) == (0, 0)
        clinic_zone = ZoneInfo(current_clinic(db).timezone)
        hold_day = (completed_at + settings.PAYOUT_HOLD).astimezone(clinic_zone)
        row = earnings_row(laptop, live_server, email, appointment.id)
        expect(row).to_have_attribute("data-status", "held")
        expect(row.locator('[data-field="status"]')).to_contain_text("Held")
        expect(row.locator('[data-field="detail"]')).to_contain_text(
            re.compile(f"hold until {hold_day.strftime('%b')} {hold_day.day}, {hold_day.year}", re.I))
        expect(row.locator('[data-field="share"]')).to_have_text(dollars(share))

        # ... and once the hold is over, the tick transfers the share.
        clock.set(completed_at + settings.PAYOUT_HOLD + timedelta(seconds=1))
        assert payout_jobs.tick()["sent"]["transfers"] == 1
        [transfer] = group_at_stripe(sandbox, appointment.id, account)
        assert (transfer.amount, transfer.source_transaction) == (share, charge.id)
        row = earnings_row(laptop, live_server, email, appointment.id)
        expect(row).to_have_attribute("data-status", "transferred")
        expect(row.locator('[data-field="status"]')).to_contain_text("Transferred")
        expect(row.locator('[data-field="charge"]')).to_have_text("Deposit")
        expect(row.locator('[data-field="gross"]')).to_have_text(dollars(PRICE))
        expect(row.locator('[data-field="stripe-fee"]')).to_have_text(dollars(fee))
        expect(row.locator('[data-field="platform-fee"]')).to_have_text(dollars(platform))
        expect(row.locator('[data-field="share"]')).to_have_text(dollars(share))
        expect(row.locator('[data-field="transferred"]')).to_have_text(dollars(share))
        expect(row.locator('[data-field="reversed"]')).to_have_text(dollars(0))
        expect(laptop.locator('[data-total="transferred"]')).to_have_text(dollars(share))
        expect(laptop.locator('[data-total="paid_out"]')).to_have_text(dollars(0))
        assert balance_of(sandbox, account.stripe_account_id) == (0, share)     # pending with the charge's funds
        # This week's payout run (its moment has passed) finds nothing available yet: nothing is paid.
        assert payouts.weekly_due(db, now=clock.now())
        assert payout_jobs.weekly_payouts() == {"nothing": 1}
        assert client(sandbox).v1.payouts.list(options={"stripe_account": account.stripe_account_id}).data == []

        # 5. The funds become available; at the next weekly moment the balance goes to the provider's bank.
        sandbox.advance_clock(FUNDS_AVAILABLE)
        assert balance_of(sandbox, account.stripe_account_id) == (share, 0)
        moment = next_payout_moment(clock.now(), settings)
        clock.set(moment - timedelta(minutes=1))
        assert not payouts.weekly_due(db, now=clock.now())
        clock.set(moment)
        assert payouts.weekly_due(db, now=clock.now())
        assert payout_jobs.weekly_payouts() == {"pending": 1}
        db.expire_all()
        payout = db.scalars(select(ProviderPayout).where(ProviderPayout.period == payouts.period_of(moment))).one()
        assert (payout.amount_cents, payout.status) == (share, "pending") and payout.stripe_payout_id
        assert balance_of(sandbox, account.stripe_account_id) == (0, 0)
        sandbox.advance_clock(60)                                    # the bank takes it: payout.paid
        webhooks_processed(app, db, sandbox, event_type="payout.paid", object_id=payout.stripe_payout_id)
        db.expire_all()
        assert db.get(ProviderPayout, payout.id).status == "paid"

        row = earnings_row(laptop, live_server, email, appointment.id)
        expect(row).to_have_attribute("data-status", "paid_out")
        expect(row.locator('[data-field="status"]')).to_contain_text("Paid out")
        expect(row.locator('[data-field="share"]')).to_have_text(dollars(share))
        shown = laptop.locator(f"#payout-{payout.id}")
        expect(shown).to_have_attribute("data-status", "paid")
        expect(shown.locator('[data-field="payout-amount"]')).to_have_text(dollars(share))
        expect(shown.locator('[data-field="payout-status"]')).to_have_text("Paid")
        expect(shown.locator('[data-field="payout-visits"]')).to_contain_text(f"Visit #{appointment.id}")
        expect(shown.locator('[data-field="payout-visits"]')).to_contain_text(dollars(share))
        expect(laptop.locator('[data-total="paid_out"]')).to_have_text(dollars(share))
        expect(laptop.locator("#earnings-payouts")).not_to_contain_text(PATIENT_NAME)
        expect(laptop.locator("main")).not_to_contain_text(TYPE_NAME)
        assert balance_of(sandbox, account.stripe_account_id) == (0, 0)
        [at_stripe] = client(sandbox).v1.payouts.list(options={"stripe_account": account.stripe_account_id}).data
        assert (at_stripe.id, at_stripe.amount, at_stripe.status) == (payout.stripe_payout_id, share, "paid")

        # 6. The ledger balances, and this window reconciles with Stripe to the cent.
        assert_ledger_balanced(db)
        assert ledger.balance(db, ledger.PROVIDER_PAYABLE, provider_id=provider.id) == 0
        run = ledger_reconcile.reconcile(db, gateway(), start=start, end=close_window(sandbox),
                                         day=clock.now().date(), connected_accounts=[account.stripe_account_id])
        db.commit()
        assert run.mismatches == [] and run.status == "matched"
        assert run.matched > 0

    # Nothing identifying the patient or the visit's kind went to Stripe, or is held there.
    assert any("/v1/transfers" in url for method, url, _ in recording.sent if method == "post")
    assert any("/v1/payouts" in url for method, url, _ in recording.sent if method == "post")
    sent = unquote_plus("\n".join(f"{url}\n{body}" for _, url, body in recording.sent))
    from_page = unquote_plus("\n".join(stripe_js))
    held = str([intent.to_dict(), charge.to_dict(), transfer.to_dict(), at_stripe.to_dict(),
                stripe_admin.client.v1.customers.retrieve(intent.customer).to_dict()])
    for secret in (PATIENT_NAME, *PATIENT_NAME.split(), PATIENT_EMAIL, TYPE_NAME, "Eczema"):
        for where, text in (("sent by the app", sent), ("sent by Stripe.js", from_page), ("held by Stripe", held)):
            assert secret.lower() not in text.lower(), f"{secret!r} {where}"
