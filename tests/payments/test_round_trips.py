"""Hold, checkout and complete each talk to the database a small, fixed number of times: the count
does not grow with the clinic, and stays under a ceiling a regression would break."""
import re
from contextlib import contextmanager
from types import SimpleNamespace

from sqlalchemy import event

from app.extensions import db as flask_db
from tests.helpers.payments import MON_10_NY, SUCCESS
from tests.helpers.web import csrf_from, login

# The checkout page shows PHI, so its view is audited (app/phi.py): its row's id and insert are two
# of checkout's statements (issue 12).
CEILING = {"hold": 9, "checkout": 21, "complete": 21}


@contextmanager
def counting(app):
    statements = []

    def listener(conn, cursor, statement, params, context, executemany):
        statements.append(statement.split("\n", 1)[0][:100])

    with app.app_context():
        engine = flask_db.engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def book_and_count(app, factories, browser_pay, starts_at) -> dict[str, int]:
    visit = factories.appointment_type(name="Video consult", price_cents=12500, payment_timing="deposit_to_book")
    provider = factories.provider(types=[visit])
    user = factories.user("patient", timezone="America/New_York")
    client = app.test_client()
    assert login(client, user.email).status_code == 303
    page = client.get(f"/book/providers/{provider.id}?type_id={visit.id}").get_data(as_text=True)
    counts = {}
    # The URL and form first: reading the test's own objects' ids is not the hold's work.
    url = f"/book/providers/{provider.id}/holds"
    form = {"type_id": visit.id, "starts_at": starts_at.isoformat(), "csrf_token": csrf_from(page)}
    with counting(app) as statements:
        response = client.post(url, data=form)
    counts["hold"] = len(statements)
    assert response.status_code == 303, response.get_data(as_text=True)
    appointment_id = int(re.search(r"/(\d+)$", response.headers["Location"]).group(1))
    with counting(app) as statements:
        html = client.get(f"/checkout/{appointment_id}").get_data(as_text=True)
    counts["checkout"] = len(statements)
    secret = re.search(r'data-client-secret="([^"]*)"', html).group(1)
    csrf = re.search(r'data-csrf="([^"]*)"', html).group(1)
    browser_pay.pay(SimpleNamespace(stripe_payment_intent_id=secret.split("_secret")[0], client_secret=secret),
                    SUCCESS)
    with counting(app) as statements:
        answer = client.post(f"/checkout/{appointment_id}/complete", headers={"X-CSRFToken": csrf})
    counts["complete"] = len(statements)
    assert answer.get_json()["state"] == "confirmed"
    return counts


def test_hold_checkout_and_complete_use_a_fixed_small_number_of_statements(
        app, db, client, factories, browser_pay, sandbox, clock):
    first = book_and_count(app, factories, browser_pay, MON_10_NY)
    for _ in range(15):                                   # a bigger clinic: more providers, types, patients
        factories.provider(types=[factories.appointment_type(name="Other visit")])
        factories.user("patient")
    second = book_and_count(app, factories, browser_pay, MON_10_NY)      # another provider, same time
    assert first == second, (first, second)
    assert all(first[step] <= CEILING[step] for step in CEILING), first
