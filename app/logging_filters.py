"""Keep credentials carried in URLs out of request logs: one-click and
password-reset tokens appear in paths (/r/<token>, /password/reset/<token>).

``RedactTokens`` sits on werkzeug's request logger (the dev server), on every handler
app/logging_setup.py dresses (the root's, so every logger's records) and on gunicorn's error and
access log handlers (gunicorn.conf.py); the JSON formatter redacts its message again."""
from __future__ import annotations

import logging
import re

_TOKEN_PATHS = re.compile(r"(/r/|/password/reset/|/visits/room/)[^\s/?\"']+")


def redact(text: str) -> str:
    return _TOKEN_PATHS.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Renders the record's message and redacts it, whatever its arguments are (strings, a path
    object, gunicorn's mapping of access-log atoms)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:           # a malformed call: let logging report it, minus the tokens
            if isinstance(record.args, tuple):
                record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
            if isinstance(record.msg, str):
                record.msg = redact(record.msg)
            return True
        record.msg, record.args = redact(message), ()
        return True


def install() -> None:
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())
