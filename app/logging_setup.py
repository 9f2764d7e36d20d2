"""Where log records go: one JSON object per line in production, plain text elsewhere.

``configure(app_env)`` is called by ``create_app`` (so the web server and the worker, which both
build the app, get the same logging) and is idempotent. Every record passes ``RedactTokens``
(app/logging_filters.py) on the handler, whatever logger it came from (the app's, RQ's: the worker's
RQ loggers add no handler of their own while the root has one, SQLAlchemy's, werkzeug's), so a
token in a path, an email address, a phone number, an argon2 hash or a ``name=...`` pair never
reaches a line in either format, in the message or in the traceback. What is logged stays ids only (docs/architecture.md, Logs); the
JSON formatter adds no request data of its own beyond the request id and the RQ job id.

A JSON line carries ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``message``,
``request_id`` (``g.request_id`` inside a request, or the ``request_id`` a record was given, as the
access log does), ``job_id`` (inside an RQ job), ``exception`` (the traceback, when there is one)
and ``http`` for access-log lines (method, path, status, bytes, duration).

gunicorn's own loggers (``gunicorn.error``, ``gunicorn.access``) do not propagate to the root;
gunicorn.conf.py's logger class puts the same filter and formatter on their handlers.
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from app.logging_filters import RedactTokens, redact

TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
# Extra attributes a record may carry that the JSON line reports as they are.
_PASSED_THROUGH = ("http",)


def current_request_id() -> str | None:
    """The request id of the request being handled in this thread, if any."""
    flask = sys.modules.get("flask")
    if flask is None:
        return None
    try:
        if flask.has_app_context():
            return flask.g.get("request_id")
    except Exception:      # a log line is never worth an exception
        return None
    return None


def current_job_id() -> str | None:
    """The id of the RQ job this code runs in (the work horse), if any."""
    job_module = sys.modules.get("rq.job")
    if job_module is None:
        return None
    try:
        job = job_module.get_current_job()
    except Exception:
        return None
    return job.id if job is not None else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the message is redacted again here, so nothing bypasses it."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None) or current_request_id(),
            "job_id": getattr(record, "job_id", None) or current_job_id(),
        }
        for name in _PASSED_THROUGH:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter_for(app_env: str) -> logging.Formatter:
    return JsonFormatter() if app_env == "production" else logging.Formatter(TEXT_FORMAT)


def dress(handler: logging.Handler, app_env: str) -> logging.Handler:
    """Give a handler the mode's format and the token filter (once)."""
    handler.setFormatter(formatter_for(app_env))
    if not any(isinstance(f, RedactTokens) for f in handler.filters):
        handler.addFilter(RedactTokens())
    return handler


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (as logging's last resort does),
    never to a stream object that was closed or replaced since."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:      # StreamHandler.setStream; the stream is always stderr
        pass


def configure(app_env: str) -> None:
    """Route the root logger's records to stderr in the mode's format.

    Production and development: every plain stream handler already on the root
    (``logging.basicConfig`` makes one, as worker.py does) gets the mode's format and the token
    filter, and one is added when there is none; Flask's default handler on the app's logger is
    taken off (its records reach the root), so nothing is written twice or in the other format.
    Logging that someone else set up (a handler of another kind on the root: pytest's capture, a
    host that embeds the app) is left alone, as it is in test mode, but for werkzeug's filter.
    """
    from app.logging_filters import install

    install()                                  # werkzeug's request log (the dev server)
    if app_env == "test":
        return
    root = logging.getLogger()
    plain = [h for h in root.handlers if type(h) in (logging.StreamHandler, StderrHandler)]
    if len(plain) != len(root.handlers):
        return
    for handler in plain:
        dress(handler, app_env)
    if not plain:
        root.addHandler(dress(StderrHandler(), app_env))
    from flask.logging import default_handler

    logging.getLogger("app").removeHandler(default_handler)
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
    # Alembic announces each of its plugins at INFO whenever it is imported (every process start).
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
