"""The visit link: says when it opens, opens for the patient and the provider only."""
from datetime import datetime, timezone

from tests.helpers.payments import SUCCESS, Appointment, fresh, settle, start
from tests.helpers.web import IsolatedClient, login

UTC = timezone.utc


def _confirmed(db, held, clock, browser_pay):
    attempt = start(db, held, clock)
    browser_pay.pay(attempt, SUCCESS)
    assert settle(db, attempt).state == "confirmed"
    return fresh(db, Appointment, held.id)


def _signed_in(app, user):
    app.test_client_class = IsolatedClient
    client = app.test_client()
    assert login(client, user.email).status_code == 303
    return client


def test_visit_link_before_in_and_for_others(app, db, held, clock, browser_pay, factories):
    appointment = _confirmed(db, held, clock, browser_pay)
    room = appointment.telehealth_room
    assert len(room) >= 22                               # token_urlsafe(16): 128 random bits
    patient = _signed_in(app, appointment.patient.user)
    provider = _signed_in(app, appointment.provider.user)
    url = f"/visits/{appointment.id}/join"

    early = patient.get(url)
    assert early.status_code == 200
    page = early.get_data(as_text=True)
    assert "opens at" in page and "9:50 AM" in page     # 10:00 New York, 10 minutes before
    assert room not in page

    clock.set(datetime(2026, 12, 7, 14, 52, tzinfo=UTC))
    for who in (patient, provider):
        response = who.get(url)
        assert response.status_code == 302
        assert response.headers["Location"].endswith(f"/visits/room/{room}")
        assert who.get(response.headers["Location"]).status_code == 200

    for role in ("patient", "provider", "billing", "admin"):
        stranger = _signed_in(app, factories.user(role))
        assert stranger.get(url).status_code == 403, role
        assert stranger.get(f"/visits/room/{room}").status_code == 403, role
    anonymous = app.test_client().get(url)
    assert anonymous.status_code in (302, 303) and "/login" in anonymous.headers["Location"]
