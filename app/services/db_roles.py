"""The app's database role: a login role that owns nothing.

Migrations run as the schema's owner (``DATABASE_URL``); the web processes and workers connect as
this role (``DATABASE_APP_URL``). ``grant_app_role`` (``flask grant-app-role ROLE``, and the dev
and test launchers after every migration) creates the role when missing and (re)grants, idempotently:

- SELECT, INSERT, UPDATE, DELETE on every ordinary table of the schema;
- only SELECT and INSERT on the append-only tables (the audit trail: ``audit_events``,
  ``audit_links``, and any table guarded by an ``*_append_only`` trigger function), so the role
  can neither change nor remove audit rows, and, owning no table, cannot
  ``ALTER TABLE ... DISABLE TRIGGER``, TRUNCATE, or change the schema;
- only SELECT on ``alembic_version``;
- USAGE and SELECT on the sequences (nextval for ids);
- ``ALTER DEFAULT PRIVILEGES`` for the owner's later tables and sequences, so a table a later
  migration creates is usable before the grant runs again (it runs after every migration anyway,
  which is what restricts a new append-only table).

It refuses a role that is a superuser, may create roles or databases, bypasses row security, owns
anything in the database, or is a member of the owner: any of these would let the app undo the
audit trail's protection. No function here commits: the caller runs it in autocommit or commits.
"""
from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.engine import Connection

APPEND_ONLY_TABLES = ("audit_events", "audit_links")
READ_ONLY_TABLES = ("alembic_version",)
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class RoleError(Exception):
    """The role cannot be made safe for the app (named in the message)."""


def _ident(name: str) -> str:
    if not _NAME.match(name):
        raise RoleError(f"role name {name!r}: use lower-case letters, digits and _ (at most 63)")
    return f'"{name}"'


def append_only_tables(conn: Connection, schema: str = "public") -> list[str]:
    """The audit tables, and any other table whose trigger calls an ``*_append_only`` function."""
    found = conn.execute(text("""
        SELECT DISTINCT c.relname FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE n.nspname = :schema AND NOT t.tgisinternal AND p.proname LIKE '%append_only%'
    """), {"schema": schema}).scalars().all()
    existing = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"),
                                {"schema": schema}).scalars())
    return sorted((set(APPEND_ONLY_TABLES) | set(found)) & existing)


def grant_app_role(conn: Connection, role: str, *, password: str | None = None,
                   schema: str = "public") -> list[str]:
    """Create ``role`` (LOGIN, nothing else) if missing, set its password when given, and (re)grant
    what the app needs and nothing more. Run as the schema's owner (or a superuser). Returns the
    append-only tables it restricted."""
    quoted, owner = _ident(role), conn.execute(text("SELECT current_user")).scalar_one()
    if role == owner:
        raise RoleError(f"role {role} is the one running the grant (the owner): the app needs its own role")
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    if not exists:
        conn.execute(text(f"CREATE ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                          "NOREPLICATION NOBYPASSRLS"))
    if password:
        # DDL takes no bind parameters: quote the literal with PostgreSQL's own function.
        literal = conn.execute(text("SELECT quote_literal(:p)"), {"p": password}).scalar_one()
        conn.execute(text(f"ALTER ROLE {quoted} LOGIN PASSWORD {literal}"))
    _refuse_unsafe(conn, role, owner)
    database = conn.execute(text("SELECT current_database()")).scalar_one()
    tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :s"),
                          {"s": schema}).scalars().all()
    restricted = append_only_tables(conn, schema)
    s = f'"{schema}"'
    statements = [
        f'GRANT CONNECT ON DATABASE "{database}" TO {quoted}',
        f"GRANT USAGE ON SCHEMA {s} TO {quoted}",
        f"REVOKE CREATE ON SCHEMA {s} FROM {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {quoted}",
        f"REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA {s} FROM {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE, SELECT ON SEQUENCES TO {quoted}",
    ]
    for table in restricted:
        statements += [f'REVOKE ALL ON TABLE {s}."{table}" FROM {quoted}',
                       f'GRANT SELECT, INSERT ON TABLE {s}."{table}" TO {quoted}']
    for table in READ_ONLY_TABLES:
        if table in tables:
            statements += [f'REVOKE ALL ON TABLE {s}."{table}" FROM {quoted}',
                           f'GRANT SELECT ON TABLE {s}."{table}" TO {quoted}']
    for statement in statements:
        conn.execute(text(statement))
    return restricted


def _refuse_unsafe(conn: Connection, role: str, owner: str) -> None:
    flags = conn.execute(text("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
                              "WHERE rolname = :r"), {"r": role}).one()
    named = [name for name, on in zip(("SUPERUSER", "CREATEROLE", "CREATEDB", "BYPASSRLS"), flags) if on]
    if named:
        raise RoleError(f"role {role} has {', '.join(named)}: the app's role must have none of them")
    if conn.execute(text("SELECT pg_has_role(:r, :o, 'MEMBER')"), {"r": role, "o": owner}).scalar_one():
        raise RoleError(f"role {role} is a member of the owner {owner}: it would act as the owner")
    owns = conn.execute(text("""
        SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
        WHERE r.rolname = :r LIMIT 3
    """), {"r": role}).scalars().all()
    if owns:
        raise RoleError(f"role {role} owns {', '.join(owns)}: the app's role must own nothing")
