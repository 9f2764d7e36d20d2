"""Expected status per role for the patient booking routes (merged into test_access.EXPECTED).

Ids that do not exist: a patient gets 404 (never a hint that another patient's
appointment exists), staff get 403 before any lookup."""
P404 = dict(anonymous=302, patient=404, provider=403, billing=403, admin=403)
P_OK = dict(anonymous=302, patient=200, provider=403, billing=403, admin=403)
ALL404 = dict(anonymous=404, patient=404, provider=404, billing=404, admin=404)
MISSING = 999999

BOOKING_EXPECTED = {
    ("GET", "booking.search"): P_OK,
    ("GET", "booking.appointments"): P_OK,
    ("GET", "booking.provider"): P404,
    ("POST", "booking.take_hold"): P404,
    ("GET", "booking.review"): P404,
    ("POST", "booking.release"): P404,
    ("GET", "booking.appointment"): P404,
    ("POST", "booking.cancel"): P404,
    ("GET", "booking.reschedule_form"): P404,
    ("POST", "booking.reschedule"): P404,
    ("GET", "booking.ics"): P404,
    # Checkout: the owner, or a browser a one-click link granted; an unknown id is 404 for everyone.
    ("GET", "checkout.show"): ALL404,
    ("POST", "checkout.save_card"): ALL404,
    ("POST", "checkout.complete"): ALL404,
    ("GET", "checkout.browser_return"): ALL404,
    ("GET", "checkout.done"): ALL404,
    # The visit link and room: any signed-in user may ask; only the appointment's patient
    # and provider get in (everyone else, and an unknown id, is 403).
    ("GET", "checkout.join"): dict(anonymous=302, patient=403, provider=403, billing=403, admin=403),
    ("GET", "checkout.room"): dict(anonymous=302, patient=403, provider=403, billing=403, admin=403),
    # Stripe's signature is the credential: without one, 400 for everyone.
    ("POST", "webhooks.stripe_webhook"): dict(anonymous=400, patient=400, provider=400, billing=400, admin=400),
    # One-click links: public (the signed token is the credential); a forged token is a 404 for everyone.
    ("GET", "links.retry"): dict(anonymous=404, patient=404, provider=404, billing=404, admin=404),
    ("POST", "links.retry_take"): dict(anonymous=404, patient=404, provider=404, billing=404, admin=404),
    # The development outbox ("dev.outbox") is registered only when APP_ENV=development (never in
    # these test-mode apps), and then for admins only: tests/foundation/test_dev_outbox.py.
    # The message log of an appointment (another provider's appointment is not found).
    ("GET", "staff.messages"): dict(anonymous=302, patient=403, provider=404, billing=200, admin=200),
}
BOOKING_SAMPLE_ARGS = {
    "booking.provider": {"provider_id": MISSING},
    "booking.take_hold": {"provider_id": MISSING},
    "booking.review": {"appointment_id": MISSING},
    "booking.release": {"appointment_id": MISSING},
    "booking.appointment": {"appointment_id": MISSING},
    "booking.cancel": {"appointment_id": MISSING},
    "booking.reschedule_form": {"appointment_id": MISSING},
    "booking.reschedule": {"appointment_id": MISSING},
    "booking.ics": {"appointment_id": MISSING},
    "checkout.show": {"appointment_id": MISSING},
    "checkout.save_card": {"appointment_id": MISSING},
    "checkout.complete": {"appointment_id": MISSING},
    "checkout.browser_return": {"appointment_id": MISSING},
    "checkout.done": {"appointment_id": MISSING},
    "checkout.join": {"appointment_id": MISSING},
    "checkout.room": {"room": "no-such-room"},
    "links.retry": {"token": "forged-token"},
    "links.retry_take": {"token": "forged-token"},
}


def _staff_messages_args():
    from tests.helpers.access_tables.access_table_staff import STAFF_SAMPLE_ARGS

    return STAFF_SAMPLE_ARGS["staff.cancel"]


BOOKING_SAMPLE_ARGS["staff.messages"] = _staff_messages_args()
