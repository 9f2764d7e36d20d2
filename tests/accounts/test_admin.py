"""The admin creates staff accounts and edits the clinic's settings."""
from app.models import ClinicSettings, User
from app.services import audit
from tests.helpers.web import login


def test_admin_creates_a_provider_who_can_sign_in(client, forms, login_as, db, app):
    admin = login_as("admin")
    response = forms.post("/admin/staff", dict(full_name="Dr. Sam Lee", email="sam@example.com",
                                               role="provider", phone="", timezone="America/Denver",
                                               password="provider-password"))
    assert response.status_code == 303
    staff = db.query(User).filter_by(email="sam@example.com").one()
    assert staff.role == "provider" and staff.patient is None
    assert "account.staff_created" in audit.actions_for(db, actor_id=admin.id)
    fresh = app.test_client()
    # A new staff account has no authenticator yet: its first sign-in goes to the enrolment page.
    assert login(fresh, "sam@example.com", "provider-password").headers["Location"].endswith("/account/mfa")


def test_staff_form_errors_are_shown(forms, login_as, db):
    login_as("admin")
    response = forms.post("/admin/staff", dict(full_name="", email="x", role="provider",
                                               timezone="Nowhere/City", password="short"))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Enter a name." in html and "Enter a valid email." in html
    assert "Choose a timezone" in html and "Use at least 12 characters." in html


def test_admin_edits_clinic_settings_used_by_pages(client, forms, login_as, db):
    login_as("admin")
    response = forms.post("/admin/clinic", dict(name="Riverside Health", phone="+1 555 555 0100",
                                                address="2 River Rd", timezone="America/Chicago"))
    assert response.status_code == 303
    assert db.get(ClinicSettings, 1).phone == "+15555550100"
    page = client.get("/admin/").get_data(as_text=True)
    assert "Riverside Health" in page and "+15555550100" in page
