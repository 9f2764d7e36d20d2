"""Expected status per role for the post-visit booking routes (merged into test_access.EXPECTED).

Saving a card for a post-visit booking is checkout: the signed-in patient or the browser the
patient's own one-click link granted; an unknown appointment is 404 for all. Adding a card to a
booked visit ("card needed") is the signed-in patient's own page."""
P_ONLY = dict(anonymous=302, provider=403, billing=403, admin=403)
NOT_FOUND = dict(anonymous=404, patient=404, provider=404, billing=404, admin=404)

POSTVISIT_BOOKING_EXPECTED = {
    ("POST", "checkout.setup_consent"): NOT_FOUND,
    ("POST", "checkout.setup_complete"): NOT_FOUND,
    ("POST", "checkout.setup_saved"): NOT_FOUND,
    ("GET", "checkout.setup_return"): NOT_FOUND,
    ("GET", "checkout.add_card"): dict(P_ONLY, patient=404),
}
POSTVISIT_BOOKING_SAMPLE_ARGS = {endpoint: {"appointment_id": 999999}
                                 for _, endpoint in POSTVISIT_BOOKING_EXPECTED}
