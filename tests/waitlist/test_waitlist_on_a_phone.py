"""On a phone: a patient joins the waitlist from the provider's page; a confirmed visit is canceled
and the slot is offered by SMS to the first waitlisted patient, who ignores it; the offer expires
and the next patient (the one who joined on the phone) is offered it, taps the link (a preview
fetch uses nothing), pays and is booked. The ignored link then says the offer expired.

And a real race: two patients offered the same slot tap their links at the same moment through
the HTTP layer: exactly one gets a hold (and checkout), the other a clear "just taken" page, and
nothing is left half-done."""
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import requests
from playwright.sync_api import expect
from rq import SimpleWorker

from app.jobs import get_queue, redis_connection, set_app
from tests.helpers.concurrency import run_together
from tests.helpers.phone import sign_in
from tests.waitlist.conftest import SLOT, book, cancel, wait

pytestmark = pytest.mark.e2e

URL = re.compile(r"https?://[^\s<]+")
EXPIRY, CVC, ZIP = "12 / 34", "123", "10001"


@pytest.fixture
def jobs(app):
    set_app(app)
    queue = get_queue("default", app)
    queue.empty()

    class Jobs:
        def run(self):
            SimpleWorker([queue], connection=redis_connection(app)).work(burst=True)

    yield Jobs()
    queue.empty()


def sms_link(db, user_id) -> str:
    from app.models import Notification

    db.expire_all()
    [sms] = db.query(Notification).filter_by(template="waitlist_offer", user_id=user_id, provider="outbox").all()
    assert sms.channel == "sms" and "Tuesday, December 8 at 10:00 AM" in sms.body
    assert "Wendy" not in sms.body and "Video consult" not in sms.body          # no PHI by SMS
    return URL.search(sms.body).group(0)


def verified(db, factories):
    user = factories.user("patient")
    user.phone_verified_at = datetime.now(timezone.utc)
    db.commit()
    return user


def test_an_ignored_offer_goes_to_the_next_patient_who_takes_it_and_pays(
        live_server, browser, phone, factories, db, clock, policy, wl_clinic, offer_settings, jobs, sandbox):
    from app.jobs.waitlist import sweep_waitlist
    from app.models import Appointment, WaitlistEntry
    from app.services import waitlist

    owner = factories.patient()
    visit = book(db, clock, policy, owner, wl_clinic)
    ignorer = verified(db, factories)
    wait(db, clock, ignorer.patient, wl_clinic)                         # first on the list

    # The second patient joins on the phone, from the provider's page.
    taker = verified(db, factories)
    page = phone
    sign_in(page, live_server, taker.email)
    page.goto(f"{live_server}/book/providers/{wl_clinic.provider.id}?type_id={wl_clinic.visit.id}")
    page.get_by_role("link", name="Join the waitlist").click()
    expect(page.get_by_role("heading", name="Join the waitlist")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.get_by_label("Until").fill("2026-12-20")
    page.get_by_role("button", name="Join the waitlist").click()
    expect(page.get_by_role("heading", name="My waitlist")).to_be_visible()
    expect(page.get_by_text("You are on the waitlist.")).to_be_visible()
    expect(page.locator("article.waitlist-entry")).to_contain_text("Dr. Wendy List")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    cancel(db, clock, visit)                                            # the slot frees
    jobs.run()                                                          # the SMS goes (the outbox)
    ignored = sms_link(db, ignorer.id)
    page.reload()
    expect(page.locator("article.waitlist-entry .offer")).to_have_count(0)     # not the taker's turn yet

    clock.advance(offer_settings.WAITLIST_OFFER_TTL + timedelta(seconds=1))    # the first patient ignores it
    sweep_waitlist()
    jobs.run()
    link = sms_link(db, taker.id)
    path = link[link.index("/w/"):]

    preview = requests.get(live_server + path, timeout=10)              # a message app's link preview
    assert preview.status_code == 200 and "Take this time and pay" in preview.text

    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        tap = context.new_page()                                        # the messages app: not signed in
        tap.goto(live_server + path)
        expect(tap.get_by_role("heading", name="A time opened up")).to_be_visible()
        expect(tap.locator("section.card")).to_contain_text("Tuesday, December 8 at 10:00 AM")
        assert tap.evaluate("document.documentElement.scrollWidth") <= 360
        tap.get_by_role("button", name="Take this time and pay").click()
        expect(tap.get_by_role("heading", name="Pay to book")).to_be_visible()
        tap.get_by_label("Card number").fill("4242424242424242")
        tap.get_by_label("Expiration (MM / YY)").fill(EXPIRY)
        tap.get_by_label("CVC").fill(CVC)
        tap.get_by_label("ZIP").fill(ZIP)
        tap.get_by_role("button", name="Pay").click()
        expect(tap.get_by_role("heading", name="You're booked")).to_be_visible()

        tap.goto(live_server + ignored[ignored.index("/w/"):])          # the ignored link, later
        expect(tap.get_by_role("heading", name="This offer is no longer open")).to_be_visible()
        expect(tap.get_by_role("alert")).to_contain_text("This offer has expired")
    finally:
        context.close()

    db.expire_all()
    [booked] = db.query(Appointment).filter(Appointment.patient_id == taker.patient.id).all()
    assert booked.status == "confirmed" and booked.starts_at == SLOT
    assert db.query(WaitlistEntry).filter_by(patient_id=taker.patient.id).one().status == "fulfilled"
    assert waitlist.refilled_count(db) == 1

    page.goto(f"{live_server}/waitlist")                                # the taker's list is empty now
    expect(page.get_by_text("You are not on the waitlist.")).to_be_visible()


def test_two_patients_tapping_the_same_slot_at_once_get_one_booking(
        app, live_server, browser, factories, db, clock, policy, wl_clinic, offer_settings, jobs, monkeypatch):
    from app.models import Appointment, LinkToken, WaitlistOffer

    monkeypatch.setitem(app.config, "SETTINGS", replace(offer_settings, WAITLIST_OFFER_FANOUT=2))
    visit = book(db, clock, policy, factories.patient(), wl_clinic)
    patients = [verified(db, factories) for _ in range(2)]
    for user in patients:
        wait(db, clock, user.patient, wl_clinic)
    cancel(db, clock, visit)
    jobs.run()
    paths = [(lambda link: link[link.index("/w/"):])(sms_link(db, user.id)) for user in patients]

    sessions = []
    for path in paths:                                                   # each patient opens their link
        session = requests.Session()
        page = session.get(live_server + path, timeout=10)
        assert page.status_code == 200
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        sessions.append((session, path, csrf))

    def tap(session, path, csrf):
        return lambda: session.post(live_server + path, data={"csrf_token": csrf}, allow_redirects=False,
                                    timeout=30)

    answers = run_together(*(tap(*s) for s in sessions))
    codes = sorted(a.status_code for a in answers)
    assert codes == [303, 409], codes
    won = next(a for a in answers if a.status_code == 303)
    lost = next(a for a in answers if a.status_code == 409)
    assert "/checkout/" in won.headers["Location"]
    assert "just taken by someone else" in lost.text and "still on the waitlist" in lost.text

    db.expire_all()
    holding = db.query(Appointment).filter(Appointment.provider_id == wl_clinic.provider.id,
                                           Appointment.status.in_(("held", "confirmed", "checked_in"))).all()
    assert len(holding) == 1 and holding[0].starts_at == SLOT
    offers = {o.patient_id: o for o in db.query(WaitlistOffer).all()}
    winner = next(o for o in offers.values() if o.status == "claimed")
    loser = next(o for o in offers.values() if o.status != "claimed")
    assert winner.hold_id == holding[0].id and holding[0].patient_id == winner.patient_id
    assert loser.status == "withdrawn" and loser.hold_id is None
    assert db.query(Appointment).filter_by(patient_id=loser.patient_id).count() == 0     # nothing half-done
    assert db.get(LinkToken, loser.link_id).used_at is not None                         # its link is spent

    # The loser's browser, opening the link again, sees the same clear page.
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        loser_path = paths[[u.patient.id for u in patients].index(loser.patient_id)]
        page.goto(live_server + loser_path)
        expect(page.get_by_role("heading", name="This offer is no longer open")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("just taken by someone else")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
    finally:
        context.close()


def test_one_offer_tapped_twice_at_once_gives_one_hold_and_one_checkout(
        app, live_server, factories, db, clock, policy, wl_clinic, offer_settings, jobs):
    """The same link tapped at the same moment (two devices, or a forwarded message): the offer row is
    locked by the first tap; the second waits, finds it taken by this link and goes to the same checkout."""
    from app.models import Appointment, WaitlistOffer

    visit = book(db, clock, policy, factories.patient(), wl_clinic)
    user = verified(db, factories)
    wait(db, clock, user.patient, wl_clinic)
    cancel(db, clock, visit)
    jobs.run()
    link = sms_link(db, user.id)
    path = link[link.index("/w/"):]
    sessions = []
    for _ in range(2):
        session = requests.Session()
        page = session.get(live_server + path, timeout=10)
        sessions.append((session, re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)))

    answers = run_together(*(lambda s=s, c=c: s.post(live_server + path, data={"csrf_token": c},
                                                     allow_redirects=False, timeout=30) for s, c in sessions))
    assert [a.status_code for a in answers] == [303, 303]
    assert answers[0].headers["Location"] == answers[1].headers["Location"]
    db.expire_all()
    [hold] = db.query(Appointment).filter(Appointment.patient_id == user.patient.id).all()
    assert hold.status == "held" and answers[0].headers["Location"].endswith(f"/checkout/{hold.id}")
    [offer] = db.query(WaitlistOffer).all()
    assert offer.status == "claimed" and offer.hold_id == hold.id
    for session, _ in sessions:                                        # each device may finish checkout
        assert session.get(live_server + f"/checkout/{hold.id}", timeout=30).status_code == 200
