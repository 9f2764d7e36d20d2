"""Flask extensions, created unbound and initialised in create_app()."""
import time

from flask_compress import Compress
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx
from sqlalchemy import MetaData, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase

# Named constraints so migrations diff cleanly.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# expire_on_commit=False: a request or job does not re-read every row it touched after its commit
# (the payment spine re-reads what it locks with populate_existing).
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = Htmx()
limiter = Limiter(key_func=get_remote_address)
# Response compression (app/compression.py): pages and JSON; static files with a cache of their own.
compress = Compress()
compress_static = Compress()


# A pooled connection is checked with a round trip ("SELECT 1") only when it has sat unused for
# this long; one in steady use is not (SQLAlchemy's pool_pre_ping would ping before every request:
# a round trip on every page). A connection that went stale while in use (PostgreSQL restarted
# under load) fails its statement instead: the request answers 503 (app/blueprints/errors.py) and
# SQLAlchemy drops every connection of the pool that is older than the failure, so the next
# request gets a fresh one.
PING_AFTER_IDLE_SECONDS = 10.0


def ping_when_idle(engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, proxy):
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
            dbapi_connection.rollback()
        except Exception as error:       # the server is gone or restarted: the pool connects anew
            raise DisconnectionError(f"stale pooled connection: {error.__class__.__name__}") from error
