"""Expected status per role for provider earnings (issue 16; merged into test_access.EXPECTED).

The provider's own earnings page and CSV are the provider's alone (the table's provider has no
provider profile: the page says so, 200; the CSV has nothing to export, 404); any provider's
earnings are for billing and admins. No page here shows PHI."""
LOGIN, DENY = 302, 403


def _provider_id(factories):
    return {"provider_id": factories.provider().id}


EARNINGS_EXPECTED = {
    ("GET", "staff.earnings"): dict(anonymous=LOGIN, patient=DENY, provider=200, billing=DENY, admin=DENY),
    ("GET", "staff.earnings_csv"): dict(anonymous=LOGIN, patient=DENY, provider=404, billing=DENY, admin=DENY),
    ("GET", "admin.provider_earnings"): dict(anonymous=LOGIN, patient=DENY, provider=DENY, billing=200, admin=200),
    ("GET", "admin.provider_earnings_csv"): dict(anonymous=LOGIN, patient=DENY, provider=DENY, billing=200,
                                                 admin=200),
}
EARNINGS_SAMPLE_ARGS = {
    "admin.provider_earnings": _provider_id,
    "admin.provider_earnings_csv": _provider_id,
}
