"""Bad input never reaches the database as a 500: the checks every request passes first.

- **NUL bytes.** PostgreSQL refuses ``\\x00`` in text, so a NUL in the path, a query parameter or a
  form field (name or value) is answered ``400 The form contained a character that is not allowed``
  before any view runs. The Stripe webhook (blueprint ``webhooks``, raw JSON body, its own
  answers) is left to its view.
- **Ids in paths.** Flask's ``int`` converter is replaced app-wide by one that accepts
  ``0..2147483647`` (PostgreSQL ``integer``, the type of every id in a path): a larger id is a 404
  like any id that does not exist, never a ``NumericValueOutOfRange`` from the database.
- **Numbers and dates in query strings and forms.** ``parse_int``, ``parse_date`` and
  ``parse_instant`` are what the views use to read them: a number beyond the integer range, a date
  outside ``DATE_MIN..DATE_MAX`` (1900..2200: no date arithmetic overflows, nothing the database
  refuses) or one that does not exist raises ``BadValue`` with a message for the user (400).
- **Request ids.** ``request_id()`` keeps a caller's ``X-Request-Id`` only when it is 1-64
  characters of ``[A-Za-z0-9._-]`` (it is echoed in the response and stored in audit rows);
  anything else is replaced by a fresh id.
"""
from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timezone

from flask import Flask, g, request
from werkzeug.routing import IntegerConverter, ValidationError

PG_INT_MAX = 2_147_483_647           # PostgreSQL integer; every id in a path is one
DATE_MIN = date(1900, 1, 1)
DATE_MAX = date(2200, 12, 31)
NOT_ALLOWED = "The form contained a character that is not allowed."
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class BadValue(ValueError):
    """A value from the request that the app cannot use; the message is for the user."""


# 0..2147483647 as a pattern (leading zeros allowed, as Flask's int allows them): a larger number does
# not match the rule at all, so it is a 404 whatever the method (a converter's refusal after the
# match can turn into a 405 when another rule has the same path for another method).
PG_INT_PATTERN = (r"0*(?:[0-9]{1,9}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}"
                  r"|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]"
                  r"|214748364[0-7])")


class BoundedInt(IntegerConverter):
    """``<int:...>`` accepting 0..2147483647 (unless a rule says otherwise): beyond it, a 404."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = PG_INT_MAX,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)
        if max == PG_INT_MAX and not signed and not fixed_digits:
            self.regex = PG_INT_PATTERN

    def to_python(self, value: str):
        digits = value.lstrip("0") or "0" if not self.fixed_digits else value
        if len(digits) > 12:            # never hand int() a thousand digits
            raise ValidationError()
        return super().to_python(digits)


def request_id() -> str:
    """The caller's X-Request-Id when it is a plain short token, else a fresh one."""
    given = request.headers.get("X-Request-Id", "")
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def _has_nul(multidict) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values if isinstance(value, str))
               for key, values in multidict.lists())


def contains_nul() -> bool:
    if "\x00" in request.path:
        return True
    if _has_nul(request.args):
        return True
    from app import SESSIONLESS            # server-to-server bodies: their views check them

    if request.blueprint in SESSIONLESS:
        return False
    return _has_nul(request.form)


def refuse_nul():
    if not contains_nul():
        return None
    if "request_id" not in g:          # answered before start_unit_of_work: the id still goes out
        g.request_id = request_id()
    return bad_request(NOT_ALLOWED)


def bad_request(message: str, status: int = 400, title: str = "Please check what you entered"):
    """The plain error page (JSON for the fetch endpoints) with a message for the user. It shows no
    record, so a PHI route answering it writes no view event (app/phi.py)."""
    from flask import jsonify

    from app import phi
    from app.blueprints.errors import wants_json
    from app.web import render

    phi.withheld()
    if request.blueprint == "fhir":        # the FHIR API answers with OperationOutcomes (issue 17)
        from app.blueprints.fhir import outcome

        return outcome(status, "invalid", message)
    if wants_json():
        response = jsonify({"state": "error", "error": message, "message": message})
        response.status_code = status
        return response
    return render("errors/error.html", status=status, code=status, title=title, message=message)


def refuse(message: str, status: int = 400):
    """Stop the request here with ``bad_request(message)``."""
    from flask import abort

    abort(bad_request(message, status))


# -- reading numbers and dates from query strings and forms -------------------------------------

def parse_int(raw: str, *, what: str, minimum: int = 0, maximum: int = PG_INT_MAX) -> int:
    text = (raw or "").strip()
    if len(text) > 12:
        raise BadValue(f"{what.capitalize()} is too large.")
    try:
        value = int(text)
    except ValueError:
        raise BadValue(f"{what.capitalize()} must be a number.") from None
    if value < minimum or value > maximum:
        raise BadValue(f"{what.capitalize()} is out of range.")
    return value


def check_date(value: date, *, what: str = "That date") -> date:
    day = value.date() if isinstance(value, datetime) else value
    if not DATE_MIN <= day <= DATE_MAX:
        raise BadValue(f"{what} is out of range: choose a date between {DATE_MIN.year} and {DATE_MAX.year}.")
    return value


def parse_date(raw: str, *, what: str = "That date") -> date:
    try:
        value = date.fromisoformat((raw or "").strip())
    except ValueError:
        raise BadValue("Dates look like 2026-12-31.") from None
    return check_date(value, what=what)


def parse_instant(raw: str, *, what: str = "That time") -> datetime:
    """An ISO 8601 instant with its offset, in UTC."""
    try:
        value = datetime.fromisoformat((raw or "").strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadValue(f"{what} is not valid.") from None
    if value.tzinfo is None:
        raise BadValue(f"{what} is not valid.")
    check_date(value, what=what)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise BadValue(f"{what} is out of range.") from None


def init_app(app: Flask) -> None:
    """Call before the blueprints are registered (their rules take the converter when added)."""
    app.url_map.converters["int"] = BoundedInt
    app.before_request(refuse_nul)
