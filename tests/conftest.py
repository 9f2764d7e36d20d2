"""Test fixtures: real PostgreSQL and Redis, a fresh database per run.

DATABASE_URL / REDIS_URL name servers to use (CI points them at the
machine's); unset, the embedded ones are started here (devtools/embedded.py,
the dev extra) and their URLs passed in: the app never starts a service.
Each run creates its own freshly named database (migrated with Alembic, as
production is) and drops it afterwards, and uses its own Redis key namespace,
so runs never see each other's data.
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

pytest.register_assert_rewrite("tests.helpers")     # before the first import of a helper

from tests.helpers.web import RUN_ID, IsolatedClient, csrf_from, login  # noqa: E402
from tests.helpers import a11y  # noqa: E402

# Fixtures used by more than one folder; a folder's conftest.py keeps only its own.
pytest_plugins = ["tests.helpers.fixtures_payments", "tests.helpers.fixtures_messages",
                  "tests.helpers.fixtures_insurance"]


# -- no test reaches the outside world ------------------------------------------------

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family == socket.AF_UNIX:
        return _real_connect(self, address)
    host = address[0] if isinstance(address, tuple) else address
    if host not in ("127.0.0.1", "::1", "localhost") and not str(host).startswith("127."):
        raise AssertionError(f"test tried to reach {address!r}: only local services are allowed")
    return _real_connect(self, address)


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing():
    """Real argon2, with the cheapest parameters: tests create hundreds of accounts."""
    from argon2 import PasswordHasher

    from app.services import accounts

    original = accounts._hasher
    accounts._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    accounts._hasher = original


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


# -- services ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def service_urls(tmp_path_factory):
    from devtools.embedded import start_postgres, start_redis

    started = []
    db_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if not db_url:
        pg = start_postgres(Path(tmp_path_factory.mktemp("pg")))
        started.append(pg)
        db_url = pg.url
    if not redis_url:
        redis = start_redis(Path(tmp_path_factory.mktemp("redis")))
        started.append(redis)
        redis_url = redis.url
    yield {"DATABASE_URL": db_url, "REDIS_URL": redis_url}
    for service in reversed(started):
        service.stop()


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def database_url(service_urls):
    """A freshly named database on the server, dropped after the run."""
    server = make_url(service_urls["DATABASE_URL"])
    name = f"clinic_test_{RUN_ID}"
    admin_url = _psycopg_url(service_urls["DATABASE_URL"])
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server.set(database=name).render_as_string(hide_password=False)
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(APP_ROLE)))   # app_database_url's


@pytest.fixture(scope="session")
def stripe_sandbox(tmp_path_factory):
    """Our offline Stripe for the whole run (unless STRIPE_SECRET_KEY names a real test account)."""
    if os.environ.get("STRIPE_SECRET_KEY"):
        yield None
        return
    from devtools.stripe_sandbox.process import SandboxProcess

    sandbox = SandboxProcess.start(tmp_path_factory.mktemp("stripe"))
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="session")
def payer_sandbox(tmp_path_factory):
    """The payer simulator standing in for a clearinghouse, always: the tests make its members, force its
    adjudication and inject its faults, which no real clearinghouse lets them do (CLEARINGHOUSE_URL
    chooses the clearinghouse of ``make run`` and production, never the tests'). Adjudication after
    PAYER_DELAY seconds; tests change it with ``set_delay`` or force it."""
    from devtools.payer_sandbox import PayerSandboxProcess

    sandbox = PayerSandboxProcess.start(tmp_path_factory.mktemp("payer"), delay_seconds=PAYER_DELAY)
    try:
        yield sandbox
    finally:
        sandbox.stop()


PAYER_DELAY = 1.0


def payer_settings(sandbox) -> dict:
    return dict(CLEARINGHOUSE_URL=sandbox.api_base, CLEARINGHOUSE_API_KEY=sandbox.api_key)


def stripe_settings(sandbox) -> dict:
    if sandbox is None:
        return {name: os.environ.get(name) for name in ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY",
                                                        "STRIPE_WEBHOOK_SECRET")}
    return dict(STRIPE_SECRET_KEY=sandbox.secret_key, STRIPE_PUBLISHABLE_KEY=sandbox.publishable_key,
                STRIPE_WEBHOOK_SECRET=sandbox.webhook_secret, STRIPE_API_BASE=sandbox.api_base,
                STRIPE_JS_URL=sandbox.js_url)


def make_settings(database_url, redis_url, tmp_path, **overrides):
    from app.settings import Settings

    values = dict(
        APP_ENV="test",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_NAMESPACE=f"clinic-test-{RUN_ID}",
        INSTANCE_PATH=Path(tmp_path),
        SECRET_KEY="test-secret-key",
        AUDIT_HMAC_KEY="test-audit-key",
    )
    values.update(overrides)
    return Settings(**values).checked()


APP_ROLE = f"clinic_app_{RUN_ID}"


def grant_app_role(owner_url: str, role: str, password: str | None = None) -> None:
    """As the owner: create the app's role if missing and (re)grant it (app/services/db_roles.py)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from app.services import db_roles

    engine = create_engine(make_url(owner_url).set(drivername="postgresql+psycopg"), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            db_roles.grant_app_role(conn, role, password=password)
            conn.commit()
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def app_database_url(database_url):
    """The URL the app's engine uses: this run's login role owning nothing (as in production);
    migrations, truncation and ``raw_conn`` use ``database_url`` (the owner). The role is created
    here and granted by ``app`` after the migrations; dropped with the database."""
    password = f"pw-{RUN_ID}"
    grant_app_role(database_url, APP_ROLE, password)
    yield make_url(database_url).set(username=APP_ROLE, password=password).render_as_string(hide_password=False)
    with psycopg.connect(_psycopg_url(database_url), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (APP_ROLE,))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(APP_ROLE)))


@pytest.fixture(scope="session")
def app(database_url, app_database_url, service_urls, tmp_path_factory, stripe_sandbox, payer_sandbox):
    from flask_migrate import upgrade

    from app import create_app

    application = create_app(make_settings(database_url, service_urls["REDIS_URL"],
                                           tmp_path_factory.mktemp("instance"),
                                           DATABASE_APP_URL=app_database_url,
                                           **stripe_settings(stripe_sandbox), **payer_settings(payer_sandbox)))
    with application.app_context():
        upgrade()     # the schema only ever comes from the migrations (run as the owner)
    grant_app_role(database_url, APP_ROLE)      # the app's role: no UPDATE/DELETE on the audit tables
    yield application
    from app.extensions import db as sqla

    with application.app_context():
        sqla.engine.dispose()
    redis_conn = application.extensions.get("redis")
    if redis_conn is not None:
        redis_conn.close()
    gateway = application.extensions.get("stripe_gateway")
    if gateway is not None:
        gateway.close()


def _tables(conn) -> list[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "AND tablename <> 'alembic_version'").fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def db(app):
    """The app's session inside an app context; every table emptied afterwards."""
    from app.extensions import db as sqla, limiter

    ctx = app.app_context()
    ctx.push()
    limiter.reset()
    try:
        yield sqla.session
    finally:
        sqla.session.remove()
        ctx.pop()
        truncate_all(app)


def owner_url(app) -> str:
    """The test database as its owner (the app's own engine connects as its role, owning nothing)."""
    return _psycopg_url(app.config["SQLALCHEMY_OWNER_URI"])


APPEND_ONLY = ("audit_events", "audit_links", "encounter_addenda", "payment_consents", "intake_consents",
               "ledger_transactions", "ledger_entries")


def truncate_all(app) -> None:
    # A fresh database gets a fresh anchor file: anchors of the truncated chain would not match.
    app.config["SETTINGS"].audit_anchor_path.unlink(missing_ok=True)
    url = owner_url(app)
    with psycopg.connect(url, autocommit=True) as conn:
        tables = _tables(conn)
        if not tables:
            return
        # The append-only tables refuse TRUNCATE by trigger; the test owner lifts it briefly.
        guarded = [t for t in APPEND_ONLY if t in tables]
        toggle = "; ".join(f"ALTER TABLE {t} {{}} TRIGGER USER" for t in guarded)
        conn.execute(toggle.format(*["DISABLE"] * len(guarded)))
        try:
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in tables)))
        finally:
            conn.execute(toggle.format(*["ENABLE"] * len(guarded)))


@pytest.fixture
def raw_conn(app):
    """A direct psycopg connection to the test database (as its owner)."""
    with psycopg.connect(owner_url(app), autocommit=True) as conn:
        yield conn


@pytest.fixture
def client(app, db):
    app.test_client_class = IsolatedClient
    return app.test_client()


# -- helpers (csrf_from, login and IsolatedClient live in tests/helpers/web.py) ------------------

class Forms:
    """Fill a form as a browser would: GET the page, take its CSRF token, POST."""

    def __init__(self, client):
        self.client = client

    def post(self, url, data, page=None, **kwargs):
        html = self.client.get(page or url).get_data(as_text=True)
        return self.client.post(url, data={**data, "csrf_token": csrf_from(html)}, **kwargs)


@pytest.fixture
def forms(client):
    return Forms(client)


class Factories:
    counter = 0

    def __init__(self, session):
        self.session = session

    def _next(self) -> int:
        Factories.counter += 1
        return Factories.counter

    def user(self, role="patient", *, password="correct-horse-battery", email=None, enrolled=None, **fields):
        """An account. Staff come enrolled in MFA by default (``enrolled=False``: not yet), so
        ``login()`` completes the code step for them; patients only when ``enrolled=True``."""
        from app.services import accounts
        from app.services.audit import Actor

        n = self._next()
        email = email or f"{role}{n}@example.test"
        common = dict(full_name=fields.get("full_name", f"Test {role.title()} {n}"), email=email,
                      timezone_name=fields.get("timezone", "America/New_York"), password=password)
        if role == "patient":
            user = accounts.register_patient(self.session, phone=fields.get("phone", "+15555550123"),
                                             actor=Actor.system("test"), **common)
        else:
            user = accounts.create_staff(self.session, actor=Actor.system("test"), role=role,
                                         phone=fields.get("phone"), **common)
        if enrolled if enrolled is not None else role != "patient":
            self.enrol(user, commit=False)
        self.session.commit()
        return user

    def enrol(self, user, *, commit=True) -> str:
        """Give the account an authenticator (as a confirmed enrolment would); returns its secret."""
        from datetime import datetime, timezone

        from app.services import mfa

        user.mfa_secret = mfa.new_secret()
        user.mfa_enrolled_at = datetime.now(timezone.utc)
        if commit:
            self.session.commit()
        return user.mfa_secret


    def specialty(self, name=None, **fields):
        from app.models import Specialty

        spec = Specialty(name=name or f"Specialty {self._next()}", **fields)
        self.session.add(spec)
        self.session.commit()
        return spec

    def appointment_type(self, **fields):
        from app.models import AppointmentType

        values = dict(name=f"Visit {self._next()}", duration_minutes=30, buffer_before_minutes=0,
                      buffer_after_minutes=0, price_cents=12500, payment_timing="deposit_to_book",
                      modality="telehealth", min_notice_minutes=60, horizon_days=30,
                      cancellation_window_hours=24)
        values.update(fields)
        appointment_type = AppointmentType(**values)
        self.session.add(appointment_type)
        self.session.commit()
        return appointment_type

    def provider(self, *, types=(), specialty=None, timezone="America/New_York", full_name=None,
                 hours=((0, 9, 17), (1, 9, 17), (2, 9, 17), (3, 9, 17), (4, 9, 17)), **fields):
        """A provider with weekly hours: (weekday, start hour, end hour), local time."""
        from datetime import time as t

        from app.models import AvailabilityRule, Provider

        user = self.user("provider", timezone=timezone,
                         **({"full_name": full_name} if full_name else {}))
        provider = Provider(user_id=user.id, specialty_id=(specialty or self.specialty()).id,
                            timezone=timezone, **fields)
        provider.types = list(types)
        self.session.add(provider)
        self.session.flush()
        for weekday, start, end in hours:
            self.session.add(AvailabilityRule(provider_id=provider.id, weekday=weekday,
                                              start_time=t(start), end_time=t(end)))
        self.session.commit()
        return provider

    def patient(self, **fields):
        return self.user("patient", **fields).patient


@pytest.fixture
def factories(db):
    return Factories(db)


@pytest.fixture
def clock(app):
    """The app's clock, frozen at a Monday 08:00 New York time, for the test."""
    from datetime import datetime, timezone

    from app.services.clock import FrozenClock

    frozen = FrozenClock(datetime(2026, 12, 7, 13, 0, tzinfo=timezone.utc))
    original = app.extensions["clock"]
    app.extensions["clock"] = frozen
    yield frozen
    app.extensions["clock"] = original


@pytest.fixture
def policy(app):
    from app.services.booking import HoldPolicy

    return HoldPolicy.from_settings(app.config["SETTINGS"])


@pytest.fixture
def login_as(client, factories):
    def _login(role):
        user = factories.user(role)
        response = login(client, user.email)
        assert response.status_code == 303, response.get_data(as_text=True)
        return user
    return _login


# -- a live server for the browser tests --------------------------------------------------

@pytest.fixture
def live_server(app, db):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# Content-Security-Policy violations Chromium reported in any context the browser fixture opened
# (app/security_headers.py): a page's securitypolicyviolation events, handed to Python through a
# binding as they happen (so none is lost to a navigation), and the console's "Refused to ..."
# errors. The autouse ``no_csp_violations`` fails a browser test during which any occurred.
CSP_VIOLATIONS: list[str] = []
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", function (e) {
  try {
    window.__cspViolation([e.effectiveDirective || e.violatedDirective, e.blockedURI || "inline",
                           (e.sourceFile || location.href) + ":" + (e.lineNumber || 0),
                           (e.sample || "").slice(0, 80)].join(" "));
  } catch (ignored) {}
}, true);
"""


def _watch_csp(context):
    context.expose_binding("__cspViolation", lambda source, text: CSP_VIOLATIONS.append(text))
    context.add_init_script(_CSP_LISTENER)

    def console(message):
        text = message.text
        if "Content Security Policy" in text or text.startswith("Refused to"):
            CSP_VIOLATIONS.append(f"console: {text}")

    context.on("console", console)
    return context


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    from devtools.chromium import find

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=find(),
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        new_context = launched.new_context

        def watched_context(*args, **kwargs):     # every context a test opens reports CSP violations
            return a11y.watch(_watch_csp(new_context(*args, **kwargs)))    # ... and axe-core's findings

        launched.new_context = watched_context
        yield launched
        launched.close()


@pytest.fixture(autouse=True)
def no_csp_violations(request):
    """A test that drove Chromium fails if Chromium reported any CSP violation meanwhile."""
    if "browser" not in request.fixturenames:
        yield
        return
    CSP_VIOLATIONS.clear()
    yield
    found, CSP_VIOLATIONS[:] = list(CSP_VIOLATIONS), []
    assert not found, "Content-Security-Policy violations reported by Chromium:\n  " + "\n  ".join(found)


@pytest.fixture(autouse=True)
def no_a11y_violations(request):
    """A test that drove Chromium fails if axe-core found a serious or critical WCAG 2.1 A/AA violation
    on any page it showed (tests/helpers/a11y.py: after each load, htmx swap, dialog, and at the end)."""
    if "browser" not in request.fixturenames:
        yield
        return
    a11y.take()
    yield
    found = a11y.take()
    assert not found, "axe-core found accessibility violations:\n  " + a11y.report(found)


@pytest.fixture
def phone(browser):
    """A page in a phone-sized viewport (360 px wide, touch); CSP violations are reported."""
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True,
                                  device_scale_factor=2)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def laptop(browser):
    """A page in a laptop-sized viewport (1280 x 800), for staff; CSP violations are reported."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    yield page
    context.close()


# -- every browser test says so --------------------------------------------------------------

@pytest.hookimpl(tryfirst=True)      # before -m/-k deselect anything
def pytest_collection_modifyitems(config, items):
    """A test that uses Chromium (the ``browser`` fixture, directly or through ``phone`` or any
    other fixture) must carry ``@pytest.mark.e2e``, so ``-m "not e2e"`` really runs without it."""
    unmarked = [item.nodeid for item in items
                if "browser" in getattr(item, "fixturenames", ()) and item.get_closest_marker("e2e") is None]
    if unmarked:
        raise pytest.UsageError("these tests use the browser fixture but are not marked e2e "
                                "(add pytestmark = pytest.mark.e2e):\n  " + "\n  ".join(unmarked))
