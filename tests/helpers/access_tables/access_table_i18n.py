"""Expected status per role for the language routes (issue 17; merged into test_access.EXPECTED).

The footer's switch is for anyone (a post without a language goes back to the page: 303); the
setting is the patient's (a post without a choice: 422)."""
I18N_EXPECTED = {
    ("POST", "account.switch_language"): dict(anonymous=303, patient=303, provider=303, billing=303, admin=303),
    ("GET", "account.language_page"): dict(anonymous=302, patient=200, provider=403, billing=403, admin=403),
    ("POST", "account.language_page"): dict(anonymous=302, patient=422, provider=403, billing=403, admin=403),
}
I18N_SAMPLE_ARGS: dict = {}
