"""The app connects to PostgreSQL as a role that owns nothing (app/services/db_roles.py): it may
INSERT and SELECT audit rows, and cannot UPDATE, DELETE or TRUNCATE them, nor lift their triggers.
The whole suite's app runs as such a role (tests/conftest.py ``app_database_url``); the schema's
owner runs the migrations, the grants and ``raw_conn``."""
import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.models import AuditEvent, User
from app.services import audit, db_roles, field_crypto
from app.services.audit import Actor
from tests.conftest import APP_ROLE, grant_app_role
from tests.helpers.web import RUN_ID

REFUSED = [
    "UPDATE audit_events SET reason = 'rewritten'",
    "DELETE FROM audit_events",
    "TRUNCATE audit_events CASCADE",
    "UPDATE audit_links SET hash = repeat('b', 64)",
    "DELETE FROM audit_links",
    "TRUNCATE audit_links",
    "ALTER TABLE audit_events DISABLE TRIGGER ALL",
    "ALTER TABLE audit_events DISABLE TRIGGER USER",
    "ALTER TABLE audit_links DISABLE TRIGGER ALL",
    "SET session_replication_role = replica",
    "DROP TRIGGER audit_links_no_update_delete ON audit_links",
    "UPDATE alembic_version SET version_num = '0001'",
    "CREATE TABLE scratch (id int)",
]


def _as_app(app):
    return psycopg.connect(make_url(app.config["SQLALCHEMY_DATABASE_URI"]).set(drivername="postgresql")
                           .render_as_string(hide_password=False), autocommit=True)


def _audited(db, n=2):
    for i in range(n):
        audit.record(db, actor=Actor.system("test"), action="test.event", reason=f"row {i}")
    db.commit()
    audit.link_all(db)


def test_the_app_engine_is_the_role_that_owns_nothing(app, db, raw_conn):
    assert db.execute(text("SELECT current_user")).scalar() == APP_ROLE
    assert raw_conn.execute("SELECT current_user").fetchone()[0] != APP_ROLE
    owned = raw_conn.execute("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                             "WHERE r.rolname = %s", (APP_ROLE,)).fetchone()[0]
    assert owned == 0


def test_the_app_role_inserts_and_reads_audit_rows(app, db):
    _audited(db, 3)                                   # written and linked through the app's engine
    assert db.query(AuditEvent).count() == 3
    assert audit.verify(db, key="test-audit-key").ok


@pytest.mark.parametrize("statement", REFUSED)
def test_the_app_role_cannot_change_history_or_lift_the_triggers(app, db, raw_conn, statement):
    _audited(db)
    with _as_app(app) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        conn.execute(statement)
    message = str(refused.value)
    assert "permission denied" in message or "must be owner" in message, message
    reasons = [field_crypto.decrypt(reason, context="audit_events.reason")             # encrypted at rest
               for (reason,) in raw_conn.execute("SELECT reason FROM audit_events").fetchall()]
    assert (len(reasons), min(reasons)) == (2, "row 0")
    assert raw_conn.execute("SELECT count(*) FROM audit_links").fetchone() == (2,)


def test_normal_app_writes_work_as_the_app_role(app, client, forms, db):
    response = forms.post("/signup", dict(full_name="Role Tester", email="role.tester@example.com",
                                          phone="(555) 555-0142", timezone="America/Chicago",
                                          password="quiet-harbor-lantern-9481", confirm="quiet-harbor-lantern-9481"))
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    user = db.query(User).filter_by(email="role.tester@example.com").one()
    assert user.patient is not None
    assert "account.patient_registered" in audit.actions_for(db, subject_user_id=user.id)


def test_grant_is_idempotent_covers_later_tables_and_refuses_an_unsafe_role(app, database_url, raw_conn):
    role = f"clinic_app_{RUN_ID}_t"
    owner = make_url(database_url).set(drivername="postgresql+psycopg")
    engine = create_engine(owner, poolclass=NullPool)
    try:
        grant_app_role(database_url, role, "pw-second")
        grant_app_role(database_url, role)                      # again: nothing changes, nothing fails
        raw_conn.execute("CREATE TABLE later_table (id serial PRIMARY KEY, note text)")   # a later migration
        try:
            url = owner.set(drivername="postgresql", username=role, password="pw-second")
            with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
                conn.execute("INSERT INTO later_table (note) VALUES ('x')")      # default privileges
                assert conn.execute("SELECT count(*) FROM later_table").fetchone() == (1,)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("DELETE FROM audit_events")
        finally:
            raw_conn.execute("DROP TABLE later_table")
        raw_conn.execute(f'ALTER ROLE "{role}" CREATEROLE')
        with engine.connect() as conn, pytest.raises(db_roles.RoleError, match="CREATEROLE"):
            db_roles.grant_app_role(conn, role)
        with engine.connect() as conn, pytest.raises(db_roles.RoleError, match="the owner"):
            db_roles.grant_app_role(conn, conn.execute(text("SELECT current_user")).scalar())
        with pytest.raises(db_roles.RoleError, match="role name"):
            db_roles.grant_app_role(None, 'x"; DROP TABLE users; --')
    finally:
        raw_conn.execute(f'DROP OWNED BY "{role}"')
        raw_conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        engine.dispose()
