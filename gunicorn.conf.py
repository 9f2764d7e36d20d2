"""gunicorn settings for the portal, in production and under ``make run`` alike.

    gunicorn -c gunicorn.conf.py wsgi:app        # beside: python worker.py

Every number can be set from the environment (defaults sized for a 2-core machine):

    PORT                   listen on 0.0.0.0:$PORT (8000); make run binds 127.0.0.1 on the command line
    WEB_CONCURRENCY        worker processes (the number of cores)
    WEB_THREADS            threads per worker (4): requests mostly wait on PostgreSQL, Redis, Stripe
    WEB_TIMEOUT            seconds a request may take before its worker is killed and replaced (60)
    WEB_GRACEFUL_TIMEOUT   seconds a worker gets to finish its requests on SIGTERM / restart (30)
    WEB_KEEPALIVE          seconds an idle keep-alive connection is held (5; set it above the idle
                           timeout of a proxy that keeps connections to us open)
    WEB_MAX_REQUESTS       a worker is replaced after this many requests (10000; 0: never), jittered
                           (a replacement closes its keep-alive connections: at 1000 a busy worker
                           was replaced every few seconds, a visible tail in latency)
    FORWARDED_ALLOW_IPS    the proxy addresses whose X-Forwarded-Proto is trusted (gunicorn's own)

The app is loaded once in the master (``preload_app``) and the workers are forked from it, after
``gc.freeze()`` (so the collector does not touch, and copy, the pages the workers share); each
worker drops the database connections it inherited. Logs: app/logging_setup.py (JSON lines in
production), with tokens in paths redacted (app/logging_filters.py) in the access log too, which
carries no query string, client address or user agent (docs/architecture.md, Logs).
"""
from __future__ import annotations

import gc
import os

from gunicorn import glogging


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                      # not Linux
        return max(1, os.cpu_count() or 1)


wsgi_app = "wsgi:app"
bind = [f"0.0.0.0:{_env_int('PORT', 8000)}"]
workers = _env_int("WEB_CONCURRENCY", _cores())
worker_class = "gthread"
threads = _env_int("WEB_THREADS", 4)
timeout = _env_int("WEB_TIMEOUT", 60)
graceful_timeout = _env_int("WEB_GRACEFUL_TIMEOUT", 30)
keepalive = _env_int("WEB_KEEPALIVE", 5)
max_requests = _env_int("WEB_MAX_REQUESTS", 10000)
max_requests_jitter = max_requests // 10
preload_app = True
proc_name = "clinic-portal"
# Heartbeat files in memory, not on a container's overlay disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# gunicornc's control socket would be one path ($HOME/.gunicorn) for every instance on a machine.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("WEB_LOG_LEVEL", "info")
# Method, path (tokens redacted), status, bytes, milliseconds, request id.
access_log_format = '"%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s'


class Logger(glogging.Logger):
    """gunicorn's logger with the app's rules: tokens redacted; in production, JSON lines
    (app/logging_setup.py) whose access lines carry the request id the app answered with."""

    def setup(self, cfg):
        super().setup(cfg)
        from app.logging_setup import dress

        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not getattr(handler, "_gunicorn", False):
                    continue
                if _app_env() == "production":
                    dress(handler, "production")     # JSON, tokens redacted
                else:
                    _redacting(handler)              # gunicorn's text, tokens redacted

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled or _app_env() != "production":
            return super().access(resp, req, environ, request_time)
        from app.logging_filters import redact

        atoms = self.atoms(resp, req, environ, request_time)
        try:
            self.access_log.info(
                self.cfg.access_log_format, self.atoms_wrapper_class(atoms),
                extra={"request_id": atoms.get("{x-request-id}o") or None,
                       "http": {"method": atoms["m"], "path": redact(atoms["U"] or ""),
                                "status": int(atoms["s"]) if str(atoms["s"]).isdigit() else atoms["s"],
                                "bytes": atoms["B"], "duration_ms": atoms["M"]}})
        except Exception:
            self.exception("could not write an access log line")


logger_class = Logger


def _app_env() -> str:
    return os.environ.get("APP_ENV") or "production"      # as wsgi.py: unset means production


def _redacting(handler):
    from app.logging_filters import RedactTokens

    if not any(isinstance(f, RedactTokens) for f in handler.filters):
        handler.addFilter(RedactTokens())
    return handler


def pre_fork(server, worker):
    """In the master, just before each fork: what the app built at preload is moved out of the
    collector's reach, so no collection in a worker writes to (and so copies) the shared pages."""
    gc.freeze()


def post_fork(server, worker):
    """In the new worker: connections opened in the master (if any) belong to it, not to us."""
    from app.extensions import db

    flask_app = server.app.wsgi()
    with flask_app.app_context():
        for engine in db.engines.values():
            engine.dispose(close=False)
