"""Probes for the load balancer / orchestrator: public, cheap, no PHI, never cached.

- ``GET /healthz`` (liveness): the process answers. It touches nothing else, so a database or
  Redis outage never gets a healthy process restarted.
- ``GET /readyz`` (readiness): the database answers, Redis answers, and the database's Alembic
  version is the head of ``migrations/`` (a process of a newer release must not take traffic on a
  database not yet migrated). 200 with the checks; 503 naming the ones that failed.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from app.access import PUBLIC, access
from app.extensions import db, limiter

bp = Blueprint("health", __name__)
limiter.exempt(bp)          # a probe never waits on, or is refused by, the rate limiter's storage

TIMEOUT_SECONDS = 2


def _answer(body: dict, status: int = 200):
    return jsonify(body), status          # no-store, like every non-asset response (app/__init__.py)


@bp.get("/healthz")
@access(PUBLIC, phi=False)
def healthz():
    return _answer({"status": "ok"})


@bp.get("/readyz")
@access(PUBLIC, phi=False)
def readyz():
    checks = {"database": "ok", "redis": _redis(), "migrations": "unknown"}
    try:
        version = _database_version()
    except Exception as error:              # the text of a driver error is never sent, nor logged
        current_app.logger.warning("readyz: database unreachable (%s)", type(error).__name__)
        checks["database"] = "unreachable"
    else:
        checks["migrations"] = _migrations(version)
    failed = sorted(name for name, state in checks.items() if state != "ok")
    if failed:
        return _answer({"status": "unavailable", "failed": failed, "checks": checks}, 503)
    return _answer({"status": "ok", "checks": checks})


def _database_version() -> str | None:
    """The database's Alembic revision (None: never migrated), on a connection of its own."""
    with db.engine.connect() as conn:
        with conn.begin():
            conn.execute(text(f"SET LOCAL statement_timeout = {TIMEOUT_SECONDS * 1000}"))
            exists = conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            return conn.scalar(text("SELECT version_num FROM alembic_version LIMIT 1")) if exists else None


def _migrations(version: str | None) -> str:
    heads = _heads()
    if version is None:
        return "not migrated"
    if version in heads:
        return "ok"
    return "behind" if version in _known_revisions() else "unknown revision"


def _revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(heads, every revision) of migrations/, read once per process (a release restarts it)."""
    found = current_app.extensions.get("health_revisions")
    if found is None:
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(current_app.extensions["migrate"].directory)
        found = current_app.extensions["health_revisions"] = (
            frozenset(script.get_heads()), frozenset(rev.revision for rev in script.walk_revisions()))
    return found


def _heads() -> frozenset[str]:
    return _revisions()[0]


def _known_revisions() -> frozenset[str]:
    return _revisions()[1]


def _redis() -> str:
    """PING on a short-lived client with short timeouts (the app's own client has none)."""
    from redis import Redis

    client = Redis.from_url(current_app.config["REDIS_URL"], socket_connect_timeout=TIMEOUT_SECONDS,
                            socket_timeout=TIMEOUT_SECONDS)
    try:
        client.ping()
    except Exception as error:
        current_app.logger.warning("readyz: redis unreachable (%s)", type(error).__name__)
        return "unreachable"
    finally:
        client.close()
    return "ok"
