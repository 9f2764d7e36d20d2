"""Step-up MFA on refunds: a code older than 15 minutes asks for a new one, and the refund goes
through after it (app/blueprints/stepup.py require_recent_mfa)."""
from datetime import timedelta

from app.services import audit
from tests.helpers.refunds import charge_of, refund_page, refunds_of
from tests.helpers.web import csrf_from, current_code


def test_a_fresh_code_lets_the_refund_through(db, client, forms, book, login_as, clock):
    appointment, _ = book()
    charge = charge_of(db, appointment.id)
    login_as("billing")
    clock.advance(timedelta(minutes=14))
    response = refund_page(forms, charge.id)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert len(refunds_of(db, charge.id)) == 1


def test_an_old_code_asks_again_then_the_refund_goes_through(db, app, client, forms, book, login_as, clock):
    appointment, _ = book()
    charge = charge_of(db, appointment.id)
    biller = login_as("billing")
    clock.advance(timedelta(minutes=16))
    page = f"/billing/payments/{charge.id}"

    refused = refund_page(forms, charge.id)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 403 and "Confirm it is you" in html and "more than 15 minutes ago" in html
    assert refunds_of(db, charge.id) == []                              # nothing changed

    # The same with htmx: the browser is sent to the code page, which comes back to the payment.
    token = csrf_from(client.get(page).get_data(as_text=True))
    htmx = client.post(f"{page}/refunds", data={"amount": "25.00", "stripe_reason": "requested_by_customer",
                                                "clinical_reason": "Visit ended early", "csrf_token": token},
                       headers={"HX-Request": "true", "HX-Current-URL": f"http://localhost{page}"})
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"].startswith("/mfa/step-up?next=")
    assert refunds_of(db, charge.id) == []

    step_up = htmx.headers["HX-Redirect"]
    form = client.get(step_up).get_data(as_text=True)
    wrong = client.post(step_up, data={"code": "000000", "csrf_token": csrf_from(form)})
    assert wrong.status_code == 422 and refund_page(forms, charge.id).status_code == 403
    right = client.post(step_up, data={"code": current_code(app, biller.email), "csrf_token": csrf_from(form)})
    assert right.status_code == 303 and right.headers["Location"] == page

    done = refund_page(forms, charge.id)                                 # retried: it goes through
    assert done.status_code == 303, done.get_data(as_text=True)
    assert len(refunds_of(db, charge.id)) == 1
    assert audit.actions_for(db, subject_user_id=biller.id, action="mfa.verified")[-1] == "mfa.verified"
