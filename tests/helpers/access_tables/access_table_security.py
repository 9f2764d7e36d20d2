"""Expected status per role for the sign-in code step, MFA enrolment, step-up and the admin's
session/MFA actions (merged into test_access.EXPECTED).

The table's staff come enrolled (factories), so their enrolment page shows "set up" (200) and a
post there goes back to it (303); the patient is not enrolled: the set-up page (200), a post
without a code 422. The code step with nothing half signed in goes back to sign in (303). The
admin's actions name a user that does not exist (404): the table must not sign its own admin out."""
ANY_SIGNED_IN = dict(patient=200, provider=200, billing=200, admin=200)
ADMIN_ONLY = dict(anonymous=302, patient=403, provider=403, billing=403)

SECURITY_EXPECTED = {
    ("GET", "auth.login_mfa"): dict(anonymous=303, patient=303, provider=303, billing=303, admin=303),
    ("POST", "auth.login_mfa"): dict(anonymous=303, patient=303, provider=303, billing=303, admin=303),
    ("GET", "auth.mfa_setup"): dict(ANY_SIGNED_IN, anonymous=302),
    ("POST", "auth.mfa_setup"): dict(anonymous=302, patient=422, provider=303, billing=303, admin=303),
    ("GET", "auth.step_up"): dict(ANY_SIGNED_IN, anonymous=302),
    ("POST", "auth.step_up"): dict(anonymous=302, patient=422, provider=422, billing=422, admin=422),
    ("POST", "admin.revoke_sessions"): dict(ADMIN_ONLY, admin=404),
    ("POST", "admin.reset_mfa"): dict(ADMIN_ONLY, admin=404),
}
SECURITY_SAMPLE_ARGS = {
    "admin.revoke_sessions": {"user_id": 999999},
    "admin.reset_mfa": {"user_id": 999999},
}
