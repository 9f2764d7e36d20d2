"""Expected status per role for the phone, password-reset and Twilio routes (merged into test_access.EXPECTED).

Twilio's endpoints answer 404 to everyone here: the test app has no TWILIO_AUTH_TOKEN
(no Twilio configured); with one, a request without Twilio's signature gets 403
(tests/notifications/test_twilio_webhooks.py)."""
P_ONLY = dict(anonymous=302, provider=403, billing=403, admin=403)
EVERYONE = ("anonymous", "patient", "provider", "billing", "admin")

MESSAGES_EXPECTED = {
    ("GET", "account.phone_page"): dict(P_ONLY, patient=200),
    ("POST", "account.change_phone"): dict(P_ONLY, patient=422),      # no number given
    ("POST", "account.send_code"): dict(P_ONLY, patient=303),         # a code to the unverified number
    ("POST", "account.verify_phone"): dict(P_ONLY, patient=422),      # no code given
    ("GET", "account.forgot_password"): dict.fromkeys(EVERYONE, 200),
    ("POST", "account.forgot_password"): dict.fromkeys(EVERYONE, 422),
    ("GET", "account.reset_password"): dict.fromkeys(EVERYONE, 400),   # a link that was never signed
    ("POST", "account.reset_password"): dict.fromkeys(EVERYONE, 400),
    ("POST", "twilio.inbound"): dict.fromkeys(EVERYONE, 404),
    ("POST", "twilio.status"): dict.fromkeys(EVERYONE, 404),
}
MESSAGES_SAMPLE_ARGS = {
    "account.reset_password": {"token": "not-a-signed-token"},
}
