"""Every route declares who may use it, and this table says what each role gets.

A new route without an ``@access`` rule, or missing from EXPECTED, fails here;
so does a rule looser or stricter than the table.
"""
import pytest

from app.access import rules_for

ROLES = ("anonymous", "patient", "provider", "billing", "admin")
LOGIN = 302          # anonymous is sent to sign in
DENY = 403

# (method, endpoint) -> {role: expected status}
EXPECTED = {
    ("GET", "home.index"): dict(anonymous=200, patient=302, provider=302, billing=302, admin=302),
    ("GET", "home.patient"): dict(anonymous=LOGIN, patient=200, provider=DENY, billing=DENY, admin=DENY),
    ("GET", "home.provider"): dict(anonymous=LOGIN, patient=DENY, provider=200, billing=DENY, admin=DENY),
    ("GET", "home.billing"): dict(anonymous=LOGIN, patient=DENY, provider=DENY, billing=200, admin=200),
    ("GET", "admin.home"): dict(anonymous=LOGIN, patient=DENY, provider=DENY, billing=DENY, admin=200),
    ("GET", "admin.staff"): dict(anonymous=LOGIN, patient=DENY, provider=DENY, billing=DENY, admin=200),
    ("POST", "admin.staff"): dict(anonymous=LOGIN, patient=DENY, provider=DENY, billing=DENY, admin=422),
    ("GET", "admin.clinic"): dict(anonymous=LOGIN, patient=DENY, provider=DENY, billing=DENY, admin=200),
    ("POST", "admin.clinic"): dict(anonymous=LOGIN, patient=DENY, provider=DENY, billing=DENY, admin=422),
    ("GET", "auth.signup"): dict(anonymous=200, patient=303, provider=303, billing=303, admin=303),
    ("POST", "auth.signup"): dict(anonymous=422, patient=303, provider=303, billing=303, admin=303),
    ("GET", "auth.login"): dict(anonymous=200, patient=303, provider=303, billing=303, admin=303),
    ("POST", "auth.login"): dict(anonymous=422, patient=303, provider=303, billing=303, admin=303),
    ("POST", "auth.logout"): dict(anonymous=LOGIN, patient=303, provider=303, billing=303, admin=303),
    ("GET", "assets.htmx"): dict(anonymous=200, patient=200, provider=200, billing=200, admin=200),
    ("GET", "static"): dict(anonymous=200, patient=200, provider=200, billing=200, admin=200),
}

SAMPLE_ARGS = {"static": {"filename": "css/app.css"}}

from tests.helpers.access_tables.access_table_staff import STAFF_EXPECTED, STAFF_SAMPLE_ARGS  # noqa: E402

from tests.helpers.access_tables.access_table_booking import BOOKING_EXPECTED, BOOKING_SAMPLE_ARGS  # noqa: E402

from tests.helpers.access_tables.access_table_messages import MESSAGES_EXPECTED, MESSAGES_SAMPLE_ARGS  # noqa: E402

from tests.helpers.access_tables.access_table_billing import BILLING_EXPECTED, BILLING_SAMPLE_ARGS  # noqa: E402
from tests.helpers.access_tables.access_table_cards import CARDS_EXPECTED, CARDS_SAMPLE_ARGS  # noqa: E402
from tests.helpers.access_tables.access_table_chain import CHAIN_EXPECTED, CHAIN_SAMPLE_ARGS  # noqa: E402
from tests.helpers.access_tables.access_table_health import HEALTH_EXPECTED, HEALTH_SAMPLE_ARGS  # noqa: E402
from tests.helpers.access_tables.access_table_ops import OPS_EXPECTED, OPS_SAMPLE_ARGS  # noqa: E402
from tests.helpers.access_tables.access_table_security import SECURITY_EXPECTED, SECURITY_SAMPLE_ARGS  # noqa: E402
from tests.helpers.access_tables.access_table_phi import PHI_EXPECTED, PHI_SAMPLE_ARGS  # noqa: E402
from tests.helpers.access_tables.access_table_fees import FEES_EXPECTED, FEES_SAMPLE_ARGS  # noqa: E402
from tests.helpers.access_tables.access_table_postvisit_booking import (  # noqa: E402
    POSTVISIT_BOOKING_EXPECTED, POSTVISIT_BOOKING_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_pay import PAY_EXPECTED, PAY_SAMPLE_ARGS  # noqa: E402
from tests.helpers.access_tables.access_table_emr import EMR_EXPECTED, EMR_SAMPLE_ARGS  # noqa: E402

EXPECTED.update(STAFF_EXPECTED)
SAMPLE_ARGS.update(STAFF_SAMPLE_ARGS)
EXPECTED.update(BOOKING_EXPECTED)
SAMPLE_ARGS.update(BOOKING_SAMPLE_ARGS)
EXPECTED.update(MESSAGES_EXPECTED)
SAMPLE_ARGS.update(MESSAGES_SAMPLE_ARGS)
EXPECTED.update(BILLING_EXPECTED)
SAMPLE_ARGS.update(BILLING_SAMPLE_ARGS)
EXPECTED.update(CARDS_EXPECTED)
SAMPLE_ARGS.update(CARDS_SAMPLE_ARGS)
EXPECTED.update(CHAIN_EXPECTED)
SAMPLE_ARGS.update(CHAIN_SAMPLE_ARGS)
EXPECTED.update(HEALTH_EXPECTED)
SAMPLE_ARGS.update(HEALTH_SAMPLE_ARGS)
EXPECTED.update(OPS_EXPECTED)
SAMPLE_ARGS.update(OPS_SAMPLE_ARGS)
EXPECTED.update(SECURITY_EXPECTED)
SAMPLE_ARGS.update(SECURITY_SAMPLE_ARGS)
EXPECTED.update(PHI_EXPECTED)
SAMPLE_ARGS.update(PHI_SAMPLE_ARGS)
EXPECTED.update(FEES_EXPECTED)
SAMPLE_ARGS.update(FEES_SAMPLE_ARGS)
EXPECTED.update(POSTVISIT_BOOKING_EXPECTED)
SAMPLE_ARGS.update(POSTVISIT_BOOKING_SAMPLE_ARGS)
EXPECTED.update(PAY_EXPECTED)
SAMPLE_ARGS.update(PAY_SAMPLE_ARGS)
EXPECTED.update(EMR_EXPECTED)
SAMPLE_ARGS.update(EMR_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_estimates import (  # noqa: E402
    ESTIMATES_EXPECTED, ESTIMATES_SAMPLE_ARGS)
EXPECTED.update(ESTIMATES_EXPECTED)
SAMPLE_ARGS.update(ESTIMATES_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_claims import CLAIMS_EXPECTED, CLAIMS_SAMPLE_ARGS  # noqa: E402
EXPECTED.update(CLAIMS_EXPECTED)
SAMPLE_ARGS.update(CLAIMS_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_i18n import I18N_EXPECTED, I18N_SAMPLE_ARGS  # noqa: E402
EXPECTED.update(I18N_EXPECTED)
SAMPLE_ARGS.update(I18N_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_intake import INTAKE_EXPECTED, INTAKE_SAMPLE_ARGS  # noqa: E402
EXPECTED.update(INTAKE_EXPECTED)
SAMPLE_ARGS.update(INTAKE_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_hybrid import HYBRID_EXPECTED, HYBRID_SAMPLE_ARGS  # noqa: E402
EXPECTED.update(HYBRID_EXPECTED)
SAMPLE_ARGS.update(HYBRID_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_payouts import PAYOUTS_EXPECTED, PAYOUTS_SAMPLE_ARGS  # noqa: E402
EXPECTED.update(PAYOUTS_EXPECTED)
SAMPLE_ARGS.update(PAYOUTS_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_earnings import EARNINGS_EXPECTED, EARNINGS_SAMPLE_ARGS  # noqa: E402
EXPECTED.update(EARNINGS_EXPECTED)
SAMPLE_ARGS.update(EARNINGS_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_ledger import LEDGER_EXPECTED, LEDGER_SAMPLE_ARGS  # noqa: E402
EXPECTED.update(LEDGER_EXPECTED)
SAMPLE_ARGS.update(LEDGER_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_disputes import DISPUTES_EXPECTED, DISPUTES_SAMPLE_ARGS  # noqa: E402
EXPECTED.update(DISPUTES_EXPECTED)
SAMPLE_ARGS.update(DISPUTES_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_waitlist import WAITLIST_EXPECTED, WAITLIST_SAMPLE_ARGS  # noqa: E402
EXPECTED.update(WAITLIST_EXPECTED)
SAMPLE_ARGS.update(WAITLIST_SAMPLE_ARGS)
from tests.helpers.access_tables.access_table_fhir import FHIR_EXPECTED, FHIR_SAMPLE_ARGS  # noqa: E402
EXPECTED.update(FHIR_EXPECTED)
SAMPLE_ARGS.update(FHIR_SAMPLE_ARGS)


def routes(app):
    found = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((method, rule.endpoint))
    return found


def test_every_route_declares_an_access_rule(app):
    undeclared = sorted(endpoint for _, endpoint in routes(app) if rules_for(app, endpoint) is None)
    assert undeclared == []


def test_every_route_is_in_the_table(app):
    assert routes(app) == set(EXPECTED), "update EXPECTED for new or removed routes"


def test_not_everything_is_public(app):
    public = {endpoint for _, endpoint in routes(app) if "public" in rules_for(app, endpoint)}
    assert public == {"home.index", "health.healthz", "health.readyz", "auth.signup", "auth.login",
                      "auth.login_mfa",
                      "assets.htmx", "static",
                      "webhooks.stripe_webhook", "links.retry", "links.retry_take",
                      "account.forgot_password", "account.reset_password", "twilio.inbound", "twilio.status",
                      "checkout.show", "checkout.save_card", "checkout.complete", "checkout.browser_return",
                      "checkout.done", "checkout.pay_saved", "checkout.setup_consent", "checkout.setup_complete",
                      "checkout.setup_saved", "checkout.setup_return", "checkout.hybrid_consent",
                      "pay.link", "pay.link_use", "pay.show", "pay.complete", "pay.pay_saved",
                      "pay.browser_return",
                      "account.switch_language",    # the footer's language switch (issue 17)
                      "waitlist.offer", "waitlist.offer_take",    # a waitlist offer's one-click link (issue 17)
                      # the FHIR API (issue 17): its own guard, a bearer token (app/blueprints/fhir)
                      "fhir.metadata", "fhir.token", "fhir.search", "fhir.read", "fhir.everything",
                      "fhir.export", "fhir.export_status", "fhir.export_file", "fhir.unknown"}


@pytest.mark.parametrize("role", ROLES)
def test_route_table(app, client, login_as, factories, role):
    from flask import url_for

    if role != "anonymous":
        login_as(role)
    app.config["WTF_CSRF_ENABLED"] = False     # this table is about roles, CSRF has its own tests
    try:
        mismatches = []
        for (method, endpoint), expected in sorted(EXPECTED.items()):
            args = SAMPLE_ARGS.get(endpoint, {})
            if callable(args):          # rows the route needs, made in this test's database
                args = args(factories)
            with app.test_request_context():
                url = url_for(endpoint, **args)
            response = client.open(url, method=method, data={})
            if response.status_code != expected[role]:
                mismatches.append((method, endpoint, response.status_code, expected[role]))
            response.close()
            if endpoint == "auth.logout" and response.status_code == 303:
                login_again(client, role, login_as)
        assert mismatches == []
    finally:
        app.config["WTF_CSRF_ENABLED"] = True


def login_again(client, role, login_as):
    login_as(role)
