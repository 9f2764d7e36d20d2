"""Every route, as every role, with generated values: never a 5xx (hypothesis).

For each rule in ``app.url_map`` and each of its methods, the path parameters get generated values
(real ids of a small clinic, 0, integers up to 2**64, text with NUL bytes, unicode, 5000
characters), and the query string (GET) or the form (POST) gets a generated mix of plausible and
hostile values under the parameter names the app reads (every WTForms field name of the app, plus
the names views read from ``request.args`` / ``request.form``). A route the role may use gets
``ALLOWED_EXAMPLES`` examples, one it may not ``DENIED_EXAMPLES`` (the access rules answer those
before the view). CSRF and rate limits are off for the run (so the forms reach the views), the
examples are derandomized (the same requests on every run) and an exception or a 5xx fails with
the request that caused it. New routes and new forms are picked up without editing this file.
"""
from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from werkzeug.routing.converters import AnyConverter, IntegerConverter, PathConverter

from app.access import allowed_roles, rules_for
from tests.helpers.payments import MON_10_NY, paid_appointment
from tests.helpers.web import IsolatedClient, login

ROLES = ("anonymous", "patient", "provider", "billing", "admin")
ALLOWED_EXAMPLES = 6
DENIED_EXAMPLES = 1
# Names views read from request.args / request.values / request.form directly (not through a form).
READ_NAMES = ("date", "day", "from", "start", "starts_at", "type_id", "specialty_id", "provider_id", "modality",
              "reason", "next", "save", "payment_method", "amount", "amount_cents", "q", "page", "week", "status",
              "email", "phone", "code", "token", "v", "From", "Body", "MessageSid", "MessageStatus", "ErrorCode",
              "remember", "password")
# After these, the fuzzed account may be signed out (or have lost its authenticator): sign in again.
SESSION_ENDERS = {"auth.logout", "admin.revoke_sessions", "admin.reset_mfa", "auth.mfa_setup", "auth.login",
                  "auth.login_mfa", "auth.signup", "account.reset_password", "auth.step_up"}

HUGE = ["2147483647", "2147483648", "-2147483649", "99999999999999999999", "9" * 400, "-1", "0", "1e309", "NaN",
        "0x10", " 7 ", "７"]
DATES = ["9999-12-31", "0001-01-01", "10000-01-01", "2026-02-30", "2026-12-08", "1900-01-01", "2200-12-31",
         "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-12:00",
         "2026-12-08T15:00:00+00:00", "2026-12-08T15:00:00Z", "2026-12-08T15:00", "2026-12-08T10:00",
         "9999-12-31T23:59", "0001-01-01T00:00", "24:00", "10:00", "23:59"]
TEXT = ["", " ", "\x00", "a\x00b", "x" * 5000, "é☃\U0001F600", "<script>alert(1)</script>", "' OR 1=1 --",
        "%00", "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"), "telehealth", "in_person", "y", "1",
        "true", "requested_by_customer", "vacation", "deposit_to_book", "America/New_York", "Not/AZone",
        "+15555550123", "someone@example.test", "STOP", "delivered", "check_in", "correct-horse-battery"]


def form_fields() -> dict[str, set[str]]:
    """Every WTForms form the app defines: class name -> its field names."""
    from flask_wtf import FlaskForm
    from wtforms.fields.core import UnboundField

    import app.blueprints  # noqa: F401  (the forms are defined by the blueprints)

    forms, todo = {}, [FlaskForm]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        forms[cls.__name__] = {name for klass in cls.__mro__ for name, value in vars(klass).items()
                               if isinstance(value, UnboundField)}
    return forms


def names_read_by(view, forms: dict[str, set[str]]) -> list[str]:
    """The parameter names the view's module mentions (quoted, or the fields of a form it uses)."""
    import inspect
    import sys

    try:
        source = inspect.getsource(sys.modules[view.__module__])
    except (OSError, TypeError, KeyError):
        return []
    names = {name for name in READ_NAMES if re.search(rf"[\"']{re.escape(name)}[\"']", source)}
    for form, fields in forms.items():
        if re.search(rf"\b{form}\b", source):
            names |= fields
    return sorted(names - {"csrf_token"})


# -- the clinic the requests run against ------------------------------------------------------------

@pytest.fixture
def fuzz_clinic(app, db, factories, clock, policy, sandbox, monkeypatch):
    """A paid (confirmed) visit and a hold of the same patient, their provider, a charge; CSRF and
    rate limits off."""
    from sqlalchemy import select

    from app.extensions import limiter
    from app.models import AvailabilityRule, Charge, User
    from app.services import booking
    from app.services.audit import Actor

    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", False)
    monkeypatch.setattr(limiter, "enabled", False)
    confirmed = paid_appointment(db, factories, clock, policy, sandbox, starts_at=MON_10_NY)
    patient = confirmed.patient
    held = booking.take_hold(db, now=clock.now(), patient=patient, provider_id=confirmed.provider_id,
                             type_id=confirmed.type_id, starts_at=MON_10_NY + timedelta(days=1), policy=policy,
                             actor=Actor("user", patient.user_id, "patient"))
    db.commit()
    charge = db.scalar(select(Charge).where(Charge.appointment_id == confirmed.id))
    provider_user = db.get(User, confirmed.provider.user_id)
    rules = db.scalars(select(AvailabilityRule.id).where(AvailabilityRule.provider_id == confirmed.provider_id)).all()
    ids = sorted({confirmed.id, held.id, confirmed.provider_id, confirmed.type_id, patient.id, patient.user_id,
                  provider_user.id, charge.id if charge else 1, *rules[:2]})
    plausible = {"type_id": str(confirmed.type_id), "provider_id": str(confirmed.provider_id),
                 "starts_at": (MON_10_NY + timedelta(days=2)).isoformat(), "date": "2026-12-08",
                 "reason": "Cannot make it", "clinical_reason": "Visit ended early", "amount": "1.00",
                 "stripe_reason": "requested_by_customer", "name": "Fuzz", "duration_minutes": "30",
                 "buffer_before_minutes": "0", "buffer_after_minutes": "0", "price": "125",
                 "payment_timing": "deposit_to_book", "modality": "telehealth", "min_notice_minutes": "60",
                 "horizon_days": "30", "cancellation_window_hours": "24", "weekday": "1", "start": "09:00",
                 "end": "10:00", "starts_local": "2026-12-20T09:00", "ends_local": "2026-12-20T10:00",
                 "timezone": "America/New_York", "specialty_id": str(confirmed.provider.specialty_id),
                 "email": "fuzz@example.test", "phone": "+15555550199", "full_name": "Fuzz Person"}
    by_name = {"appointment_id": confirmed.id, "provider_id": confirmed.provider_id, "type_id": confirmed.type_id,
               "patient_id": patient.id, "user_id": patient.user_id, "charge_id": charge.id if charge else 1,
               "rule_id": rules[0] if rules else 1}
    return dict(ids=ids, by_name=by_name, patient_user=patient.user, provider_user=provider_user,
                plausible=plausible)


class Visitor:
    """The fuzzed role's browser: signed in again after a route that may have ended its session."""

    def __init__(self, app, factories, clinic, role):
        self.app, self.factories, self.role = app, factories, role
        if role == "patient":
            self.user = clinic["patient_user"]
        elif role == "provider":
            self.user = clinic["provider_user"]
        elif role == "anonymous":
            self.user = None
        else:
            self.user = factories.user(role)
        self.sign_in()

    def sign_in(self):
        self.client = IsolatedClient(self.app, self.app.response_class, use_cookies=True)
        if self.user is None:
            return
        user = self.factories.session.merge(self.user)
        if user.is_staff and not user.mfa_enrolled:
            self.factories.enrol(user)
        answer = login(self.client, user.email)
        assert answer.status_code == 303, answer.get_data(as_text=True)[:500]


# -- what is generated --------------------------------------------------------------------------------

ARGUMENT = re.compile(r"<(?:(?P<converter>[a-zA-Z_]+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>[a-zA-Z_0-9]+)>")


def _ints(ids):
    return st.one_of(st.sampled_from([str(i) for i in ids] + ["0", "2147483647"]),
                     st.integers(min_value=0, max_value=2**64).map(str), st.sampled_from(HUGE))


def _texts():
    return st.one_of(st.sampled_from(TEXT), st.text(max_size=40),
                     st.text(alphabet=st.characters(codec="utf-8"), max_size=20))


def _values(ids):
    instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                            timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=14)),
                                                       timezone(timedelta(hours=-12))]))
    return st.one_of(_ints(ids), _texts(), st.sampled_from(DATES),
                     st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)).map(date.isoformat),
                     instants.map(datetime.isoformat))


def path_value(converter, ids):
    if isinstance(converter, AnyConverter):
        return st.one_of(st.sampled_from(sorted(converter.items)), _texts())
    if isinstance(converter, IntegerConverter):
        return st.one_of(_ints(ids), st.sampled_from(["abc", "1.5", "-3"]))
    if isinstance(converter, PathConverter):
        return st.one_of(st.sampled_from(["css/app.css", "../../etc/passwd", "css/app.css\x00", "a" * 3000]),
                         _texts())
    return _texts()


def build_url(rule, values: dict) -> str:
    def one(match):
        raw = values[match.group("name")]
        return quote(raw, safe="/" if match.group("converter") == "path" else "")
    return ARGUMENT.sub(one, rule.rule) or "/"


def request_strategy(rule, ids, names, relevant, plausible):
    path = st.fixed_dictionaries({name: path_value(conv, ids) for name, conv in rule._converters.items()})
    keys = st.one_of(st.sampled_from(relevant), st.sampled_from(names), _texts()) if relevant else \
        st.one_of(st.sampled_from(names), _texts())
    overrides = st.dictionaries(keys, _values(ids), max_size=6)
    base = st.sampled_from([{}, plausible])
    return st.tuples(path, base, overrides, st.booleans(),
                     st.one_of(st.none(), st.sampled_from(["x" * 300, "ok-id", "bad id\u00e9", "\t"])))


def known_bad(plausible: str) -> list[str]:
    """The values each parameter a route reads gets once (beside the generated examples): a number
    beyond any integer column, and the far future and far past in the shape the parameter has."""
    if "T" in plausible and ("+" in plausible or plausible.endswith("Z")):
        dates = ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+05:00"]
    elif "T" in plausible:
        dates = ["9999-12-31T23:59", "0001-01-01T00:00"]
    else:
        dates = ["9999-12-31", "0001-01-01"]
    return ["99999999999999999999", "a\x00b", *dates]


def _real_path(rule, clinic) -> dict:
    """Path values that reach the view: the clinic's record of that name, an allowed word."""
    values = {}
    for name, conv in rule._converters.items():
        if isinstance(conv, AnyConverter):
            values[name] = sorted(conv.items)[0]
        elif isinstance(conv, IntegerConverter):
            values[name] = str(clinic["by_name"].get(name, clinic["ids"][0]))
        else:
            values[name] = "css/app.css" if isinstance(conv, PathConverter) else "token"
    return values


# -- the test -------------------------------------------------------------------------------------------

def _first_admitted(app, endpoint) -> str | None:
    return next((role for role in ROLES if _admits(app, endpoint, role)), None)


def _admits(app, endpoint, role) -> bool:
    rules = rules_for(app, endpoint)
    if rules is None:
        return False
    roles = allowed_roles(rules)
    return roles is None or role in roles


@pytest.mark.parametrize("role", ROLES)
def test_no_route_answers_5xx_to_any_input(app, db, factories, fuzz_clinic, role):
    visitor = Visitor(app, factories, fuzz_clinic, role)
    forms = form_fields()
    names = sorted(set(READ_NAMES).union(*forms.values()) - {"csrf_token"})
    ids = fuzz_clinic["ids"]
    started, sent = time.monotonic(), 0
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            admitted = _admits(app, rule.endpoint, role)
            relevant = names_read_by(app.view_functions[rule.endpoint], forms)

            @settings(max_examples=ALLOWED_EXAMPLES if admitted else DENIED_EXAMPLES, deadline=None,
                      derandomize=True, database=None, suppress_health_check=list(HealthCheck), print_blob=True)
            @given(request_strategy(rule, ids, names, relevant, fuzz_clinic["plausible"]))
            def one_request(drawn):
                nonlocal sent
                path, base, overrides, htmx, request_id = drawn
                url = build_url(rule, path)
                params = {**base, **overrides}
                headers = {"HX-Request": "true"} if htmx else {}
                if request_id is not None:
                    headers["X-Request-Id"] = request_id
                where = f"{role} {method} {url[:300]} params={params!r:.600} headers={headers!r}"
                sent += 1
                try:
                    answer = visitor.client.open(url, method=method, headers=headers,
                                                 **({"query_string": params} if method == "GET" else {"data": params}))
                except Exception as error:       # TESTING propagates what would have been a 500
                    db.rollback()
                    raise AssertionError(f"{where} raised {type(error).__name__}: {error}") from error
                finally:
                    if rule.endpoint in SESSION_ENDERS and role != "anonymous":
                        visitor.sign_in()
                body = answer.get_data(as_text=True)
                answer.close()                   # a static file's handle
                assert answer.status_code < 500, f"{where} answered {answer.status_code}: {body[:300]}"

            if admitted and _first_admitted(app, rule.endpoint) == role:
                # and each parameter the view reads, once with each known bad value (as one role: the
                # views parse the same way for each role they admit)
                for name in relevant:
                    for bad in known_bad(fuzz_clinic["plausible"].get(name, "")):
                        one_request = example((_real_path(rule, fuzz_clinic), fuzz_clinic["plausible"], {name: bad},
                                               False, None))(one_request)
            one_request()      # (defined per rule: it closes over this rule and method)
    print(f"fuzzed {sent} requests as {role} in {time.monotonic() - started:.1f}s")
