"""The password policy, wherever a password is set: sign-up, reset by email, staff creation.
At least 12 characters, not on the list of common and breached passwords, not the email."""
import re

import pytest
from argon2 import PasswordHasher

from app.models import LinkToken, Notification, User
from app.services import accounts, passwords
from app.services.audit import Actor
from app.services.seed import DEMO_ACCOUNTS, DEMO_PASSWORD
from app.jobs.notifications import send_notification
from tests.helpers.web import login

pytestmark = pytest.mark.usefixtures("private_limits")

COMMON = ["password1234", "PASSWORD1234", "qwertyuiopas", "iloveyou1234", "123456789012"]
SIGNUP = dict(full_name="Jamie Rivera", email="jamie.rivera@example.com", phone="+1 555 555 0199",
              timezone="America/Chicago")
REFUSED_AS_COMMON = "on a list of common or leaked passwords"
REFUSED_AS_EMAIL = "Do not use your email address"


def signup(forms, password, **fields):
    return forms.post("/signup", {**SIGNUP, **fields, "password": password, "confirm": password})


# -- the rule itself -----------------------------------------------------------------------------------

def test_twelve_characters_is_the_floor():
    with pytest.raises(passwords.PasswordRefused, match="Use at least 12 characters."):
        passwords.check_policy("tulip-marbl")                  # 11
    assert passwords.check_policy("tulip-marble") == "tulip-marble"   # 12
    with pytest.raises(passwords.PasswordRefused, match="at most 128"):
        passwords.check_policy("x7-" * 43)


@pytest.mark.parametrize("password", COMMON)
def test_common_and_breached_passwords_are_refused_whatever_their_case(password):
    with pytest.raises(passwords.PasswordRefused, match=REFUSED_AS_COMMON):
        passwords.check_policy(password)
    assert isinstance(passwords.PasswordRefused("x"), ValueError)       # views catch ValueError


@pytest.mark.parametrize("password", ["Jamie.Rivera-2026", "my jamie.rivera@example.com!", "xxJAMIE.RIVERAxx"])
def test_a_password_containing_the_email_or_its_local_part_is_refused(password):
    with pytest.raises(passwords.PasswordRefused, match=REFUSED_AS_EMAIL):
        passwords.check_policy(password, email="Jamie.Rivera@Example.com")


def test_a_very_short_local_part_is_not_checked_on_its_own():
    assert passwords.check_policy("alpine-kettle-road", email="al@example.com")
    with pytest.raises(passwords.PasswordRefused, match=REFUSED_AS_EMAIL):
        passwords.check_policy("x-al@example.com-y", email="al@example.com")


def test_every_password_the_seed_and_the_fixtures_use_passes():
    for _, email, *_ in DEMO_ACCOUNTS:
        passwords.check_policy(DEMO_PASSWORD, email=email)
    for email in ("patient1@example.test", "bench-patient-1@example.com", "bench-provider-1@example.com"):
        passwords.check_policy("correct-horse-battery", email=email)
        passwords.check_policy("bench-password-123", email=email)


def test_the_services_refuse_too_and_save_nothing(db):
    with pytest.raises(ValueError, match=REFUSED_AS_COMMON):
        accounts.register_patient(db, full_name="A", email="svc@example.com", phone="+15555550100",
                                  timezone_name="UTC", password="password1234", actor=Actor.system("test"))
    with pytest.raises(ValueError, match=REFUSED_AS_EMAIL):
        accounts.create_staff(db, actor=Actor.system("test"), full_name="B", email="billing.bob@example.com",
                              role="billing", timezone_name="UTC", password="billing.bob-is-here")
    db.rollback()
    assert db.query(User).count() == 0


# -- sign-up -------------------------------------------------------------------------------------------

def test_signup_refuses_eleven_characters_and_accepts_twelve(forms, db):
    short = signup(forms, "tulip-marbl")
    assert short.status_code == 422 and "Use at least 12 characters." in short.get_data(as_text=True)
    assert db.query(User).count() == 0
    ok = signup(forms, "tulip-marble")
    assert ok.status_code == 303
    assert db.query(User).filter_by(email="jamie.rivera@example.com").count() == 1


@pytest.mark.parametrize("password", ["password1234", "qwertyuiopas"])
def test_signup_refuses_a_common_password(forms, db, password):
    response = signup(forms, password)
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and REFUSED_AS_COMMON in html
    assert 'value="Jamie Rivera"' in html                    # what was typed is kept
    assert db.query(User).count() == 0 and db.query(Notification).count() == 0


def test_signup_refuses_a_password_containing_the_email(forms, db):
    response = signup(forms, "jamie.rivera-2026!")
    assert response.status_code == 422 and REFUSED_AS_EMAIL in response.get_data(as_text=True)
    assert db.query(User).count() == 0


# -- reset by email -------------------------------------------------------------------------------------

def _reset_path(db, forms, user):
    forms.post("/password/forgot", {"email": user.email})
    row = db.query(Notification).filter_by(template="password_reset", user_id=user.id).one()
    assert send_notification(row.id) == "delivered"
    db.refresh(row)
    return "/password/reset/" + re.search(r"/password/reset/(\S+)", row.body).group(1)


@pytest.mark.parametrize("password, message", [("password1234", REFUSED_AS_COMMON),
                                               ("tulip-marbl", "Use at least 12 characters."),
                                               ("Reset.Person-2026", REFUSED_AS_EMAIL)])
def test_reset_refuses_a_weak_password_and_keeps_the_old_one(db, client, forms, factories, clinic, jobs_app,
                                                             password, message):
    user = factories.user("patient", email="reset.person@example.com")
    old_hash = user.password_hash
    path = _reset_path(db, forms, user)
    response = forms.post(path, {"password": password, "confirm": password})
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    db.refresh(user)
    assert user.password_hash == old_hash
    assert db.query(LinkToken).one().used_at is None          # the link still works
    done = forms.post(path, {"password": "orbit-kettle-sage", "confirm": "orbit-kettle-sage"})
    assert done.status_code == 303
    assert login(client, user.email, "orbit-kettle-sage").status_code == 303


# -- staff creation by an admin -----------------------------------------------------------------------

@pytest.mark.parametrize("password, message", [("password1234", REFUSED_AS_COMMON),
                                               ("qwertyuiopas", REFUSED_AS_COMMON),
                                               ("tulip-marbl", "Use at least 12 characters."),
                                               ("dr.sam.lee-rocks", REFUSED_AS_EMAIL)])
def test_staff_creation_refuses_a_weak_password(forms, login_as, db, password, message):
    login_as("admin")
    response = forms.post("/admin/staff", dict(full_name="Dr. Sam Lee", email="dr.sam.lee@example.com",
                                               role="provider", phone="", timezone="America/Denver",
                                               password=password))
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert db.query(User).filter_by(email="dr.sam.lee@example.com").count() == 0


# -- hashing --------------------------------------------------------------------------------------------

def test_production_argon2_parameters_meet_owasp():
    hasher = PasswordHasher(**accounts.ARGON2_PARAMETERS)
    assert hasher.type.name == "ID"
    assert hasher.memory_cost >= 19 * 1024 and hasher.time_cost >= 2 and hasher.parallelism >= 1
    assert hasher.hash("orbit-kettle-sage").startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_an_old_hash_still_signs_in_and_is_upgraded(client, factories, db):
    user = factories.user("patient")
    user.password_hash = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1).hash("correct-horse-battery")
    db.commit()
    old_hash = user.password_hash
    assert login(client, user.email).status_code == 303
    db.refresh(user)
    assert user.password_hash != old_hash
    assert not accounts._hasher.check_needs_rehash(user.password_hash)
    assert accounts._hasher.verify(user.password_hash, "correct-horse-battery")
