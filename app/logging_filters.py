"""Keep credentials carried in URLs out of request logs: one-click and
password-reset tokens appear in paths (/r/<token>, /password/reset/<token>)."""
from __future__ import annotations

import logging
import re

_TOKEN_PATHS = re.compile(r"(/r/|/password/reset/|/visits/room/)[^\s/?\"']+")


def redact(text: str) -> str:
    return _TOKEN_PATHS.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install() -> None:
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())
