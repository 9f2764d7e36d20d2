"""Keep credentials and PHI out of every log line.

Two kinds of thing are rewritten:

* credentials carried in URLs: one-click and password-reset tokens and video-room names appear in
  paths (/r/<token>, /password/reset/<token>, /visits/room/<name>);
* PHI and secrets a message or a traceback may carry despite the rule that we log ids only (an
  exception's text, a library's error, a driver's message): email addresses, phone numbers (E.164
  and the common US formats), argon2 password hashes, and names written as key/value pairs
  (``full_name=...``, ``'name': '...'``, ``first_name: ...``), and the row values PostgreSQL
  quotes in its error details (``Failing row contains (...)``, ``Key (email)=(...)``).

Limits (docs: "Logs"): a name in free text ("appointment for Jane Doe") cannot be told from other
words by a pattern, so names are kept out by construction instead: no code path logs a user or
patient object other than through its ``__repr__`` (id and role only), a ``full_name`` or any
message or form field; key/value names are redacted as a second line of defence. A bare
10- or 11-digit number (a US phone without separators) is redacted too, so an unrelated number of
that length (an epoch in seconds) reads ``[phone]``. RQ's job lines (logger ``rq.*``) lose the
arguments of the job's call (``app.jobs.x.send(...)``): the job id stays.

``RedactTokens`` sits on werkzeug's request logger (the dev server), on every handler
app/logging_setup.py dresses (the root's, so every logger's records: the app's, RQ's, SQLAlchemy's)
and on gunicorn's error and access log handlers (gunicorn.conf.py); the JSON formatter redacts its
message and traceback again. It rewrites the record itself (message, arguments, the formatted
traceback in ``exc_text``, the stack), so every handler after it sees the redacted record."""
from __future__ import annotations

import logging
import re
import traceback

_TOKEN_PATHS = re.compile(r"(/r/|/password/reset/|/visits/room/)[^\s/?\"']+")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")
# URL-encoded (a query string, a form body in an error): %40 for @.
_EMAIL_ENCODED = re.compile(r"[A-Za-z0-9._%+-]+%40[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_ARGON2 = re.compile(r"\$argon2(?:id|i|d)\$[A-Za-z0-9+/=$,.-]*")
# Phones: E.164 (+ then 8-15 digits, optionally grouped), the US formats (555) 123-4567,
# 555-123-4567, 555.123.4567, 555 123 4567, 1-555-123-4567, and a bare 10/11-digit run. Not inside
# a longer word or number (ids like pi_123..., hex digests, timestamps stay).
_PHONE = re.compile(
    r"(?<![\w+$])(?:"
    r"\+[1-9](?:[ .-]?\d){7,14}"                                   # E.164, maybe grouped
    r"|(?:1[ .-]?)?\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"                 # (555) 123-4567
    r"|(?:1[ .-])?\d{3}[ .-]\d{3}[ .-]\d{4}"                       # 555-123-4567, 1-555-123-4567
    r"|1?\d{10}"                                                   # 5551234567, 15551234567
    r")(?![\w])"
)
_NAME_KEYS = r"(?:full_name|first_name|last_name|given_name|family_name|patient_name|display_name|name)"
# key=value / key: value / 'key': 'value' / "key": "value": a quoted value whole; an unquoted one up
# to the next separator or the next key=.
_NAME_PAIR = re.compile(
    r"(?P<key>(?<![\w.])(?P<q>['\"]?)" + _NAME_KEYS + r"(?P=q))(?P<sep>\s*[=:]\s*)"
    r"(?P<value>\[name\]|'[^'\n]*'|\"[^\"\n]*\"|[^,;)}\]\n]*?(?=\s+\w+=|[,;)}\]\n]|$))"
)


# PostgreSQL's error details quote the row's values: "Failing row contains (7, jane@..., Jane Doe,
# ...)" (a NOT NULL / CHECK violation: every column, names in free text) and "Key (email)=(...)
# already exists". SQLAlchemy's hide_parameters hides the statement's parameters, not these.
_FAILING_ROW = re.compile(r"(Failing row contains \().*")
_KEY_VALUE = re.compile(r"(Key \([^\n]*?\)=\()(?!\[redacted\])[^\n]*?(\) (?:already exists|is not present|conflicts)|$)",
                        re.M)


# RQ logs each job's description, the function called with its arguments
# ("default: app.jobs.x.send(12, 'a') (job id)"): on RQ's records the arguments are dropped (our
# jobs take ids; the job id stays on the line), so no argument can carry a name into the log.
_CALL_ARGS = re.compile(r"\b([A-Za-z_][\w.]*)\((?:[^()\n]|\([^()\n]*\))*\)")


def redact(text: str) -> str:
    """The text with tokens in paths, emails, phones, argon2 hashes and key/value names replaced."""
    if not text:
        return text
    text = _TOKEN_PATHS.sub(r"\1[redacted]", text)
    text = _FAILING_ROW.sub(r"\1[redacted])", text)
    text = _KEY_VALUE.sub(r"\1[redacted]\2", text)
    text = _ARGON2.sub("[argon2-hash]", text)
    text = _EMAIL.sub("[email]", text)
    text = _EMAIL_ENCODED.sub("[email]", text)
    text = _NAME_PAIR.sub(lambda m: f"{m.group('key')}{m.group('sep')}[name]", text)
    text = _PHONE.sub("[phone]", text)
    return text


def _format_exception(exc_info) -> str:
    return "".join(traceback.format_exception(*exc_info)).rstrip("\n")


class RedactTokens(logging.Filter):
    """Renders the record's message and redacts it, whatever its arguments are (strings, a path
    object, gunicorn's mapping of access-log atoms); redacts its traceback and stack too (kept in
    ``exc_text``, which formatters print instead of formatting ``exc_info`` again)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:           # a malformed call: let logging report it, minus the PHI
            if isinstance(record.args, tuple):
                record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
            if isinstance(record.msg, str):
                record.msg = redact(record.msg)
        else:
            if record.name.startswith("rq."):
                message = _CALL_ARGS.sub(r"\1(...)", message)
            record.msg, record.args = redact(message), ()
        try:
            if record.exc_info and record.exc_info[0] is not None and not getattr(record, "_exc_redacted", False):
                record.exc_text = redact(record.exc_text or _format_exception(record.exc_info))
                record._exc_redacted = True
            elif record.exc_text:
                record.exc_text = redact(record.exc_text)
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
        except Exception:           # a log line is never worth an exception
            pass
        return True


# The same filter under a name that says what it does now.


def install() -> None:
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())
