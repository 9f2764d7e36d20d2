"""Expected status per role for the saved-card routes (merged into test_access.EXPECTED).

A card or appointment that is not the patient's is 404 (never a hint that it exists);
staff get 403 before any lookup. Paying with a saved card is checkout: the signed-in patient
or the browser the patient's own one-click link granted; an unknown appointment is 404 for all."""
P_ONLY = dict(anonymous=302, provider=403, billing=403, admin=403)

CARDS_EXPECTED = {
    ("GET", "account.cards_page"): dict(P_ONLY, patient=200),
    ("POST", "account.remove_card"): dict(P_ONLY, patient=404),       # not one of this patient's cards
    ("POST", "checkout.pay_saved"): dict(anonymous=404, patient=404, provider=404, billing=404, admin=404),
}
CARDS_SAMPLE_ARGS = {
    "account.remove_card": {"payment_method": "pm_not_yours"},
    "checkout.pay_saved": {"appointment_id": 999999},
}
