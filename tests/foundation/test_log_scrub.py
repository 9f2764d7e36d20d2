"""No PHI or secret reaches a log line (app/logging_filters.py): a seeded patient's email, phone,
full name and password hash are put in harm's way on every error path we can provoke: a 500 in a
view whose exception carries them, a failed sign-in for the email, a failed RQ job whose arguments
and error carry them, PostgreSQL integrity errors (whose DETAIL quotes the row), a Stripe error
naming the email; then everything logged is scanned: the JSON lines of production, the text lines
of development, and pytest's capture at the root (caplog), which sees the records after the
filter rewrote them."""
from __future__ import annotations

import io
import json
import logging

import pytest
from rq import SimpleWorker

from tests.conftest import make_settings, stripe_settings
from tests.helpers.web import login

NAME = "Marisol Quenby-Farrow"
EMAIL = "marisol.quenby@example.test"
PHONE = "+15555550187"
PHONE_US = "(555) 555-0187"


def explode(email: str, phone: str, name: str, password_hash: str) -> None:
    """An RQ job that fails with PHI in its message (its arguments carry it too)."""
    raise RuntimeError(f"could not notify {email} at {phone} ({PHONE_US}); user full_name={name!r} "
                       f"password_hash={password_hash}")


@pytest.fixture
def logs(caplog):
    """Everything logged at the root during the test, as production (JSON) and development (text)
    write it, with the filter on each handler as app/logging_setup.py dresses them."""
    from app.logging_setup import dress

    root = logging.getLogger()
    streams = {"json": io.StringIO(), "text": io.StringIO()}
    handlers = [dress(logging.StreamHandler(streams["json"]), "production"),
                dress(logging.StreamHandler(streams["text"]), "development")]
    for handler in handlers:
        root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    caplog.set_level(logging.INFO)
    try:
        yield lambda: {**{name: s.getvalue() for name, s in streams.items()}, "caplog": caplog.text}
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def leaky_app(db, database_url, service_urls, tmp_path, stripe_sandbox):
    """An app with test-only routes that fail the ways a real view can, errors logged (not raised
    into the test) as in production."""
    from sqlalchemy import text

    from app import create_app
    from app.access import access
    from app.extensions import db as sqla
    from app.integrations.stripe_gateway import StripeGateway
    from app.models import User

    application = create_app(make_settings(database_url, service_urls["REDIS_URL"], tmp_path,
                                           **stripe_settings(stripe_sandbox)))
    application.config["PROPAGATE_EXCEPTIONS"] = False

    def seeded():
        return sqla.session.execute(sqla.select(User).where(User.email == EMAIL)).scalar_one()

    @access("public", phi=False)
    def service_error():
        user = seeded()
        explode(user.email, user.phone, user.full_name, user.password_hash)

    @access("public", phi=False)
    def duplicate_email():
        user = seeded()
        sqla.session.add(User(email=user.email, password_hash=user.password_hash, role="patient",
                              full_name=user.full_name, phone=user.phone, timezone="UTC"))
        sqla.session.flush()

    @access("public", phi=False)
    def check_violation():
        user = seeded()
        sqla.session.add(User(email="other-" + user.email, password_hash=user.password_hash, role="nobody",
                              full_name=user.full_name, phone=user.phone, timezone="UTC"))
        sqla.session.flush()

    @access("public", phi=False)
    def raw_sql_error():
        user = seeded()
        sqla.session.execute(text("INSERT INTO users (email, password_hash, role, full_name, phone, timezone, "
                                  "is_active_account, created_at) VALUES (:e, :h, 'patient', :n, :p, 'UTC', true, "
                                  "now())"), {"e": user.email, "h": user.password_hash, "n": user.full_name,
                                              "p": user.phone})

    @access("public", phi=False)
    def stripe_error():
        gateway = StripeGateway.from_settings(application.config["SETTINGS"])
        try:
            gateway.retrieve_intent(f"pi_{EMAIL}")          # Stripe: "No such payment_intent: '...'"
        finally:
            gateway.close()

    for view in (service_error, duplicate_email, check_violation, raw_sql_error, stripe_error):
        application.add_url_rule(f"/test-only/{view.__name__}", view.__name__, view)
    yield application
    dispose(application)


def dispose(application) -> None:
    """Close what an extra app opened (its engine's pool, Redis, the Stripe client)."""
    from app.extensions import db as sqla

    with application.app_context():
        sqla.engine.dispose()
    for name in ("redis", "stripe_gateway"):
        resource = application.extensions.get(name)
        if resource is not None:
            resource.close()


def test_no_email_phone_name_or_password_hash_reaches_the_logs(app, db, factories, logs, leaky_app):
    from app.jobs import get_queue, redis_connection, set_app

    user = factories.user("patient", email=EMAIL, full_name=NAME, phone=PHONE)
    secret_hash = user.password_hash
    assert secret_hash.startswith("$argon2")
    client = leaky_app.test_client()

    for name in ("service_error", "duplicate_email", "check_violation", "raw_sql_error", "stripe_error"):
        response = client.get(f"/test-only/{name}")
        assert response.status_code == 500, (name, response.status_code)
        assert EMAIL not in response.get_data(as_text=True)

    assert login(client, EMAIL, "not-the-password").status_code in (200, 401, 422)    # a failed sign-in

    set_app(app)
    queue = get_queue("default", app)
    queue.empty()
    try:
        job = queue.enqueue(explode, EMAIL, PHONE, NAME, secret_hash)
        SimpleWorker([queue], connection=redis_connection(app)).work(burst=True)
        job.refresh()
        assert job.is_failed
    finally:
        queue.empty()

    outputs = logs()
    for kind, output in outputs.items():
        assert output, kind
        for secret in (EMAIL, PHONE, PHONE_US, PHONE[2:], NAME, "Marisol", "Quenby", secret_hash,
                       secret_hash.rsplit("$", 1)[-1]):
            assert secret not in output, (kind, secret, output)
        # The errors were logged, with their tracebacks; what they carried reads as redacted.
        assert output.count("Exception on /test-only/") >= 5, (kind, output)
        assert "RuntimeError: could not notify [email] at [phone] ([phone])" in output, (kind, output)
        assert "[argon2-hash]" in output and "full_name=[name]" in output, kind
        assert "Failing row contains ([redacted])" in output and "Key (email)=([redacted])" in output, kind
        assert "IntegrityError" in output and "GatewayUnavailable" in output, kind
        assert explode.__name__ in output, kind          # the failed job's own lines
    for line in outputs["json"].splitlines():
        json.loads(line)                                  # every production line is one JSON object
