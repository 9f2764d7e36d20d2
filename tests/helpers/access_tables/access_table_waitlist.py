"""Expected status per role for the waitlist routes (issue 17; merged into test_access.EXPECTED).

The patient's pages are the patient's; the offer link is public (the signed token is the
credential: a forged one is 404 for everyone); staff's list per provider is for providers (their
own) and admins."""
MISSING = 999999
PATIENT = dict(anonymous=302, patient=200, provider=403, billing=403, admin=403)

WAITLIST_EXPECTED = {
    ("GET", "waitlist.join_form"): PATIENT,
    ("POST", "waitlist.join"): dict(anonymous=302, patient=422, provider=403, billing=403, admin=403),
    ("GET", "waitlist.mine"): PATIENT,
    ("POST", "waitlist.leave"): dict(anonymous=302, patient=404, provider=403, billing=403, admin=403),
    ("GET", "waitlist.offer"): dict(anonymous=404, patient=404, provider=404, billing=404, admin=404),
    ("POST", "waitlist.offer_take"): dict(anonymous=404, patient=404, provider=404, billing=404, admin=404),
    ("GET", "staff.waitlist"): dict(anonymous=302, patient=403, provider=200, billing=403, admin=200),
}
WAITLIST_SAMPLE_ARGS = {
    "waitlist.leave": {"entry_id": MISSING},
    "waitlist.offer": {"token": "forged-token"},
    "waitlist.offer_take": {"token": "forged-token"},
}
