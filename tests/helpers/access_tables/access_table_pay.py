"""Expected status per role for the patient's post-visit pay page (merged into test_access.EXPECTED).

The pay routes are public: the signed-in patient's own visit, or a visit a pay link granted this
browser. A forged link and an appointment nobody may pay are 404 for everyone (signed in or not)."""
NOT_FOUND = dict(anonymous=404, patient=404, provider=404, billing=404, admin=404)

PAY_EXPECTED = {
    ("GET", "pay.link"): NOT_FOUND,
    ("POST", "pay.link_use"): NOT_FOUND,
    ("GET", "pay.show"): NOT_FOUND,
    ("POST", "pay.complete"): NOT_FOUND,
    ("POST", "pay.pay_saved"): NOT_FOUND,
    ("GET", "pay.browser_return"): NOT_FOUND,
}
PAY_SAMPLE_ARGS = {
    "pay.link": {"token": "forged-token"},
    "pay.link_use": {"token": "forged-token"},
    "pay.show": {"appointment_id": 999999},
    "pay.complete": {"appointment_id": 999999},
    "pay.pay_saved": {"appointment_id": 999999},
    "pay.browser_return": {"appointment_id": 999999},
}
