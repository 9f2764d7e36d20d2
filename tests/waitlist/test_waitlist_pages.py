"""The waitlist's pages without a browser: join (and its refusals), "My waitlist" and leave; the
offer link's GET uses nothing (previews); staff's list per provider and the admin's refill figure."""
import re
from datetime import timedelta

from app.services import booking, waitlist
from app.services.audit import Actor
from tests.helpers.web import login
from tests.waitlist.conftest import book, cancel, offers_of, token_of, wait

JOIN = {"type_id": None, "first_day": "2026-12-07", "last_day": "2026-12-20", "weekdays": ["0", "1", "2"],
        "earliest": "09:00", "latest": "12:00"}


def test_a_patient_joins_sees_and_leaves_their_waitlist(client, forms, db, factories, clock, wl_clinic):
    from app.models import WaitlistEntry

    user = factories.user("patient")
    assert login(client, user.email).status_code == 303
    page = client.get(f"/book/providers/{wl_clinic.provider.id}?type_id={wl_clinic.visit.id}").get_data(as_text=True)
    assert f"/waitlist/join?provider_id={wl_clinic.provider.id}" in page.replace("&amp;", "&")

    form_url = f"/waitlist/join?provider_id={wl_clinic.provider.id}&type_id={wl_clinic.visit.id}"
    data = {**JOIN, "type_id": wl_clinic.visit.id, "provider_id": wl_clinic.provider.id, "latest": "08:00"}
    refused = forms.post("/waitlist", data, page=form_url)
    assert refused.status_code == 422
    assert "The latest time must be after the earliest time." in refused.get_data(as_text=True)
    assert db.query(WaitlistEntry).count() == 0

    joined = forms.post("/waitlist", {**data, "latest": "12:00"}, page=form_url)
    assert joined.status_code == 303
    mine = client.get(joined.headers["Location"])
    html = mine.get_data(as_text=True)
    assert mine.status_code == 200 and "no-store" in mine.headers["Cache-Control"]
    assert "You are on the waitlist." in html and "Dr. Wendy List" in html and "Mon Tue Wed" in html
    [entry] = db.query(WaitlistEntry).all()
    assert (entry.weekdays, entry.earliest.hour, entry.latest.hour) == (0b0000111, 9, 12)

    left = forms.post(f"/waitlist/{entry.id}/leave", {}, page="/waitlist")
    assert left.status_code == 303
    html = client.get(left.headers["Location"]).get_data(as_text=True)
    assert "You left the waitlist." in html and "You are not on the waitlist." in html
    db.expire_all()
    assert db.get(WaitlistEntry, entry.id).status == "left"


def test_another_patients_entry_cannot_be_left(client, forms, db, factories, clock, wl_clinic):
    entry = wait(db, clock, factories.patient(), wl_clinic)
    assert login(client, factories.user("patient").email).status_code == 303
    assert forms.post(f"/waitlist/{entry.id}/leave", {}, page="/waitlist").status_code == 404
    assert waitlist.entries_for(db, entry.patient_id) != []


def test_bad_input_never_gets_a_5xx(client, forms, db, factories, clock, wl_clinic):
    assert login(client, factories.user("patient").email).status_code == 303
    for bad in ({"type_id": "x"}, {"type_id": wl_clinic.visit.id, "first_day": "yesterday"},
                {"type_id": wl_clinic.visit.id, "weekdays": ["9"]}, {"type_id": 10 ** 12},
                {"type_id": wl_clinic.visit.id, "specialty_id": "999999"},
                {"type_id": wl_clinic.visit.id, "earliest": "25:99"}):
        answer = forms.post("/waitlist", {**JOIN, **bad}, page="/waitlist/join")
        assert answer.status_code == 422, (bad, answer.status_code)
    assert client.get("/waitlist/join?provider_id=abc&type_id=x").status_code == 200
    assert client.get("/waitlist/join?provider_id=999999999999&type_id=%00").status_code == 400   # the input guard


def test_opening_an_offer_link_uses_nothing_and_a_tap_goes_to_checkout(client, db, factories, clock, policy,
                                                                       wl_clinic, offer_settings):
    from app.models import LinkToken

    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    entry = wait(db, clock, factories.patient(), wl_clinic)
    cancel(db, clock, appointment)
    [offer] = offers_of(db, entry)
    token = token_of(db, offer)
    for _ in range(2):                                               # a preview, then the patient
        page = client.get(f"/w/{token}")
        assert page.status_code == 200 and "Take this time and pay" in page.get_data(as_text=True)
    db.expire_all()
    assert db.get(LinkToken, offer.link_id).used_at is None and offers_of(db, entry)[0].status == "offered"
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    tapped = client.post(f"/w/{token}", data={"csrf_token": csrf})
    assert tapped.status_code == 303 and "/checkout/" in tapped.headers["Location"]
    again = client.post(f"/w/{token}", data={"csrf_token": csrf})     # a second tap: the same checkout
    assert again.status_code == 303 and again.headers["Location"] == tapped.headers["Location"]
    assert client.get(tapped.headers["Location"]).status_code == 200   # the link granted this checkout
    assert client.get("/w/not-a-token").status_code == 404


def test_staff_see_the_waitlist_per_provider_and_the_admin_the_refill_figure(client, db, factories, clock, policy,
                                                                           wl_clinic, offer_settings):
    from app.models import Appointment

    appointment = book(db, clock, policy, factories.patient(), wl_clinic)
    waiting = factories.user("patient", full_name="Wanda Waiting")
    entry = wait(db, clock, waiting.patient, wl_clinic)
    factories.user("patient", full_name="Sam Specialty")
    wait(db, clock, db.query(type(waiting)).filter_by(full_name="Sam Specialty").one().patient, wl_clinic,
         provider=False)
    cancel(db, clock, appointment)
    hold = waitlist.claim(db, token_of(db, offers_of(db, entry)[0]), now=clock.now(), hold_policy=policy)
    db.commit()

    admin = factories.user("admin")
    assert login(client, admin.email).status_code == 303
    page = client.get(f"/staff/waitlist?provider_id={wl_clinic.provider.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "no-store" in page.headers["Cache-Control"]
    assert "Wanda Waiting" in html and "Sam Specialty" in html and "Specialty: General practice" in html
    assert re.search(r'id="provider-refilled">0<', html)
    assert re.search(r'id="waitlist-refilled">[^<]*<strong>0</strong>', client.get("/admin/").get_data(as_text=True))

    booking.confirm(db, db.get(Appointment, hold.id), actor=Actor.system("test"), now=clock.now())
    db.commit()
    html = client.get(f"/staff/waitlist?provider_id={wl_clinic.provider.id}").get_data(as_text=True)
    assert re.search(r'id="provider-refilled">1<', html) and "Wanda Waiting" not in html     # fulfilled
    assert re.search(r'id="waitlist-refilled">[^<]*<strong>1</strong>', client.get("/admin/").get_data(as_text=True))
    assert client.get("/staff/waitlist?provider_id=abc").status_code == 404
    clock.advance(timedelta(seconds=1))


def test_a_spanish_speaking_patient_sees_the_waitlist_in_spanish(client, db, factories, clock, policy, wl_clinic,
                                                                  offer_settings):
    user = factories.user("patient")
    user.locale = "es"
    db.commit()
    wait(db, clock, user.patient, wl_clinic)
    assert login(client, user.email).status_code == 303
    html = client.get("/waitlist").get_data(as_text=True)
    assert "Mi lista de espera" in html and "Salir de la lista de espera" in html
    html = client.get(f"/waitlist/join?provider_id={wl_clinic.provider.id}").get_data(as_text=True)
    assert "Unirse a la lista de espera" in html and "Hora más temprana" in html
