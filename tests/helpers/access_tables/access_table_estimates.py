"""Expected status per role for the estimate and Good Faith Estimate pages (issue 15, merged into
test_access.EXPECTED). Both are the patient's own: an unknown id is a 404 for a patient (never a hint
that another patient's exists), staff get 403 before any lookup."""
P404 = dict(anonymous=302, patient=404, provider=403, billing=403, admin=403)
MISSING = 999999

ESTIMATES_EXPECTED = {
    ("GET", "intake.estimate"): P404,
    ("GET", "booking.good_faith_estimate"): P404,
}
ESTIMATES_SAMPLE_ARGS = {
    "intake.estimate": {"intake_id": MISSING},
    "booking.good_faith_estimate": {"appointment_id": MISSING},
}
