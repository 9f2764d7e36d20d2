"""Staff MFA: enrolment with a QR code and recovery codes shown once, the code step at sign-in,
recovery codes that work once, the enrolment gate for staff, an admin's reset, patients' opt-in."""
import re
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from app.models import AuditEvent, RecoveryCode, User
from app.services import audit, mfa
from tests.helpers.web import csrf_from, current_code, login, submit_mfa_code

pytestmark = pytest.mark.usefixtures("private_limits")
SECRET_RE = re.compile(r'id="mfa-secret"[^>]*>([A-Z2-7]+)<')


def enrol_on_the_page(client, at) -> tuple[str, list[str]]:
    """Scan (read) the secret off the enrolment page, confirm a code; returns (secret, recovery codes)."""
    page = client.get("/account/mfa")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<svg" in html, html[:500]
    secret = SECRET_RE.search(html).group(1)
    response = client.post("/account/mfa", data={"code": pyotp.TOTP(secret).at(at), "csrf_token": csrf_from(html)})
    assert response.status_code == 200, response.get_data(as_text=True)
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", response.get_data(as_text=True))
    return secret, codes


def test_unenrolled_staff_enrol_before_reaching_any_staff_page(app, client, factories, db, clock):
    user = factories.user("provider", enrolled=False)
    response = login(client, user.email)
    assert response.status_code == 303 and response.headers["Location"].endswith("/account/mfa")

    # Held on the enrolment page: a staff page, even by its URL, sends back there.
    for path in ("/provider", "/"):
        blocked = client.get(path)
        assert blocked.status_code == 302 and blocked.headers["Location"].endswith("/account/mfa"), path
    htmx = client.get("/provider", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].endswith("/account/mfa")

    page = client.get("/account/mfa").get_data(as_text=True)
    assert "<svg" in page and "Staff accounts need an authenticator" in page
    secret = SECRET_RE.search(page).group(1)

    wrong = client.post("/account/mfa", data={"code": "000000", "csrf_token": csrf_from(page)})
    assert wrong.status_code == 422 and "That code is not right" in wrong.get_data(as_text=True)
    assert client.get("/provider").status_code == 302

    done = client.post("/account/mfa", data={"code": pyotp.TOTP(secret).at(clock.now()),
                                              "csrf_token": csrf_from(page)})
    html = done.get_data(as_text=True)
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", html)
    assert done.status_code == 200 and len(set(codes)) == 10 and "not shown again" in html
    assert client.get("/provider").status_code == 200

    # Shown once: the page now says it is on, and holds no code; the database holds only hashes.
    again = client.get("/account/mfa").get_data(as_text=True)
    assert "10 recovery codes left" in again and not any(code in again for code in codes)
    stored = db.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)).all()
    assert len(stored) == 10 and not any(code in stored or code.replace("-", "") in stored for code in codes)
    actions = audit.actions_for(db, subject_user_id=user.id)
    assert "mfa.enrolled" in actions and audit.actions_for(db, subject_user_id=user.id, outcome="failure") == ["mfa.enrol"]
    db.expire_all()
    assert db.get(User, user.id).mfa_enrolled


def test_sign_in_asks_for_the_code_after_the_password(app, client, factories, db, clock):
    user = factories.user("billing")
    response = login(client, user.email, complete_mfa=False)
    assert response.status_code == 303 and response.headers["Location"].endswith("/login/mfa")
    # Half signed in is not signed in.
    assert client.get("/billing").status_code == 302

    wrong = submit_mfa_code(client, "123456" if current_code(app, user.email) != "123456" else "654321")
    assert wrong.status_code == 422 and "That code is not right" in wrong.get_data(as_text=True)
    assert client.get("/billing").status_code == 302

    right = submit_mfa_code(client, current_code(app, user.email))
    assert right.status_code == 303 and right.headers["Location"].endswith("/billing")
    assert client.get("/billing").status_code == 200
    assert audit.actions_for(db, subject_user_id=user.id, action="mfa.verified", outcome="failure") == ["mfa.verified"]
    assert audit.actions_for(db, subject_user_id=user.id)[-1] == "mfa.verified"


def test_a_code_cannot_be_used_twice(app, factories, db, clock):
    user = factories.user("provider")
    code = current_code(app, user.email)
    first, second = app.test_client(), app.test_client()
    assert login(first, user.email, complete_mfa=False).status_code == 303
    assert submit_mfa_code(first, code).status_code == 303
    assert login(second, user.email, complete_mfa=False).status_code == 303
    replayed = submit_mfa_code(second, code)                  # seen over a shoulder, seconds later
    assert replayed.status_code == 422
    assert second.get("/provider").status_code == 302


def test_a_recovery_code_works_once(app, client, factories, db, clock):
    user = factories.user("admin", enrolled=False)
    login(client, user.email)
    _, codes = enrol_on_the_page(client, clock.now())

    laptop = app.test_client()
    assert login(laptop, user.email, complete_mfa=False).status_code == 303
    used = submit_mfa_code(laptop, codes[3].upper())          # as typed, in capitals
    assert used.status_code == 303 and used.headers["Location"].endswith("/admin/")
    assert "9 left" in laptop.get("/admin/").get_data(as_text=True)

    thief = app.test_client()
    assert login(thief, user.email, complete_mfa=False).status_code == 303
    assert submit_mfa_code(thief, codes[3]).status_code == 422
    assert thief.get("/admin/").status_code == 302
    assert audit.actions_for(db, subject_user_id=user.id).count("mfa.recovery_code_used") == 1


def test_wrong_codes_are_throttled(app, client, factories, db, clock):
    user = factories.user("provider")
    assert login(client, user.email, complete_mfa=False).status_code == 303
    answers = [submit_mfa_code(client, "000000").status_code for _ in range(6)]
    assert answers[:5] == [422] * 5 and answers[5] == 429
    # Even the right code waits now.
    assert submit_mfa_code(client, current_code(app, user.email)).status_code == 429
    assert client.get("/provider").status_code == 302


def test_the_half_signed_in_state_expires(app, client, factories, db, clock):
    user = factories.user("provider")
    assert login(client, user.email, complete_mfa=False).status_code == 303
    token = csrf_from(client.get("/login/mfa").get_data(as_text=True))
    with client.session_transaction() as session:           # six minutes later
        pending = session["mfa_pending"]
        session["mfa_pending"] = dict(pending, at=pending["at"] - 6 * 60)
    late = client.post("/login/mfa", data={"code": current_code(app, user.email), "csrf_token": token})
    assert late.status_code == 303 and late.headers["Location"].endswith("/login")
    assert client.get("/provider").status_code == 302


def test_an_admin_resets_an_enrolment_which_ends_the_users_sessions(app, client, login_as, factories, db, forms):
    provider = factories.user("provider")
    theirs = app.test_client()
    assert login(theirs, provider.email).status_code == 303
    assert theirs.get("/provider").status_code == 200
    admin = login_as("admin")

    response = forms.post(f"/admin/users/{provider.id}/mfa/reset", {}, page="/admin/staff")
    assert response.status_code == 303
    assert theirs.get("/provider").status_code == 302                       # signed out
    db.expire_all()
    assert not db.get(User, provider.id).mfa_enrolled
    actions = audit.actions_for(db, subject_user_id=provider.id, actor_id=admin.id)
    assert "mfa.reset" in actions and "auth.sessions_revoked" in actions
    # Their next sign-in goes to enrolment.
    again = login(app.test_client(), provider.email)
    assert again.headers["Location"].endswith("/account/mfa")


def test_a_patient_may_opt_in_and_then_signs_in_with_a_code(app, client, factories, db, clock):
    user = factories.user("patient")
    assert login(client, user.email).headers["Location"].endswith("/patient")
    assert "/account/mfa" in client.get("/patient").get_data(as_text=True)
    secret, codes = enrol_on_the_page(client, clock.now())
    assert len(codes) == 10

    other = app.test_client()
    step = login(other, user.email, complete_mfa=False)
    assert step.headers["Location"].endswith("/login/mfa")
    clock.advance(timedelta(seconds=30))                      # the next code of the app
    done = submit_mfa_code(other, pyotp.TOTP(secret).at(clock.now()))
    assert done.status_code == 303 and done.headers["Location"].endswith("/patient")


def test_the_secret_never_reaches_the_logs_or_the_audit(app, client, factories, db, clock, caplog):
    user = factories.user("provider", enrolled=False)
    login(client, user.email)
    secret, _ = enrol_on_the_page(client, clock.now())
    assert secret not in caplog.text and secret not in repr(db.get(User, user.id))
    details = [str(d) for d in db.scalars(select(AuditEvent.details))]
    assert details and not any(secret in d for d in details)


def test_codes_within_one_step_of_drift_are_accepted(clock):
    secret = mfa.new_secret()
    now = clock.now()
    for offset in (-30, 0, 30):
        assert mfa.matching_step(secret, pyotp.TOTP(secret).at(now + timedelta(seconds=offset)), at=now,
                                 after=None) is not None
    assert mfa.matching_step(secret, pyotp.TOTP(secret).at(now + timedelta(seconds=90)), at=now, after=None) is None
