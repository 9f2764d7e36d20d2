"""Nothing clinical or identifying leaves for Stripe: every request body and URL is inspected."""
import re

from app.models import Appointment
from app.services import booking
from app.services.audit import Actor
from tests.helpers.payments import MON_10_NY, SUCCESS, checkout_page, complete, fresh, recording_stripe, sign_in


def test_no_phi_in_any_request_to_stripe(app, db, client, factories, clock, policy, sandbox, browser_pay):
    specialty = factories.specialty(name="Xylodermatology")
    visit = factories.appointment_type(name="Eczema flare follow-up", price_cents=12500)
    provider = factories.provider(types=[visit], specialty=specialty, full_name="Bartholomew Quenby")
    patient = factories.user("patient", full_name="Zelda Marchbanks", email="zelda.marchbanks@example.test",
                             phone="+15555550199").patient
    with recording_stripe(app) as recording:
        held = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=provider.id, type_id=visit.id,
                                 starts_at=MON_10_NY, policy=policy,
                                 actor=Actor("user", patient.user_id, "patient"))
        db.commit()
        sign_in(client, patient.user)
        response, secret, csrf = checkout_page(client, held.id)
        assert response.status_code == 200 and secret
        attempt = fresh(db, Appointment, held.id)
        from app.services import payments

        attempt = payments.current_attempt(db, attempt)
        browser_pay.pay(attempt, SUCCESS)
        assert complete(client, held.id, csrf).json["state"] == "confirmed"
        assert fresh(db, Appointment, held.id).status == "confirmed"

    posts = [s for s in recording.sent if s[0] == "post"]
    assert {re.sub(r"pi_\w+", "pi", url.split("/v1/")[1]) for _, url, _ in posts} >= {
        "customers", "payment_intents", "payment_intents/pi/capture"}
    sent = "\n".join(f"{url}\n{body}" for _, url, body in recording.sent).lower()
    forbidden = ["Zelda", "Marchbanks", "zelda.marchbanks", "example.test", "5555550199",
                 "Bartholomew", "Quenby", "Xylodermatology", "Eczema", "flare"]
    for word in forbidden:
        assert word.lower() not in sent, f"{word!r} was sent to Stripe"
    # The metadata carries only opaque ids.
    assert "metadata[attempt_uuid]" in sent.replace("%5b", "[").replace("%5d", "]")
