"""Clinic Portal: create_app() builds the Flask application from settings."""
from __future__ import annotations

import logging
import time

from flask import Flask, flash, g, request, session
from flask_login import current_user

from app.settings import ConfigError, Settings

__all__ = ["create_app", "ConfigError", "Settings"]

LAST_SEEN_STEP = 10   # seconds: how stale the idle-logoff stamp in the session may get


def _sqlalchemy_url(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _limiter_storage(url: str) -> str:
    if url.startswith("unix://"):
        return "redis+unix://" + url[len("unix://"):]
    return url


def require_services(settings: Settings) -> Settings:
    """The app is handed its PostgreSQL and Redis; it never starts them.

    Production names what is missing in ``Settings.checked``; elsewhere the
    run command (``devtools/run.py``) and the test fixtures start embedded
    services and pass their URLs in.
    """
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not getattr(settings, name)]
    if missing:
        verb = "are" if len(missing) > 1 else "is"
        raise ConfigError(
            f"{' and '.join(missing)} {verb} not set. Set DATABASE_URL (PostgreSQL) and REDIS_URL "
            "(Redis), or use `make run` (python -m devtools.run), which starts embedded services "
            "and passes their URLs in."
        )
    return settings


# Blueprints called server to server (no browser: no session cookie, no page): the hooks skip what
# only a browser needs for them (idle logoff, framing and asset headers, compression).
SESSIONLESS = frozenset({"webhooks", "fhir"})


def create_app(settings: Settings | None = None) -> Flask:
    settings = require_services(settings or Settings.from_env())
    from app.logging_setup import configure as configure_logging

    configure_logging(settings.APP_ENV)   # first: JSON lines in production, text elsewhere; tokens redacted

    app = Flask(__name__, instance_path=str(settings.INSTANCE_PATH), instance_relative_config=False)
    app.config.update(
        SETTINGS=settings,
        APP_ENV=settings.APP_ENV,
        SECRET_KEY=settings.SECRET_KEY,
        # The runtime engine connects as the app's role (DATABASE_APP_URL, owning nothing) when set;
        # migrations (migrations/env.py) connect as the owner, SQLALCHEMY_OWNER_URI (DATABASE_URL).
        SQLALCHEMY_DATABASE_URI=_sqlalchemy_url(settings.runtime_database_url),
        SQLALCHEMY_OWNER_URI=_sqlalchemy_url(settings.DATABASE_URL or settings.runtime_database_url),
        # hide_parameters: no PHI in errors or logs; connect_timeout: a dropped host fails fast (503).
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "hide_parameters": True,
                                   "connect_args": {"connect_timeout": 5}},
        REDIS_URL=settings.REDIS_URL,
        WTF_CSRF_ENABLED=settings.CSRF_ENABLED,
        WTF_CSRF_TIME_LIMIT=None,          # the token lives as long as the session
        RATELIMIT_STORAGE_URI=_limiter_storage(settings.REDIS_URL),
        RATELIMIT_KEY_PREFIX=f"{settings.REDIS_NAMESPACE}:limits",
        # The storage's own prefix too, so resetting one deployment's limits touches no other's.
        RATELIMIT_STORAGE_OPTIONS={"key_prefix": f"{settings.REDIS_NAMESPACE}:limits"},
        RATELIMIT_HEADERS_ENABLED=True,
        # Redis away: the limits go on in this process's memory (never a 500, never unthrottled).
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        # The cookie's own limit is the longest server-side lifetime ("remember me"); the
        # user_sessions row (app/services/sessions.py) ends each sign-in at its own lifetime.
        PERMANENT_SESSION_LIFETIME=max(settings.SESSION_LIFETIME_STAFF, settings.SESSION_LIFETIME_PATIENT,
                                       settings.SESSION_LIFETIME_REMEMBER),
        TESTING=settings.APP_ENV == "test",
    )

    from app import access as access_rules
    from app.extensions import csrf, db, htmx, limiter, login_manager, migrate
    from app.services import audit

    audit.use_key(settings.AUDIT_HMAC_KEY)
    from app.services import field_crypto

    # PHI columns encrypted at rest (app/models/types.py EncryptedText): this app's keys.
    app.extensions[field_crypto.EXTENSION] = field_crypto.keyring_from_settings(settings)
    field_crypto.use_keyring(app.extensions[field_crypto.EXTENSION])
    from app.services.clock import SystemClock

    app.extensions["clock"] = SystemClock()   # tests swap in a FrozenClock
    db.init_app(app)
    migrate.init_app(app, db, directory=str(settings_root() / "migrations"))
    from app import compression, input_guard

    compression.init_app(app)   # registered first so it runs last, after every other after_request
    input_guard.init_app(app)   # NUL bytes: 400; <int:> ids within PostgreSQL's integer (before the blueprints)
    csrf.init_app(app)
    htmx.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."

    from sqlalchemy import bindparam, func, select
    from sqlalchemy.orm import joinedload

    from app.models import User, UserSession
    from app.services.sessions import session_id

    # The user of every signed-in request, through its live server-side session row (not revoked,
    # not past its absolute lifetime), with the patient profile (patient pages all need it), in one
    # statement; built once. No row: the request goes on anonymous (the access rules send it to
    # sign in). Nothing is written here: the idle stamp stays in the cookie.
    user_by_session = (
        select(User, UserSession)
        .join(UserSession, UserSession.user_id == User.id)
        .options(joinedload(User.patient))
        .where(UserSession.id == bindparam("sid"), User.id == bindparam("user_id"),
               UserSession.revoked_at.is_(None), UserSession.expires_at > func.now()))

    @login_manager.user_loader
    def load_user(user_id: str):
        token = session.get("sid")
        if not isinstance(token, str) or not str(user_id).isdigit() or len(str(user_id)) > 18:
            g.session_ended = True
            return None
        found = db.session.execute(user_by_session, {"sid": session_id(token), "user_id": int(user_id)}
                                   ).unique().one_or_none()
        if found is None:
            g.session_ended = True
            return None
        g.user_session = found[1]
        return found[0]

    from app.blueprints import register_blueprints

    register_blueprints(app)
    from app import i18n

    i18n.init_app(app)       # English / Spanish: the locale of each request, the compiled catalogues
    from app.blueprints import ops as ops_blueprint

    ops_blueprint.init_app(app)   # request latency; METRICS_TOKEN scrapes, answered before the access rules
    access_rules.declare(app, "static", access_rules.PUBLIC)

    @app.before_request
    def start_unit_of_work():
        g.request_id = input_guard.request_id()   # the caller's id only if 1-64 of [A-Za-z0-9._-]
        audit.set_context(db.session, request_id=g.request_id, ip=request.remote_addr)

    @app.before_request
    def idle_logoff():
        if request.blueprint in SESSIONLESS:
            return None
        if not current_user.is_authenticated:
            if g.get("session_ended"):
                # Signed out elsewhere, revoked, or past its absolute lifetime: drop the stale cookie.
                session.clear()
                from flask_babel import gettext

                flash(gettext("Your session has ended. Please sign in again."), "info")
            return None
        row = g.get("user_session")
        if row is not None and row.remember and not current_user.is_staff:
            return None   # a patient's "remember me" session: only its absolute lifetime applies
        limit = settings.IDLE_LOGOFF_STAFF if current_user.is_staff else settings.IDLE_LOGOFF_PATIENT
        now = time.time()
        last = session.get("last_seen")
        if last is not None and now - last > limit.total_seconds():
            from flask_babel import gettext

            from app.blueprints.auth.views import sign_out

            sign_out(action="auth.idle_logoff", reason="idle",
                     message=gettext("You were signed out after a period of inactivity."))
            return None   # continue as anonymous: access rules send them to sign in
        if last is None or now - last >= LAST_SEEN_STEP:
            # Written at most every LAST_SEEN_STEP seconds, not on every request (a new signed cookie
            # each time): the logoff may come up to that much early, never late.
            session["last_seen"] = now
        return None

    app.before_request(access_rules.enforce)
    from app.blueprints.stepup import enrolment_gate

    app.before_request(enrolment_gate)   # staff without an authenticator: the enrolment page only
    from app import security_headers as browser_security

    browser_security.init_app(app)   # CSP with nonces, HSTS in production, MAX_CONTENT_LENGTH, ProxyFix
    from app import phi

    phi.init_app(app)        # one audit event per view of a page that declares phi=... (app/phi.py)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.blueprint in SESSIONLESS:          # no page, no cookie: nothing to frame or cache
            response.headers["Cache-Control"] = "no-store"
            response.headers["X-Request-Id"] = g.get("request_id", "")
            return response
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        from app.blueprints.assets import cache_control

        asset_policy = cache_control()
        if asset_policy is not None:
            # A fingerprinted static/vendor URL (?v=<content hash>) is kept a year; any other asks again.
            response.headers["Cache-Control"] = asset_policy
        else:
            # Pages may carry PHI: never cached by the browser or a proxy.
            response.headers["Cache-Control"] = "no-store"
        response.headers["X-Request-Id"] = g.get("request_id", "")
        return response

    @app.teardown_request
    def end_unit_of_work(exc):
        if exc is not None:
            db.session.rollback()

    @app.context_processor
    def inject_clinic():
        from app.services.clinic import current_clinic, default_clinic

        try:
            clinic = current_clinic(db.session)
        except Exception:   # the error page must render even when the database is away
            db.session.rollback()
            clinic = default_clinic()
        return {"clinic": clinic, "settings": settings}

    # After-commit work: services ask for it by name; app/jobs/subscriptions.py is the one wiring.
    from app.jobs import subscriptions, twindow as twindow_jobs

    subscriptions.subscribe()
    twindow_jobs.init_app(app)

    from app.cli import register_cli

    register_cli(app)
    logging.getLogger("app").setLevel(logging.INFO)
    return app


def settings_root():
    from app.settings import ROOT

    return ROOT
