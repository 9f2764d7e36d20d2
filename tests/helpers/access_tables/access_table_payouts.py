"""Expected status per role for provider payout accounts (issue 16; merged into test_access.EXPECTED).

The provider's own Payouts page and its Stripe round trips are the provider's alone; the readiness
list is the admin's. The table's provider has no provider profile: the page says so (200), and the
actions send them back to it (303). No page here shows PHI."""

PROVIDER_ONLY = dict(anonymous=302, patient=403, provider=200, billing=403, admin=403)
PROVIDER_BACK = dict(anonymous=302, patient=403, provider=303, billing=403, admin=403)

PAYOUTS_EXPECTED = {
    ("GET", "staff.payouts"): PROVIDER_ONLY,
    ("POST", "staff.payouts_connect"): PROVIDER_BACK,
    ("GET", "staff.payouts_refresh"): PROVIDER_BACK,
    ("GET", "staff.payouts_return"): PROVIDER_BACK,
    ("GET", "admin.payouts"): dict(anonymous=302, patient=403, provider=403, billing=403, admin=200),
}

PAYOUTS_SAMPLE_ARGS = {}
