"""Expected status per role for the patient booking routes (merged into test_access.EXPECTED).

Ids that do not exist: a patient gets 404 (never a hint that another patient's
appointment exists), staff get 403 before any lookup."""
P404 = dict(anonymous=302, patient=404, provider=403, billing=403, admin=403)
P_OK = dict(anonymous=302, patient=200, provider=403, billing=403, admin=403)
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
}
