"""Expected status per role for the hybrid deposit's consent route (issue 15, merged into
test_access.EXPECTED). It is checkout: public like ``checkout.pay_saved`` (the signed-in patient or the
browser the patient's one-click link granted), so an unknown appointment is a 404 for everyone (never a
hint that another patient's exists)."""
ALL404 = dict(anonymous=404, patient=404, provider=404, billing=404, admin=404)
MISSING = 999999

HYBRID_EXPECTED = {
    ("POST", "checkout.hybrid_consent"): ALL404,
}
HYBRID_SAMPLE_ARGS = {
    "checkout.hybrid_consent": {"appointment_id": MISSING},
}
