"""Outages on demand: an app whose database is a closed port, a free port nobody listens on, and
deadlock-class errors raised for real by PostgreSQL (a trigger) a given number of times."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path

from psycopg import sql

from tests.helpers.web import RUN_ID

FRIENDLY_OUTAGE = "The portal is temporarily unavailable"
FRIENDLY_BUSY = "The portal is very busy"


def closed_port() -> int:
    """A port on 127.0.0.1 that refuses connections (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def settings_for(database_url: str, redis_url: str, instance: Path, **overrides):
    from app.settings import Settings

    values = dict(APP_ENV="test", DATABASE_URL=database_url, REDIS_URL=redis_url,
                  REDIS_NAMESPACE=f"clinic-test-{RUN_ID}", INSTANCE_PATH=Path(instance),
                  SECRET_KEY="test-secret-key", AUDIT_HMAC_KEY="test-audit-key", CSRF_ENABLED=False,
                  STRIPE_WEBHOOK_SECRET="whsec_outage_test")
    values.update(overrides)
    return Settings(**values).checked()


@contextmanager
def app_on(database_url: str, redis_url: str, instance: Path, **overrides):
    """An app of its own on ``database_url`` (its engine disposed afterwards). Build it in a
    tests/foundation test: create_app rebinds process-wide state that folder's conftest restores."""
    from app import create_app
    from app.extensions import db

    application = create_app(settings_for(database_url, redis_url, instance, **overrides))
    application.config["PROPAGATE_EXCEPTIONS"] = False      # as in production: no debugger, no re-raise
    try:
        yield application
    finally:
        with application.app_context():
            db.engine.dispose()
        conn = application.extensions.get("redis")
        if conn is not None:
            conn.close()


def closed_database_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres?connect_timeout=2"


@contextmanager
def transient_errors(raw_conn, session, *, table: str = "appointments", on: str = "INSERT", times: int = 1,
                     sqlstate: str = "40P01"):
    """PostgreSQL raises ``sqlstate`` (40P01 deadlock, 40001 serialization failure) from a BEFORE
    ``on`` trigger on ``table`` the first ``times`` times, then lets the statement through.

    The count is a sequence: ``nextval`` is not rolled back with the failed transaction (a counter
    row would be). Yields a function returning how many times the trigger ran. ``session`` (the
    test's) ends its transaction first and last: DROP TRIGGER waits for every reader of the table."""
    raw_conn.execute("SET lock_timeout = '10s'")
    session.rollback()
    names = {"seq": sql.Identifier("outage_test_calls"), "fn": sql.Identifier("outage_test_raise"),
             "trigger": sql.Identifier("outage_test_raise"), "table": sql.Identifier(table)}
    raw_conn.execute(sql.SQL("CREATE SEQUENCE {seq}").format(**names))
    raw_conn.execute(sql.SQL("""
        CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF nextval('outage_test_calls') <= TG_ARGV[0]::int THEN
            RAISE EXCEPTION 'injected by the test' USING ERRCODE = TG_ARGV[1];
          END IF;
          RETURN NEW;
        END $$""").format(**names))
    raw_conn.execute(sql.SQL("CREATE TRIGGER {trigger} BEFORE {on} ON {table} FOR EACH ROW "
                             "EXECUTE FUNCTION {fn}({times}, {code})").format(
        on=sql.SQL({"INSERT": "INSERT", "UPDATE": "UPDATE"}[on]), times=sql.Literal(str(times)),
        code=sql.Literal(sqlstate), **names))

    def calls() -> int:
        last, called = raw_conn.execute("SELECT last_value, is_called FROM outage_test_calls").fetchone()
        return last if called else 0

    try:
        yield calls
    finally:
        session.rollback()
        raw_conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {trigger} ON {table}").format(**names))
        raw_conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {fn}()").format(**names))
        raw_conn.execute(sql.SQL("DROP SEQUENCE IF EXISTS {seq}").format(**names))
