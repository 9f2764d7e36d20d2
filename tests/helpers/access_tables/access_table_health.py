"""Expected status per role for the probes (merged into test_access.EXPECTED): public, for everyone."""

EVERYONE = dict(anonymous=200, patient=200, provider=200, billing=200, admin=200)

HEALTH_EXPECTED = {
    ("GET", "health.healthz"): EVERYONE,
    ("GET", "health.readyz"): EVERYONE,
}

HEALTH_SAMPLE_ARGS: dict = {}
